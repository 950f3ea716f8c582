//! The request body: model/stream read and the include_usage rewrite, whole
//! and through the incremental scanner; a rewrite stays valid JSON.
#![no_main]
use aispend_plugin::usage::{self, UsageOptions};
use libfuzzer_sys::fuzz_target;

include!("common.rs");

const PATHS: [&str; 4] = [
    "/v1/chat/completions",
    "/v1/messages",
    "/v1/responses",
    "/v1beta/models/gemini-2.0-flash:generateContent",
];

fuzz_target!(|data: &[u8]| {
    let s = seed(data);
    for path in PATHS {
        let Some(route) = usage::detect(path) else {
            continue;
        };
        for rewrite in [true, false] {
            let opts = UsageOptions {
                openai_stream_usage: rewrite,
            };
            let info = usage::inspect_request(&route, data, &opts);
            if let (Some(body), Ok(before)) = (
                &info.body_rewrite,
                serde_json::from_slice::<serde_json::Value>(data),
            ) {
                // A valid body stays valid, keeps every member the client
                // sent and gains stream_options.include_usage. (A body that
                // was not JSON goes on as broken as it came.)
                let after: serde_json::Value =
                    serde_json::from_slice(body).expect("rewritten body is JSON");
                let (Some(b), Some(a)) = (before.as_object(), after.as_object()) else {
                    panic!("rewrote a body that is not an object");
                };
                for (k, v) in b {
                    if k != "stream_options" {
                        assert_eq!(a.get(k), Some(v), "member {k} changed");
                    }
                }
                assert_eq!(
                    after.pointer("/stream_options/include_usage"),
                    Some(&serde_json::Value::Bool(true))
                );
            }
            let _ = usage::inspect_whole_request(&route, data, &opts);
        }
        let mut scanner = usage::body_scanner();
        for part in chunks(data, s, 31) {
            scanner.feed(part);
        }
        let _ = usage::inspect_scanned(&route, &scanner);
    }
});
