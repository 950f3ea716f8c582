//! The SSE framer, any split. With a bound the whole stream fits in, the
//! events are the same whole, in pieces and byte by byte; with a small bound
//! the kept bytes stay bounded and every event lies inside the stream.
#![no_main]
use aispend_plugin::usage::sse::SseFramer;
use libfuzzer_sys::fuzz_target;

include!("common.rs");

type Event = (Vec<u8>, Vec<u8>, u64, u64);

fn frame(parts: &[&[u8]], limit: usize) -> Vec<Event> {
    let mut f = SseFramer::new(limit);
    let mut out = Vec::new();
    let total: u64 = parts.iter().map(|p| p.len() as u64).sum();
    for p in parts {
        f.feed(p, |e| {
            out.push((e.name.to_vec(), e.data.to_vec(), e.start, e.end))
        });
        // Memory: what the framer keeps between chunks is bounded.
        assert!(
            f.kept_bytes() <= 2 * limit + 1024,
            "kept {} with limit {limit}",
            f.kept_bytes()
        );
    }
    f.finish(|e| out.push((e.name.to_vec(), e.data.to_vec(), e.start, e.end)));
    let mut last_end = 0;
    for (_, _, start, end) in &out {
        assert!(
            start <= end && *end <= total && *start >= last_end,
            "event {start}..{end} of {total} after {last_end}"
        );
        last_end = *end;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let s = seed(data);
    let roomy = data.len() + 1;
    let whole = frame(&[data], roomy);
    assert_eq!(
        whole,
        frame(&chunks(data, s, 17), roomy),
        "split changed the events"
    );
    assert_eq!(
        whole,
        frame(&chunks(data, s, 1), roomy),
        "byte by byte changed the events"
    );
    let small = 16 + (s as usize % 512);
    frame(&chunks(data, s >> 7, 29), small);
});
