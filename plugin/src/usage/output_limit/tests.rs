use super::*;
use crate::usage::detect;

fn route(path: &str) -> Route {
    detect(path).expect("route")
}

/// The output limit the body sets, if any.
fn read(shape: Shape, body: &[u8]) -> Option<u64> {
    asked(shape, body).limit
}

/// How many answers the call asks for (at least 1).
fn choices(shape: Shape, body: &[u8]) -> u64 {
    asked(shape, body).choices
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).expect("valid JSON")
}

#[test]
fn shapes_follow_the_route() {
    assert_eq!(shape(&route("/v1/chat/completions")), Shape::Chat);
    assert_eq!(
        shape(&route("/openai/deployments/d/chat/completions")),
        Shape::Chat
    );
    assert_eq!(shape(&route("/v1/responses")), Shape::Responses);
    assert_eq!(shape(&route("/v1/messages")), Shape::Messages);
    assert_eq!(
        shape(&route("/v1beta/models/gemini-2.5-flash:generateContent")),
        Shape::Gemini
    );
    assert_eq!(shape(&route("/v1/embeddings")), Shape::NoOutput);
}

#[test]
fn openai_chat_reads_the_lowest_and_lowers_both_fields() {
    let body =
        br#"{"model":"gpt-4o-mini","max_tokens":900,"messages":[],"max_completion_tokens":500}"#;
    assert_eq!(read(Shape::Chat, body), Some(500));
    let out = rewrite(Shape::Chat, body, 42).expect("rewrite");
    assert_eq!(
        out,
        br#"{"model":"gpt-4o-mini","max_tokens":42,"messages":[],"max_completion_tokens":42}"#
    );
    let none = br#"{"model":"m","messages":[]}"#;
    assert_eq!(read(Shape::Chat, none), None);
    let out = rewrite(Shape::Chat, none, 7).expect("rewrite");
    assert_eq!(json(&out)["max_completion_tokens"], 7);
    assert_eq!(json(&out)["model"], "m");
}

#[test]
fn a_limit_spelled_with_escapes_is_read_and_lowered() {
    // The provider's parser reads `"max_\u0074okens"` as `max_tokens`: a
    // strict call reserves for it and lowers it, as written plainly.
    let body = br#"{"model":"m","max_\u0074okens":900,"messages":[]}"#;
    assert_eq!(read(Shape::Chat, body), Some(900));
    let out = rewrite(Shape::Chat, body, 42).expect("rewrite");
    assert_eq!(json(&out)["max_tokens"], 42);
    assert_eq!(
        out, br#"{"model":"m","max_\u0074okens":42,"messages":[]}"#,
        "the value replaced in place, nothing added"
    );
}

#[test]
fn responses_and_anthropic_use_their_one_field() {
    let body = br#"{"model":"gpt-4o","input":"hi","max_output_tokens":4000}"#;
    assert_eq!(read(Shape::Responses, body), Some(4000));
    let out = rewrite(Shape::Responses, body, 100).expect("rewrite");
    assert_eq!(
        out,
        br#"{"model":"gpt-4o","input":"hi","max_output_tokens":100}"#
    );
    let out = rewrite(Shape::Responses, br#"{"input":"x"}"#, 9).expect("add");
    assert_eq!(json(&out)["max_output_tokens"], 9);

    let body = br#"{"model":"claude-sonnet-4-5","max_tokens":8192,"messages":[{"role":"user","content":"max_tokens"}]}"#;
    assert_eq!(read(Shape::Messages, body), Some(8192));
    let out = rewrite(Shape::Messages, body, 64).expect("rewrite");
    let v = json(&out);
    assert_eq!(v["max_tokens"], 64);
    assert_eq!(v["messages"][0]["content"], "max_tokens", "text untouched");
}

#[test]
fn gemini_edits_generation_config_in_either_spelling() {
    let body = br#"{"contents":[],"generationConfig":{"temperature":0.5,"maxOutputTokens":2048}}"#;
    assert_eq!(read(Shape::Gemini, body), Some(2048));
    let v = json(&rewrite(Shape::Gemini, body, 33).expect("rewrite"));
    assert_eq!(v["generationConfig"]["maxOutputTokens"], 33);
    assert_eq!(v["generationConfig"]["temperature"], 0.5);
    let snake = br#"{"contents":[],"generation_config":{"max_output_tokens":100}}"#;
    assert_eq!(read(Shape::Gemini, snake), Some(100));
    let v = json(&rewrite(Shape::Gemini, snake, 5).expect("rewrite"));
    assert_eq!(v["generation_config"]["max_output_tokens"], 5);
    let bare = br#"{"contents":[]}"#;
    assert_eq!(read(Shape::Gemini, bare), None);
    let v = json(&rewrite(Shape::Gemini, bare, 8).expect("add"));
    assert_eq!(v["generationConfig"]["maxOutputTokens"], 8);
}

#[test]
fn bodies_that_are_not_json_objects_are_not_rewritten() {
    assert_eq!(rewrite(Shape::Chat, b"{\"model\":", 5), None);
    assert_eq!(rewrite(Shape::NoOutput, b"{}", 5), None);
    assert_eq!(rewrite(Shape::Unknown, b"{}", 5), None);
    let v = json(&rewrite(Shape::Messages, b"{}", 5).expect("empty object"));
    assert_eq!(v["max_tokens"], 5);
}

#[test]
fn choices_are_read_per_shape_and_err_high() {
    let chat = |n: &str| format!(r#"{{"model":"m","n":{n},"max_tokens":5,"messages":[]}}"#);
    assert_eq!(choices(Shape::Chat, chat("4").as_bytes()), 4);
    assert_eq!(choices(Shape::Chat, chat("2.5").as_bytes()), 3);
    assert_eq!(choices(Shape::Chat, chat(r#""3""#).as_bytes()), 3);
    for one in ["null", "0", "-2", r#""x""#, "{}", "true"] {
        assert_eq!(choices(Shape::Chat, chat(one).as_bytes()), 1, "{one}");
    }
    assert_eq!(
        choices(Shape::Chat, br#"{"model":"m","messages":[{"n":9}]}"#),
        1
    );
    assert_eq!(
        choices(Shape::Chat, br#"{"\u006e":6}"#),
        6,
        "read as the provider reads it"
    );
    assert_eq!(choices(Shape::Chat, b"not json"), 1);
    let gemini = br#"{"contents":[],"generationConfig":{"candidateCount":3,"maxOutputTokens":10}}"#;
    assert_eq!(choices(Shape::Gemini, gemini), 3);
    let snake = br#"{"generation_config":{"candidate_count":2}}"#;
    assert_eq!(choices(Shape::Gemini, snake), 2);
    assert_eq!(choices(Shape::Gemini, br#"{"contents":[]}"#), 1);
    // Shapes without several answers.
    assert_eq!(choices(Shape::Messages, br#"{"n":4}"#), 1);
    assert_eq!(choices(Shape::Responses, br#"{"n":4}"#), 1);
}

#[test]
fn context_the_provider_keeps_is_noticed() {
    let kept = |shape: Shape, body: &[u8]| asked(shape, body).kept_context;
    for body in [
        &br#"{"model":"m","previous_response_id":"resp_1","input":"and?"}"#[..],
        br#"{"model":"m","conversation":{"id":"conv_1"},"input":"hi"}"#,
        br#"{"model":"m","prompt":{"id":"pmpt_1","version":"2"}}"#,
        br#"{"model":"m","previous_resp\u006fnse_id":"resp_1"}"#,
    ] {
        assert!(
            kept(Shape::Responses, body),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    for body in [
        &br#"{"model":"m","input":"previous_response_id"}"#[..],
        br#"{"model":"m","previous_response_id":null,"conversation":""}"#,
        br#"{"model":"m","input":[{"prompt":{"id":"x"}}]}"#,
    ] {
        assert!(
            !kept(Shape::Responses, body),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    let gemini = br#"{"contents":[],"cachedContent":"cachedContents/abc","generationConfig":{"maxOutputTokens":9}}"#;
    assert_eq!(
        asked(Shape::Gemini, gemini),
        Asked {
            limit: Some(9),
            choices: 1,
            kept_context: true
        }
    );
    assert!(kept(
        Shape::Gemini,
        br#"{"cached_content":"cachedContents/abc"}"#
    ));
    assert!(!kept(Shape::Gemini, br#"{"contents":[]}"#));
    // Chat and Messages carry their whole conversation in the body.
    assert!(!kept(Shape::Chat, br#"{"previous_response_id":"r"}"#));
    assert!(!kept(Shape::Messages, br#"{"prompt":{"id":"p"}}"#));
}

#[test]
fn media_references_are_counted_but_not_inside_text() {
    let body = br#"{"messages":[{"role":"user","content":[
        {"type":"image_url","image_url":{"url":"https://x/a.png"}},
        {"type":"text","text":"see \"image_url\" here"}]}]}"#;
    // The key once (the type value "image_url" is not followed by a colon
    // but is counted too: an over-count only reserves more).
    assert!(media_refs(body) >= 1);
    assert_eq!(
        media_refs(br#"{"messages":[{"role":"user","content":"hi"}]}"#),
        0
    );
    let anthropic = br#"{"messages":[{"role":"user","content":[{"type":"image","source":{"type":"url","url":"u"}}]}]}"#;
    assert_eq!(media_refs(anthropic), 1);
}

#[test]
fn media_keys_spelled_with_escapes_are_counted() {
    let plain = br#"{"messages":[{"role":"user","content":[
        {"type":"image_url","image_url":{"url":"https://x/a.png"}}]}]}"#;
    let spelled = br#"{"messages":[{"role":"user","content":[
        {"type":"im\u0061ge_url","\u0069mage_url":{"url":"https://x/a.png"}}]}]}"#;
    assert_eq!(json(plain), json(spelled), "the same document");
    assert_eq!(media_refs(plain), 2);
    assert_eq!(media_refs(spelled), 2);
    let gemini = br#"{"contents":[{"parts":[{"inl\u0069ne_data":{"mime_type":"image/png"}},{"f\u0069leData":{}}]}]}"#;
    assert_eq!(media_refs(gemini), 2);
    // Escapes that spell other text, or sit in text, are no part.
    assert_eq!(
        media_refs(br#"{"x":"\u0069mage","y":"caf\u00e9","z":"say \"\u0069mage_url\" now"}"#),
        0
    );
}

#[test]
fn every_media_key_passes_the_first_letters_filter() {
    for key in MEDIA_KEYS {
        assert!(may_start_media_key(key), "{}", String::from_utf8_lossy(key));
        // With its first or second letter spelled as an escape too.
        for i in [1, 2] {
            let mut spelled = key.to_vec();
            let letter = spelled.remove(i);
            let escape = format!("\\u{:04x}", letter);
            spelled.splice(i..i, escape.bytes());
            assert!(
                may_start_media_key(&spelled),
                "{}",
                String::from_utf8_lossy(&spelled)
            );
        }
    }
    assert!(!may_start_media_key(br#""say hello""#));
}

/// The one-pass count equals one search per key (the definition).
fn media_refs_by_key(body: &[u8]) -> u64 {
    MEDIA_KEYS
        .iter()
        .map(|key| {
            let mut n = 0;
            let mut from = 0;
            while let Some(p) = body
                .get(from..)
                .and_then(|h| crate::json::scan::find(h, key))
            {
                n += 1;
                from += p + key.len();
            }
            n
        })
        .sum()
}

#[test]
fn media_refs_counts_each_key_apart() {
    for body in [
        &br#"{"source":{"type":"base64"},"x":"source","image_url":"u","image_url":"v"}"#[..],
        br#""source"source""#,
        br#""source"file_id""#,
        br#"""""file_id"""#,
        br#"{"a":"\"source\"","fileData":{},"inlineData":{},"input_audio":1}"#,
        b"",
        b"\"",
    ] {
        assert_eq!(media_refs(body), media_refs_by_key(body), "{body:?}");
    }
}

proptest::proptest! {
    #[test]
    fn media_refs_matches_a_search_per_key(
        parts in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::strategy::Just(&b"\"source\""[..]),
                proptest::strategy::Just(&b"\"file_id\""[..]),
                proptest::strategy::Just(&b"\"image_url\""[..]),
                proptest::strategy::Just(&b"\"input_image\""[..]),
                proptest::strategy::Just(&b"\""[..]),
                proptest::strategy::Just(&b"source"[..]),
                proptest::strategy::Just(&b"{\"a\":1}"[..]),
                proptest::strategy::Just(&b"i"[..]),
            ],
            0..24,
        )
    ) {
        let body: Vec<u8> = parts.concat();
        proptest::prop_assert_eq!(media_refs(&body), media_refs_by_key(&body));
    }

    /// Keys with any of their letters spelled as `\u` escapes (either hex
    /// case) count as the keys written plainly.
    #[test]
    fn media_refs_reads_keys_spelled_with_escapes(
        parts in proptest::collection::vec(
            (
                proptest::sample::select(vec![
                    &b"\"source\""[..],
                    b"\"file_id\"",
                    b"\"inlineData\"",
                    b"\"input_audio\"",
                    b"\"",
                    b"source",
                    b"{\"a\":\"\\u0069\"}",
                    b"i",
                ]),
                proptest::num::u16::ANY,
            ),
            0..24,
        )
    ) {
        let plain: Vec<u8> = parts.iter().flat_map(|(p, _)| p.iter().copied()).collect();
        let mut spelled = Vec::new();
        for (part, mask) in &parts {
            let quoted = part.len() > 2 && part.starts_with(b"\"") && part.ends_with(b"\"");
            for (i, &b) in part.iter().enumerate() {
                let inner = quoted && i > 0 && i + 1 < part.len();
                if inner && mask & (1 << (i % 15)) != 0 {
                    let hex = if mask & (1 << 15) != 0 {
                        format!("\\u{:04X}", b)
                    } else {
                        format!("\\u{:04x}", b)
                    };
                    spelled.extend_from_slice(hex.as_bytes());
                } else {
                    spelled.push(b);
                }
            }
        }
        proptest::prop_assert_eq!(media_refs(&spelled), media_refs_by_key(&plain));
    }
}
