//! Every provider's usage reader (JSON and SSE), any split: the input is a
//! response body fed to each route in one piece and in pieces.
#![no_main]
use aispend_plugin::usage::{self, ChunkEdit, RequestInfo};
use libfuzzer_sys::fuzz_target;

include!("common.rs");

const PATHS: [&str; 8] = [
    "/v1/chat/completions",
    "/v1/responses",
    "/v1/embeddings",
    "/v1/messages",
    "/openai/deployments/gpt4o/chat/completions",
    "/v1beta/models/gemini-2.0-flash:generateContent",
    "/v1beta/models/gemini-2.0-flash:streamGenerateContent",
    "/v1/completions",
];

fuzz_target!(|data: &[u8]| {
    let s = seed(data);
    for path in PATHS {
        let Some(route) = usage::detect(path) else {
            continue;
        };
        for (ct, stream, wants) in [
            (Some("application/json"), false, true),
            (Some("text/event-stream"), true, false),
            (None, true, true),
        ] {
            let request = RequestInfo {
                stream,
                client_wants_usage: wants,
                ..RequestInfo::default()
            };
            let run = |parts: &[&[u8]]| {
                let mut m = usage::ResponseMeter::new(&route, &request, 200, ct);
                let mut seen = 0usize;
                let last = parts.len().saturating_sub(1);
                for (i, p) in parts.iter().enumerate() {
                    match m.feed_end(p, i == last) {
                        ChunkEdit::Keep => seen += p.len(),
                        ChunkEdit::Replace(b) => seen += b.len(),
                    }
                }
                assert!(seen <= data.len(), "client got more than the provider sent");
                m.finish(true)
            };
            let whole = run(&[data]);
            let split = run(&chunks(data, s, 23));
            assert_eq!(whole, split, "{path} {ct:?}: split changed the usage");
            // The first chunk kept and fed later (`usage::Held`, as the
            // flow does for a JSON answer), then the end in an empty
            // callback: the same usage as read live.
            let mut m = usage::ResponseMeter::new(&route, &request, 200, ct);
            if m.may_hold() {
                if let Ok(mut held) = usage::Held::keep(data.to_vec(), false) {
                    held.end();
                    m.resume(held);
                    let live = {
                        let mut l = usage::ResponseMeter::new(&route, &request, 200, ct);
                        l.feed_end(data, false);
                        l.feed_end(&[], true);
                        l.finish(true)
                    };
                    assert_eq!(m.finish(true), live, "{path} {ct:?}: a kept chunk read differently");
                }
            }
        }
    }
});
