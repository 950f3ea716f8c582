//! The SSE framer on its own: line endings, comments, multi-line data,
//! `event:` names, spans, the bound on a partial event — each also re-split
//! at every byte boundary.

use aispend_plugin::usage::sse::SseFramer;

/// (name, data, start, end) of every event, feeding `pieces` then finishing.
fn frame_with(limit: usize, pieces: &[&[u8]]) -> (Vec<(String, String, u64, u64)>, u32) {
    let mut framer = SseFramer::new(limit);
    let mut events = Vec::new();
    let mut push = |e: &aispend_plugin::usage::sse::SseEvent<'_>| {
        events.push((
            String::from_utf8_lossy(e.name).into_owned(),
            String::from_utf8_lossy(e.data).into_owned(),
            e.start,
            e.end,
        ))
    };
    for p in pieces {
        framer.feed(p, &mut push);
    }
    framer.finish(&mut push);
    (events, framer.overflowed_events())
}

/// Frames `stream` whole and at every split point; all must agree.
fn frame(stream: &[u8]) -> Vec<(String, String, u64, u64)> {
    let (whole, _) = frame_with(1 << 20, &[stream]);
    for cut in 0..=stream.len() {
        let (a, b) = stream.split_at(cut);
        assert_eq!(frame_with(1 << 20, &[a, b]).0, whole, "split at {cut}");
    }
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(frame_with(1 << 20, &bytes).0, whole, "byte by byte");
    whole
}

fn ev(name: &str, data: &str, start: u64, end: u64) -> (String, String, u64, u64) {
    (name.into(), data.into(), start, end)
}

#[test]
fn every_line_ending() {
    for eol in ["\n", "\r\n", "\r"] {
        let stream = format!("data: a{eol}{eol}event: x{eol}data: b{eol}{eol}");
        let e = eol.len() as u64;
        let first_end = 7 + 2 * e;
        assert_eq!(
            frame(stream.as_bytes()),
            vec![
                ev("", "a", 0, first_end),
                ev("x", "b", first_end, stream.len() as u64)
            ],
            "eol {eol:?}"
        );
    }
}

#[test]
fn mixed_line_endings_and_cr_then_lf_split() {
    let stream = b"data: 1\r\n\ndata: 2\n\r\ndata: 3\r\r";
    let events = frame(stream);
    let data: Vec<&str> = events.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(data, ["1", "2", "3"]);
    assert_eq!(events.last().map(|e| e.3), Some(stream.len() as u64));
}

#[test]
fn comments_ids_and_unknown_fields_are_ignored() {
    let stream = b": keep-alive\n\nid: 7\nretry: 100\nfoo\ndata: x\n: inside\n\n";
    let events = frame(stream);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].1, "x");
    // The comment-only block is not an event but its bytes precede the next span.
    assert_eq!(events[0].2, 14);
}

#[test]
fn multi_line_data_is_joined_with_newlines() {
    let stream = b"data: {\"a\":\ndata:1}\ndata\n\n";
    assert_eq!(
        frame(stream),
        vec![ev("", "{\"a\":\n1}\n", 0, stream.len() as u64)]
    );
}

#[test]
fn only_one_space_after_the_colon_is_stripped() {
    let stream = b"data:  two\n\nevent:name\ndata:x\n\n";
    let events = frame(stream);
    assert_eq!(events[0].1, " two");
    assert_eq!((events[1].0.as_str(), events[1].1.as_str()), ("name", "x"));
}

#[test]
fn done_marker_and_name_reset_between_events() {
    let stream = b"event: message_start\ndata: {}\n\ndata: [DONE]\n\n";
    let events = frame(stream);
    assert_eq!(events[0].0, "message_start");
    assert_eq!((events[1].0.as_str(), events[1].1.as_str()), ("", "[DONE]"));
}

#[test]
fn blank_lines_without_data_dispatch_nothing() {
    assert!(frame(b"\n\n\r\n\revent: x\n\n").is_empty());
}

#[test]
fn final_event_without_blank_line_is_still_read() {
    assert_eq!(frame(b"data: last"), vec![ev("", "last", 0, 10)]);
    assert_eq!(frame(b"data: last\n"), vec![ev("", "last", 0, 11)]);
}

#[test]
fn byte_order_mark_is_skipped() {
    let stream = "\u{feff}data: x\n\n".as_bytes();
    assert_eq!(frame(stream)[0].1, "x");
}

#[test]
fn a_partial_event_bigger_than_the_bound_is_dropped_alone() {
    let big = "y".repeat(100);
    let stream = format!("data: a\n\ndata: {big}\n\ndata: b\n\n");
    for cut in [12, 50, 108] {
        let (a, b) = stream.as_bytes().split_at(cut);
        let (events, overflowed) = frame_with(64, &[a, b]);
        let data: Vec<&str> = events.iter().map(|e| e.1.as_str()).collect();
        assert_eq!(data, ["a", "b"], "cut {cut}");
        assert_eq!(overflowed, 1, "cut {cut}");
    }
    // The same bound applies when the big event arrives in one piece.
    let (events, overflowed) = frame_with(64, &[stream.as_bytes()]);
    assert_eq!(events.len(), 2);
    assert_eq!(overflowed, 1);
}

#[test]
fn kept_bytes_stay_bounded() {
    let mut framer = SseFramer::new(1000);
    let piece = [b'z'; 300];
    framer.feed(b"data: ", |_| {});
    for _ in 0..100 {
        framer.feed(&piece, |_| panic!("no event yet"));
        assert!(framer.kept_bytes() <= 1000 + 8);
    }
    let mut seen = 0;
    framer.feed(b"\n\ndata: ok\n\n", |e| {
        assert_eq!(e.data, b"ok");
        seen += 1;
    });
    assert_eq!(seen, 1);
    assert_eq!(framer.overflowed_events(), 1);
}

#[test]
fn whole_events_in_one_chunk_are_borrowed_not_kept() {
    let mut framer = SseFramer::default();
    framer.feed(b"data: 1\n\ndata: 2\n\n", |_| {});
    assert_eq!(framer.kept_bytes(), 0);
    assert_eq!(framer.event_start(), 18);
}
