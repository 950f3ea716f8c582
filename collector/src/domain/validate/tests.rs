use serde_json::{json, Value};

use super::*;

fn valid() -> Value {
    json!({"id":"9f1c0000000000000000000000000001","ts":"2026-11-24T06:50:00.123Z",
        "duration_ms":12,"ttft_ms":null,"gateway":"envoy","key_id":"demo-search","auth":"api_key",
        "tags":{"org":"acme","team":"search","cost_center":"CC-1001"},
        "labels":{"feature":"summarize"},
        "provider":"openai","operation":"chat","model":"gpt-4o-mini-2024-07-18",
        "requested_model":"gpt-4o-mini","stream":false,"status":200,"error":null,
        "input_tokens":12,"cached_input_tokens":2,"cache_write_input_tokens":0,
        "output_tokens":7,"reasoning_tokens":3,"some_future_field":{"x":1}})
}

fn with(field: &str, value: Value) -> Value {
    let mut v = valid();
    v[field] = value;
    v
}

fn without(field: &str) -> Value {
    let mut v = valid();
    if let Some(obj) = v.as_object_mut() {
        obj.remove(field);
    }
    v
}

fn rejects(record: Value, expected: &str) {
    match validate_record(&record) {
        Ok(r) => panic!("accepted {r:?}, expected error containing {expected:?}"),
        Err(e) => assert!(e.contains(expected), "error {e:?} lacks {expected:?}"),
    }
}

#[test]
fn accepts_the_documented_record_and_ignores_unknown_fields() {
    let r = validate_record(&valid()).expect("valid record");
    assert_eq!(r.id, "9f1c0000000000000000000000000001");
    assert_eq!(r.ts_ms, 1_795_503_000_123);
    assert_eq!(r.tags.get("team").map(String::as_str), Some("search"));
    assert_eq!(
        r.labels.get("feature").map(String::as_str),
        Some("summarize")
    );
    assert_eq!(r.model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
    assert_eq!(r.ttft_ms, None);
    assert_eq!(r.duration_ms, Some(12));
    assert_eq!(r.tokens.input, 12);
    assert_eq!(r.tokens.reasoning, 3);
    assert!(!r.is_error());
}

#[test]
fn optional_fields_may_be_absent() {
    let mut v = valid();
    for field in [
        "duration_ms",
        "ttft_ms",
        "auth",
        "tags",
        "labels",
        "model",
        "requested_model",
        "stream",
        "error",
    ] {
        v.as_object_mut().map(|o| o.remove(field));
    }
    let r = validate_record(&v).expect("minimal record");
    assert!(r.tags.is_empty() && r.model.is_none() && r.error.is_none());
}

#[test]
fn every_required_field_is_required() {
    for field in [
        "id",
        "ts",
        "gateway",
        "key_id",
        "provider",
        "operation",
        "status",
        "input_tokens",
        "cached_input_tokens",
        "cache_write_input_tokens",
        "output_tokens",
        "reasoning_tokens",
    ] {
        rejects(without(field), &format!("`{field}` is required"));
        rejects(with(field, Value::Null), &format!("`{field}` is required"));
    }
}

#[test]
fn rejects_wrong_types_and_ranges_naming_the_field() {
    rejects(json!([1, 2]), "JSON object");
    rejects(with("id", json!("")), "field `id`");
    rejects(with("id", json!("x".repeat(129))), "field `id`");
    rejects(with("id", json!("has space")), "field `id`");
    rejects(with("ts", json!("2026-11-24 06:50")), "RFC 3339");
    rejects(
        with("ts", json!(1_795_503_000)),
        "field `ts`: expected a string",
    );
    rejects(with("status", json!(99)), "100..=599");
    rejects(with("status", json!(600)), "100..=599");
    rejects(with("status", json!("200")), "100..=599");
    rejects(with("input_tokens", json!(-1)), "field `input_tokens`");
    rejects(with("output_tokens", json!(1.5)), "field `output_tokens`");
    rejects(with("output_tokens", json!("7")), "field `output_tokens`");
    rejects(
        with("input_tokens", json!(MAX_TOKENS + 1)),
        "field `input_tokens`",
    );
    rejects(with("duration_ms", json!(-3)), "field `duration_ms`");
    rejects(with("stream", json!("yes")), "field `stream`");
    rejects(with("error", json!("e".repeat(65))), "field `error`");
    rejects(with("error", json!(5)), "field `error`");
    rejects(with("model", json!("")), "field `model`");
    rejects(with("model", json!("bad\nmodel")), "field `model`");
    rejects(with("gateway", json!("en voy")), "field `gateway`");
}

#[test]
fn tag_keys_and_values_follow_the_spec_charsets() {
    rejects(with("tags", json!({"Team": "search"})), "key \"Team\"");
    rejects(
        with("tags", json!({"team-name": "search"})),
        "key \"team-name\"",
    );
    rejects(
        with("tags", json!({"team": "se arch"})),
        "field `tags.team`",
    );
    rejects(with("tags", json!({"team": ""})), "field `tags.team`");
    rejects(
        with("tags", json!({"team": "x".repeat(129)})),
        "field `tags.team`",
    );
    rejects(
        with("tags", json!({"team": 7})),
        "field `tags.team`: expected a string",
    );
    rejects(
        with("tags", json!(["team"])),
        "field `tags`: expected an object",
    );
    rejects(
        with("labels", json!({"feature": "a b"})),
        "field `labels.feature`",
    );
    let ok = with("tags", json!({"team": "a.b_c:d/e-F9", "x9_": "1"}));
    assert!(validate_record(&ok).is_ok());
}

#[test]
fn token_shares_cannot_exceed_their_totals() {
    rejects(
        with("cached_input_tokens", json!(13)),
        "exceed input_tokens",
    );
    let mut v = with("cache_write_input_tokens", json!(11));
    v["cached_input_tokens"] = json!(2);
    rejects(v, "exceed input_tokens");
    rejects(with("reasoning_tokens", json!(8)), "exceed output_tokens");
}

#[test]
fn errors_are_status_400_and_up_or_an_error_code() {
    let r = validate_record(&with("status", json!(429))).expect("valid");
    assert!(r.is_error());
    let r = validate_record(&with("error", json!("stream_aborted"))).expect("valid");
    assert!(r.is_error());
    let r = validate_record(&with("status", json!(399))).expect("valid");
    assert!(!r.is_error());
}

#[test]
fn strict_reservation_fields_are_checked_when_present() {
    assert!(validate_record(&with("reserved_usd", json!(0.25))).is_ok());
    assert!(validate_record(&with("settled_usd", json!(null))).is_ok());
    rejects(with("reserved_usd", json!(-1.0)), "field `reserved_usd`");
    rejects(with("settled_usd", json!("0.1")), "field `settled_usd`");
}

#[test]
fn the_credential_id_is_kept_as_a_label_over_a_clients() {
    let mut v = with("credential_id", json!("key_gateway"));
    v["labels"] = json!({"credential_id": "spoofed", "feature": "x"});
    let r = validate_record(&v).expect("valid");
    assert_eq!(
        r.labels.get(CREDENTIAL_LABEL).map(String::as_str),
        Some("key_gateway")
    );
    assert_eq!(r.labels.get("feature").map(String::as_str), Some("x"));
    rejects(
        with("credential_id", json!("no spaces")),
        "field `credential_id`",
    );
    rejects(with("credential_id", json!(7)), "field `credential_id`");
    assert!(validate_record(&with("credential_id", json!(null))).is_ok());
}

/// What ingest answered before records were decoded without a `Value`: the
/// text's `Value`, then `validate_record`.
fn via_value(text: &str) -> Result<UsageRecord, String> {
    serde_json::from_str::<Value>(text)
        .map_err(|e| format!("record is not valid JSON: {e}"))
        .and_then(|v| validate_record(&v))
}

fn same_answer(text: &str) -> Result<UsageRecord, String> {
    let direct = validate_record_json(text);
    assert_eq!(direct, via_value(text), "{text}");
    direct
}

#[test]
fn the_text_decoder_answers_as_the_value_path_for_every_field_and_kind() {
    let fields = [
        "id",
        "ts",
        "duration_ms",
        "ttft_ms",
        "gateway",
        "key_id",
        "auth",
        "tags",
        "labels",
        "provider",
        "operation",
        "model",
        "requested_model",
        "stream",
        "status",
        "error",
        "input_tokens",
        "cached_input_tokens",
        "cache_write_input_tokens",
        "output_tokens",
        "reasoning_tokens",
        "reserved_usd",
        "settled_usd",
        "credential_id",
        "some_future_field",
    ];
    let kinds = [
        json!(null),
        json!(true),
        json!(false),
        json!(0),
        json!(1),
        json!(-1),
        json!(200),
        json!(1.5),
        json!(-0.0),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(MAX_TOKENS),
        json!(MAX_TOKENS + 1),
        json!(""),
        json!("x"),
        json!("has space"),
        json!("bad\nmodel"),
        json!("e".repeat(65)),
        json!("2026-11-24T06:50:00Z"),
        json!([1, "a"]),
        json!({}),
        json!({"team": "search"}),
        json!({"Team": "search"}),
        json!({"team": 7}),
        json!({"team": {"x": 1}}),
        json!({"b": "1", "a": "bad value"}),
        json!({"credential_id": "spoofed"}),
    ];
    let mut accepted = 0;
    for field in fields {
        for kind in &kinds {
            let text = with(field, kind.clone()).to_string();
            accepted += usize::from(same_answer(&text).is_ok());
        }
        same_answer(&without(field).to_string()).ok();
    }
    assert!(accepted > 50, "only {accepted} variants accepted");
    for text in [
        "[1, 2]", "\"x\"", "5", "-1", "1.5", "null", "true", "[]", "{}",
    ] {
        assert!(same_answer(text).is_err(), "{text}");
    }
}

#[test]
fn the_text_decoder_keeps_the_value_paths_repeats_escapes_and_number_errors() {
    let valid = valid().to_string();
    let body = valid.trim_end_matches('}');
    // A field given twice: the last value counts, either way round.
    let r = same_answer(&format!(r#"{body},"id":"second"}}"#)).expect("valid");
    assert_eq!(r.id, "second");
    same_answer(&format!(r#"{body},"id":"has space"}}"#)).expect_err("last id is bad");
    // A tag key given twice: the last value counts.
    let r = same_answer(&format!(r#"{body},"tags":{{"team":"a b","team":"ok"}}}}"#))
        .expect("last tag value is good");
    assert_eq!(r.tags.get("team").map(String::as_str), Some("ok"));
    same_answer(&format!(r#"{body},"tags":{{"team":"ok","team":"a b"}}}}"#))
        .expect_err("last tag value is bad");
    // The first bad tag in key order is named, whatever the text's order.
    let e =
        same_answer(&format!(r#"{body},"tags":{{"zz":"a b","Aa":"x"}}}}"#)).expect_err("bad tags");
    assert!(e.contains("key \"Aa\""), "{e}");
    // Escapes in keys and values are decoded.
    let r = same_answer(&format!(
        r#"{body},"\u0069d":"n\u0065w","tags":{{"t\u0065am":"se\u0061rch"}}}}"#
    ))
    .expect("escaped key and values");
    assert_eq!(r.id, "new");
    assert_eq!(r.tags.get("team").map(String::as_str), Some("search"));
    same_answer(&format!(r#"{body},"model":"a\u0001b"}}"#)).expect_err("control");
    // Numbers out of range fail as the `Value` did, in a known or unknown field.
    for extra in [
        r#""input_tokens":1e400"#,
        r#""future":[1,{"x":-1e999}]"#,
        r#""tags":{"team":1e400}"#,
    ] {
        let e = same_answer(&format!("{body},{extra}}}")).expect_err(extra);
        assert!(e.starts_with("record is not valid JSON"), "{e}");
    }
    assert!(same_answer("[1e400]").is_err());
}
