//! Arbitrary bytes, cut arbitrarily, never panic the framer, the scanner or
//! any provider's meter (a panic would trap the gateway worker's VM), and the
//! bytes reaching the client are always the upstream bytes minus whole events.

use aispend_plugin::json::scan::{top_level, CaptureScanner};
use aispend_plugin::usage::sse::SseFramer;
use aispend_plugin::usage::{detect, inspect_request, ChunkEdit, ResponseMeter, UsageOptions};
use proptest::prelude::*;

const PATHS: &[&str] = &[
    "/v1/chat/completions",
    "/v1/responses",
    "/v1/embeddings",
    "/v1/messages",
    "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
];

/// Bytes biased toward SSE and JSON syntax so the interesting states are hit.
fn wire_bytes() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"data: ".to_vec()),
        Just(b"event: message_delta\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b":".to_vec()),
        Just(
            br#"{"usage":{"prompt_tokens":3,"output_tokens":2},"choices":[],"model":"m"}"#.to_vec()
        ),
        Just(br#"{"type":"response.completed","response":{"usage":{"input_tokens":1}}}"#.to_vec()),
        Just(
            br#"{"usageMetadata":{"promptTokenCount":1},"candidates":[{"finishReason":"STOP"}]}"#
                .to_vec()
        ),
        Just(b"[DONE]".to_vec()),
        Just(b"{\"\\\"[]}".to_vec()),
        prop::collection::vec(any::<u8>(), 0..16),
    ];
    prop::collection::vec(token, 0..40).prop_map(|t| t.concat())
}

fn split(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.sort_unstable();
    let mut pieces = Vec::new();
    let mut last = 0;
    for p in points.into_iter().chain([bytes.len()]) {
        pieces.push(bytes[last..p].to_vec());
        last = p;
    }
    pieces
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn framer_never_panics_and_ignores_splits(bytes in wire_bytes(), cuts in prop::collection::vec(any::<usize>(), 0..8)) {
        let run = |pieces: &[Vec<u8>]| {
            let mut framer = SseFramer::new(256);
            let mut out = Vec::new();
            for p in pieces {
                framer.feed(p, |e| out.push((e.name.to_vec(), e.data.to_vec(), e.start, e.end)));
            }
            framer.finish(|e| out.push((e.name.to_vec(), e.data.to_vec(), e.start, e.end)));
            out
        };
        prop_assert_eq!(run(&split(&bytes, &cuts)), run(std::slice::from_ref(&bytes)));
    }

    #[test]
    fn scanners_never_panic(bytes in wire_bytes(), cuts in prop::collection::vec(any::<usize>(), 0..8)) {
        let whole = top_level(&bytes, &["model", "usage"]).is_some();
        let mut cap = CaptureScanner::new(&["model", "usage"], 64);
        for p in split(&bytes, &cuts) {
            cap.feed(&p);
        }
        prop_assert_eq!(cap.complete(), whole);
    }

    #[test]
    fn meters_never_panic_and_only_cut_whole_events(
        bytes in wire_bytes(),
        request in prop::collection::vec(any::<u8>(), 0..64),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
        which in 0..PATHS.len(),
        sse in any::<bool>(),
        end in any::<bool>(),
    ) {
        let route = detect(PATHS[which]).unwrap();
        let stream_req = br#"{"model":"m","stream":true}"#;
        for body in [&request[..], &stream_req[..]] {
            let info = inspect_request(&route, body, &UsageOptions::default());
            let ct = if sse { "text/event-stream" } else { "application/json" };
            let mut meter = ResponseMeter::new(&route, &info, 200, Some(ct));
            let mut client = Vec::new();
            for p in split(&bytes, &cuts) {
                match meter.feed(&p) {
                    ChunkEdit::Keep => client.extend_from_slice(&p),
                    ChunkEdit::Replace(b) => client.extend_from_slice(&b),
                }
            }
            if end {
                if let ChunkEdit::Replace(b) = meter.feed_end(&[], true) {
                    client.extend_from_slice(&b);
                }
            }
            let _ = meter.finish(end);
            // Nothing is invented: the client's bytes are a subsequence of the upstream's.
            let mut it = bytes.iter();
            prop_assert!(client.iter().all(|c| it.any(|b| b == c)));
            if end {
                prop_assert!(client.len() <= bytes.len());
            }
        }
    }
}

/// JSON documents whose top level holds the keys parsers ask for, beside
/// nested decoys, escaped strings and every kind of value.
fn json_doc() -> impl Strategy<Value = Vec<u8>> {
    use serde_json::{Map, Value};
    let key = prop_oneof![
        Just("model".to_string()),
        Just("usage".to_string()),
        Just("choices".to_string()),
        Just("q\"uote".to_string()),
        "[a-z]{1,6}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[ -~]{0,12}".prop_map(Value::String),
        Just(Value::String("say \"usage\": {\\".into())),
    ];
    let value = leaf.prop_recursive(4, 32, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(
                (prop_oneof![Just("usage".to_string()), "[a-z]{1,4}"], inner),
                0..4
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    });
    (prop::collection::vec((key, value), 0..6), any::<bool>()).prop_map(|(members, pretty)| {
        let doc = Value::Object(members.into_iter().collect());
        if pretty {
            serde_json::to_vec_pretty(&doc).unwrap()
        } else {
            serde_json::to_vec(&doc).unwrap()
        }
    })
}

proptest! {
    // The members walk (json_fast) is the fast path for whole bodies; where
    // it answers, it must find exactly what the byte scanner finds, whole
    // or cut short.
    #[test]
    fn members_walk_agrees_with_the_scanner(doc in json_doc(), cut in any::<prop::sample::Index>()) {
        use aispend_plugin::json::{fast as json_fast, scan as json_scan};
        const KEYS: &[&str; 2] = &["model", "usage"];
        let fast: Option<[Option<std::ops::Range<usize>>; 2]> = json_fast::top_level_ranges(&doc, KEYS);
        // Escaped keys are left to the scanner; anything else is read.
        prop_assert!(fast.is_some() || doc.contains(&b'\\'), "walk refused a plain document");
        if fast.is_some() {
            prop_assert_eq!(fast, json_scan::scanned_ranges(&doc, KEYS));
        }
        let prefix = &doc[..cut.index(doc.len() + 1)];
        if let Some(fast) = json_fast::top_level_ranges::<2>(prefix, KEYS) {
            prop_assert_eq!(Some(fast), json_scan::scanned_ranges(prefix, KEYS));
        }
    }
}

/// OpenAI-like response bodies: `usage` objects with the members the chat
/// parser reads (integers, nulls, floats, strings, nested details, repeats),
/// beside decoys.
fn chat_doc() -> impl Strategy<Value = Vec<u8>> {
    use serde_json::{json, Value};
    let count = prop_oneof![
        (0u64..1_000_000).prop_map(Value::from),
        Just(Value::Null),
        Just(json!(1.5)),
        Just(json!("7")),
        Just(json!(-3)),
    ];
    let details = |name: &'static str| {
        prop_oneof![
            (0u64..1000).prop_map(move |n| json!({ name: n, "other": [1, {"x": "}"}] })),
            Just(Value::Null),
            Just(json!({})),
            Just(json!({ name: 1.0 })),
            Just(json!([1])),
        ]
    };
    let member = prop_oneof![
        count.clone().prop_map(|v| ("prompt_tokens".to_string(), v)),
        count
            .clone()
            .prop_map(|v| ("completion_tokens".to_string(), v)),
        count.prop_map(|v| ("total_tokens".to_string(), v)),
        details("cached_tokens").prop_map(|v| ("prompt_tokens_details".to_string(), v)),
        details("reasoning_tokens").prop_map(|v| ("completion_tokens_details".to_string(), v)),
    ];
    let usage = prop_oneof![
        prop::collection::vec(member, 0..6).prop_map(|m| {
            // Written by hand so repeated members stay repeated.
            let parts: Vec<String> = m.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            format!("{{{}}}", parts.join(","))
        }),
        Just("null".to_string()),
        Just("12".to_string()),
    ];
    let model = prop_oneof![
        Just("\"gpt-4o-mini\"".to_string()),
        Just("\"a\\\"b\"".to_string()),
        Just("\"\"".to_string()),
        Just("null".to_string()),
    ];
    let top = prop_oneof![
        usage.prop_map(|u| format!("\"usage\":{u}")),
        model.prop_map(|m| format!("\"model\":{m}")),
        Just(r#""choices":[{"message":{"content":"\"usage\": {"}}]"#.to_string()),
        Just(r#""id":"chatcmpl-1""#.to_string()),
    ];
    (prop::collection::vec(top, 0..5), any::<bool>()).prop_map(|(members, spaced)| {
        let sep = if spaced { " ,\n " } else { "," };
        format!("{{{}}}", members.join(sep)).into_bytes()
    })
}

proptest! {
    // The chat parser reads a whole body in one walk; it must read exactly
    // what locating the values (byte scanner) and then reading them does.
    #[test]
    fn one_walk_reads_what_locate_then_read_does(doc in chat_doc(), limit in prop_oneof![Just(64usize << 10), 0usize..40]) {
        use aispend_plugin::json::scan as json_scan;
        use aispend_plugin::usage::parser::{BodyWalk, UsageParser};
        use aispend_plugin::usage::providers::openai::ChatParser;
        let mut walked = ChatParser::new(false);
        let walk = walked.read_body(&doc, limit);
        let mut located = ChatParser::new(false);
        let values = json_scan::scanned_ranges::<2>(&doc, &["model", "usage"])
            .map(|r| r.map(|r| r.map(|r| &doc[r])));
        let BodyWalk::Read { too_large } = walk else {
            prop_assert_eq!(walk, BodyWalk::Refused);
            // Refused only what the walk does not read exactly.
            prop_assert!(values.is_none() || doc.contains(&b'\\'));
            return Ok(());
        };
        let values = values.expect("a body the walk read is one the scanner reads");
        let over = values.iter().flatten().any(|v| v.len() > limit);
        prop_assert_eq!(too_large, over);
        if !over {
            located.read_json(&values);
        }
        let (a, b) = (walked.tally(), located.tally());
        prop_assert_eq!(a.counts, b.counts);
        prop_assert_eq!(&a.model, &b.model);
        prop_assert_eq!(a.usage_seen, b.usage_seen);
        prop_assert_eq!(a.malformed, b.malformed);
    }
}
