//! The whole request flow against the in-memory host.

use std::rc::Rc;

use super::*;
use crate::host::memory::MemoryHost;
use crate::host::Metric;
use crate::vm::Shared;
use sha2::{Digest, Sha256};

fn sha(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn shared(extra: &str) -> Shared {
    shared_keyed("", extra)
}

/// `shared`, with `key_extra` added to the demo key's entry.
fn shared_keyed(key_extra: &str, extra: &str) -> Shared {
    let json = format!(
        r#"{{"identity":{{"sources":["api_key","jwt"],
              "keys":[{{"key_id":"demo-search","sha256":"{}"{key_extra},
                       "tags":{{"org":"acme","team":"search","cost_center":"CC-1001"}}}}],
              "jwt":{{"claims":{{"team":"team"}}}}}},
            "tags":{{"labels":{{"allow":["x-aispend-label-feature"]}}}},
            "providers":{{"openai":{{"credential":{{"header":"authorization","value":"Bearer sk-real"}}}},
                          "gemini":{{"credential":{{"header":"x-goog-api-key","value":"g-real"}}}}}},
            "collector":{{"cluster":"c","token":"t"}}{extra}}}"#,
        sha("sk-aispend-demo-search")
    );
    let filter = Filter::from_json(json.as_bytes()).unwrap();
    Shared::new(filter, IdGen::new([9; 16]), 1_700_000_000_000)
}

fn records(shared: &Shared) -> Vec<serde_json::Value> {
    shared.take_records()
}

const CHAT_BODY: &[u8] = br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
const CHAT_RESPONSE: &[u8] = br#"{"id":"c1","model":"gpt-4o-mini-2024-07-18","usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}"#;

fn chat_request() -> MemoryHost {
    let mut host = MemoryHost::with_request(&[
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        ("authorization", "Bearer sk-aispend-demo-search"),
        ("x-aispend-team", "spoofed"),
        ("x-aispend-label-feature", "summarize"),
        ("accept-encoding", "gzip"),
        ("content-length", "70"),
    ]);
    host.request_body = CHAT_BODY.to_vec();
    host
}

fn respond(flow: &mut RequestFlow, host: &mut MemoryHost, status: &str, chunks: &[&[u8]]) {
    host.response_headers = vec![
        (":status".into(), status.into()),
        ("content-type".into(), "application/json".into()),
    ];
    flow.on_response_headers(host);
    for (i, chunk) in chunks.iter().enumerate() {
        host.now_ms += 5;
        host.response_chunk = chunk.to_vec();
        flow.on_response_body(host, chunk.len(), i + 1 == chunks.len());
    }
}

#[test]
fn admitted_chat_call_is_tagged_and_recorded_once() {
    let shared = shared("");
    let mut host = chat_request();
    let mut flow = RequestFlow::new(&shared);

    assert_eq!(flow.on_request_headers(&mut host, false), Step::Continue);
    let id = flow.request_id().to_string();
    assert!(host.local_reply.is_none());
    // Upstream sees gateway-set tags, the provider credential, and no client copies.
    assert_eq!(host.request_header("x-aispend-team"), Some("search"));
    assert_eq!(
        host.request_header("x-aispend-cost-center"),
        Some("CC-1001")
    );
    assert_eq!(host.request_header("x-aispend-key-id"), Some("demo-search"));
    assert_eq!(
        host.request_header("x-aispend-request-id"),
        Some(id.as_str())
    );
    assert_eq!(
        host.request_header("x-aispend-label-feature"),
        Some("summarize")
    );
    assert_eq!(host.request_header("authorization"), Some("Bearer sk-real"));
    assert_eq!(host.request_header("accept-encoding"), None);
    assert_eq!(
        host.request_header("content-length"),
        None,
        "the body may be rewritten"
    );
    assert_eq!(
        host.request_headers
            .iter()
            .filter(|(n, _)| n == "x-aispend-team")
            .count(),
        1
    );

    host.now_ms += 3;
    assert_eq!(
        flow.on_request_body(&mut host, 10, false),
        Step::Pause,
        "buffer until complete"
    );
    assert_eq!(
        flow.on_request_body(&mut host, CHAT_BODY.len(), true),
        Step::Continue
    );
    respond(
        &mut flow,
        &mut host,
        "200",
        &[&CHAT_RESPONSE[..20], &CHAT_RESPONSE[20..]],
    );
    assert!(host
        .response_headers
        .contains(&("x-aispend-request-id".to_string(), id.clone())));
    flow.on_log(&mut host);

    let recs = records(&shared);
    assert_eq!(recs.len(), 1, "exactly one record");
    let r = &recs[0];
    assert_eq!(r["id"], id.as_str());
    assert_eq!(r["ts"], "2023-11-14T22:13:20.000Z");
    assert_eq!(r["duration_ms"], 13);
    assert_eq!(r["ttft_ms"], 8);
    assert_eq!(r["gateway"], "envoy");
    assert_eq!(r["key_id"], "demo-search");
    assert_eq!(r["auth"], "api_key");
    assert_eq!(
        r["tags"],
        serde_json::json!({"org":"acme","team":"search","cost_center":"CC-1001"})
    );
    assert_eq!(r["labels"], serde_json::json!({"feature":"summarize"}));
    assert_eq!(r["provider"], "openai");
    assert_eq!(r["operation"], "chat");
    assert_eq!(r["requested_model"], "gpt-4o-mini");
    assert_eq!(r["model"], "gpt-4o-mini-2024-07-18");
    assert_eq!(r["status"], 200);
    assert_eq!(r["error"], serde_json::Value::Null);
    assert_eq!(r["input_tokens"], 12);
    assert_eq!(r["output_tokens"], 7);
}

#[test]
fn unknown_key_gets_401_json_and_no_record() {
    let shared = shared("");
    let mut host =
        MemoryHost::with_request(&[(":path", "/v1/chat/completions"), ("x-api-key", "sk-wrong")]);
    let mut flow = RequestFlow::new(&shared);
    assert_eq!(flow.on_request_headers(&mut host, false), Step::Pause);
    let reply = host.local_reply.clone().unwrap();
    assert_eq!(reply.status, 401);
    assert!(reply
        .headers
        .contains(&("content-type".into(), "application/json".into())));
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["error"]["type"], "invalid_api_key");
    assert_eq!(host.metric(Metric::Denied401), 1);
    // The local reply passes through the response callbacks: nothing recorded.
    host.response_headers = vec![(":status".into(), "401".into())];
    flow.on_response_headers(&mut host);
    flow.on_response_body(&mut host, 0, true);
    flow.on_log(&mut host);
    assert!(records(&shared).is_empty());
    assert_eq!(host.request_header("x-aispend-key-id"), None);
}

#[test]
fn reject_mode_answers_400() {
    let shared = shared(r#","usage":{"openai_stream_usage":false}"#);
    let shared = Shared {
        filter: Rc::new(Filter::new({
            let mut c = shared.filter.config.clone();
            c.tags.on_conflict = crate::config::OnConflict::Reject;
            c
        })),
        ..shared
    };
    let mut host = chat_request();
    let mut flow = RequestFlow::new(&shared);
    assert_eq!(flow.on_request_headers(&mut host, false), Step::Pause);
    assert_eq!(host.local_reply.as_ref().unwrap().status, 400);
    assert_eq!(host.metric(Metric::Denied400), 1);
}

#[test]
fn upstream_error_is_recorded_with_zero_tokens() {
    let shared = shared("");
    let mut host = chat_request();
    let mut flow = RequestFlow::new(&shared);
    flow.on_request_headers(&mut host, false);
    flow.on_request_body(&mut host, CHAT_BODY.len(), true);
    respond(
        &mut flow,
        &mut host,
        "429",
        &[br#"{"error":{"message":"slow down"}}"#],
    );
    let r = &records(&shared)[0];
    assert_eq!(r["status"], 429);
    assert_eq!(r["error"], "upstream_error");
    assert_eq!(r["input_tokens"], 0);
    assert_eq!(r["output_tokens"], 0);
}

#[test]
fn client_reset_is_recorded_once_from_on_log() {
    let shared = shared("");
    let mut host = chat_request();
    let mut flow = RequestFlow::new(&shared);
    flow.on_request_headers(&mut host, false);
    flow.on_request_body(&mut host, CHAT_BODY.len(), true);
    flow.on_log(&mut host);
    flow.on_log(&mut host);
    let recs = records(&shared);
    assert_eq!(recs.len(), 1);
    // No response status: 499 (client closed), which the collector stores.
    assert_eq!(recs[0]["status"], 499);
    assert_eq!(recs[0]["error"], "no_response");
}

#[test]
fn query_key_is_removed_from_the_path() {
    let shared = shared("");
    let mut host = MemoryHost::with_request(&[(
        ":path",
        "/v1/chat/completions?alt=sse&key=sk-aispend-demo-search",
    )]);
    let mut flow = RequestFlow::new(&shared);
    assert_eq!(flow.on_request_headers(&mut host, true), Step::Continue);
    assert_eq!(
        host.request_header(":path"),
        Some("/v1/chat/completions?alt=sse")
    );
    assert_eq!(host.request_header("x-aispend-key-id"), Some("demo-search"));
}

#[test]
fn jwt_claims_come_from_dynamic_metadata() {
    let shared = shared("");
    let mut host = MemoryHost::with_request(&[
        (":path", "/v1/embeddings"),
        ("authorization", "Bearer eyJ.x.y"),
    ]);
    let meta = |claim: &str| {
        [
            "metadata",
            "filter_metadata",
            "envoy.filters.http.jwt_authn",
            "jwt_payload",
            claim,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
    };
    host.properties.insert(meta("sub"), b"alice".to_vec());
    host.properties.insert(meta("team"), b"growth".to_vec());
    let mut flow = RequestFlow::new(&shared);
    assert_eq!(flow.on_request_headers(&mut host, true), Step::Continue);
    assert_eq!(host.request_header("x-aispend-key-id"), Some("jwt:alice"));
    assert_eq!(host.request_header("x-aispend-team"), Some("growth"));
    // The JWT itself does not go to the provider; the real credential does.
    assert_eq!(host.request_header("authorization"), Some("Bearer sk-real"));
}

#[test]
fn unmetered_path_is_tagged_but_not_recorded() {
    let shared = shared("");
    let mut host = MemoryHost::with_request(&[
        (":path", "/v1/models"),
        ("authorization", "Bearer sk-aispend-demo-search"),
    ]);
    let mut flow = RequestFlow::new(&shared);
    assert_eq!(flow.on_request_headers(&mut host, true), Step::Continue);
    assert_eq!(host.request_header("x-aispend-team"), Some("search"));
    assert_eq!(
        host.request_header("authorization"),
        None,
        "no provider known: no credential set"
    );
    respond(&mut flow, &mut host, "200", &[b"{}"]);
    flow.on_log(&mut host);
    assert!(records(&shared).is_empty());
}

#[test]
fn ids_differ_per_request_and_start_with_its_time() {
    let shared = shared("");
    let id = |shared: &Shared| {
        let mut host = chat_request();
        let mut flow = RequestFlow::new(shared);
        flow.on_request_headers(&mut host, true);
        (flow.request_id().to_string(), host.now_ms)
    };
    let (a, now) = id(&shared);
    let (b, _) = id(&shared);
    assert_ne!(a, b);
    assert_eq!(a.len(), 32);
    assert!(
        a.starts_with(&format!("{now:012x}")),
        "{a} starts with the time"
    );
}

#[test]
fn stream_body_is_rewritten_upstream() {
    let shared = shared("");
    let body = br#"{"model":"gpt-4o-mini","stream":true,"messages":[]}"#;
    let mut host = chat_request();
    host.request_body = body.to_vec();
    let mut flow = RequestFlow::new(&shared);
    assert_eq!(flow.on_request_headers(&mut host, false), Step::Continue);
    assert_eq!(host.request_header("content-length"), None);
    assert_eq!(
        flow.on_request_body(&mut host, body.len(), true),
        Step::Continue
    );
    let sent: serde_json::Value = serde_json::from_slice(&host.request_body).unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);
}

#[test]
fn a_stream_named_with_escapes_is_rewritten_upstream() {
    // `"str\u0065am":true` is `"stream":true` to the provider's parser: the
    // body is not kept for later, and the stream asks for its usage.
    let body = br#"{"model":"gpt-4o-mini","str\u0065am":true,"messages":[]}"#;
    for kong in [false, true] {
        let shared = shared("");
        let mut host = chat_request_with_body(body, true);
        let mut flow = RequestFlow::new(&shared);
        assert_eq!(flow.on_request_headers(&mut host, false), Step::Continue);
        let step = flow.on_request_body(&mut host, body.len(), kong);
        if !kong {
            assert_eq!(step, Step::Pause, "held to be rewritten");
            assert_eq!(
                flow.on_request_body(&mut host, body.len(), true),
                Step::Continue
            );
        }
        assert!(
            matches!(flow.request_body, RequestBody::Read),
            "kong {kong}"
        );
        let sent: serde_json::Value = serde_json::from_slice(&host.request_body).unwrap();
        assert_eq!(sent["stream"], true, "kong {kong}");
        assert_eq!(sent["stream_options"]["include_usage"], true, "kong {kong}");
    }
}

#[test]
fn bodiless_request_keeps_its_headers() {
    let shared = shared("");
    let mut host = chat_request();
    let mut flow = RequestFlow::new(&shared);
    assert_eq!(flow.on_request_headers(&mut host, true), Step::Continue);
    assert_eq!(host.request_header("content-length"), Some("70"));
}

#[test]
fn azure_stream_body_may_be_rewritten_too() {
    let shared = shared("");
    let body = br#"{"stream":true,"messages":[]}"#;
    let mut host = MemoryHost::with_request(&[
        (
            ":path",
            "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21",
        ),
        ("api-key", "sk-aispend-demo-search"),
        ("content-length", "29"),
    ]);
    host.request_body = body.to_vec();
    let mut flow = RequestFlow::new(&shared);
    assert_eq!(flow.on_request_headers(&mut host, false), Step::Continue);
    assert_eq!(host.request_header("content-length"), None);
    flow.on_request_body(&mut host, body.len(), true);
    let sent: serde_json::Value = serde_json::from_slice(&host.request_body).unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);
}

#[test]
fn rewrite_is_skipped_when_the_length_already_went_upstream() {
    // openai_stream_usage off in the flow's view but a rewrite offered anyway
    // must never change the body under a sent content-length.
    let shared = shared("");
    let body = br#"{"stream":true,"messages":[]}"#;
    let mut host = chat_request();
    host.request_body = body.to_vec();
    let mut flow = RequestFlow::new(&shared);
    // end_of_stream=true in headers: content-length kept.
    flow.on_request_headers(&mut host, true);
    flow.on_request_body(&mut host, body.len(), true);
    assert_eq!(host.request_body, body.to_vec());
}

/// A chat call past its headers, its body waiting in the host.
fn admitted_chat(shared: &Shared, body: &[u8]) -> (RequestFlow, MemoryHost) {
    let mut host = chat_request();
    host.request_body = body.to_vec();
    let mut flow = RequestFlow::new(shared);
    assert_eq!(flow.on_request_headers(&mut host, false), Step::Continue);
    (flow, host)
}

#[test]
fn a_whole_body_before_the_end_flag_passes_without_buffering() {
    // Envoy hands over the body, then ends the stream in an empty callback.
    let shared = shared("");
    let (mut flow, mut host) = admitted_chat(&shared, CHAT_BODY);
    assert_eq!(
        flow.on_request_body(&mut host, CHAT_BODY.len(), false),
        Step::Continue,
        "a complete object is the whole body: no need to buffer"
    );
    host.request_body.clear();
    assert_eq!(flow.on_request_body(&mut host, 0, true), Step::Continue);
    respond(&mut flow, &mut host, "200", &[CHAT_RESPONSE]);
    flow.on_log(&mut host);
    let r = &records(&shared)[0];
    assert_eq!(
        r["requested_model"], "gpt-4o-mini",
        "the empty end did not erase it"
    );
    assert_eq!(r["stream"], false);
}

#[test]
fn a_whole_stream_body_before_the_end_flag_is_rewritten_in_place() {
    let shared = shared("");
    let body = br#"{"model":"gpt-4o-mini","stream":true,"messages":[]}"#;
    let (mut flow, mut host) = admitted_chat(&shared, body);
    assert_eq!(
        flow.on_request_body(&mut host, body.len(), false),
        Step::Continue
    );
    let sent: serde_json::Value = serde_json::from_slice(&host.request_body).unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    // The end of the stream leaves the rewritten chunk alone.
    let rewritten = host.request_body.clone();
    assert_eq!(flow.on_request_body(&mut host, 0, true), Step::Continue);
    assert_eq!(host.request_body, rewritten);
}

#[test]
fn a_partial_first_chunk_is_buffered_and_read_once_at_the_end() {
    let shared = shared("");
    let (mut flow, mut host) = admitted_chat(&shared, CHAT_BODY);
    assert_eq!(flow.on_request_body(&mut host, 10, false), Step::Pause);
    // Later chunks are not re-read while the host buffers (a large body
    // would be copied again at every chunk): still paused, whole or not.
    assert_eq!(
        flow.on_request_body(&mut host, CHAT_BODY.len(), false),
        Step::Pause
    );
    assert_eq!(
        flow.on_request_body(&mut host, CHAT_BODY.len(), true),
        Step::Continue
    );
    respond(&mut flow, &mut host, "200", &[CHAT_RESPONSE]);
    flow.on_log(&mut host);
    assert_eq!(records(&shared)[0]["requested_model"], "gpt-4o-mini");
}

#[test]
fn provider_and_client_values_are_made_storable() {
    use crate::request::record::{clamp_tokens, storable_model, MAX_MODEL_BYTES, MAX_TOKENS};
    assert_eq!(storable_model("gpt-4o").as_deref(), Some("gpt-4o"));
    assert_eq!(storable_model(""), None);
    assert_eq!(
        storable_model("gpt-4o-mini\u{1}").as_deref(),
        Some("gpt-4o-mini\\u0001")
    );
    let long = "m".repeat(300);
    let cut = storable_model(&long).unwrap();
    assert!(
        cut.len() <= MAX_MODEL_BYTES && cut.ends_with('\u{2026}'),
        "{cut}"
    );
    let wide = "é".repeat(200); // 400 bytes, 2 per char
    let cut = storable_model(&wide).unwrap();
    assert!(cut.len() <= MAX_MODEL_BYTES && cut.ends_with('\u{2026}'));
    let mut t = [10, 30, 5, u64::MAX, 7];
    assert!(clamp_tokens(&mut t));
    assert_eq!(t, [10, 10, 0, MAX_TOKENS, 7]);
    let mut ok = [10, 3, 2, 5, 1];
    assert!(!clamp_tokens(&mut ok));
}

/// Envoy after a Continue: the body buffer holds only the newest chunk.
fn feed_streamed(
    flow: &mut RequestFlow,
    host: &mut MemoryHost,
    body: &[u8],
    chunk: usize,
) -> Vec<Step> {
    let parts: Vec<&[u8]> = body.chunks(chunk).collect();
    let mut steps = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        host.request_body = part.to_vec();
        steps.push(flow.on_request_body(host, part.len(), i + 1 == parts.len()));
    }
    steps
}

fn big_chat_body(words: usize, stream: bool) -> Vec<u8> {
    format!(
        r#"{{"messages":[{{"role":"user","content":"{}"}}],"model":"gpt-4o","stream":{stream}}}"#,
        "w ".repeat(words)
    )
    .into_bytes()
}

#[test]
fn a_large_body_that_is_never_rewritten_streams_without_being_held() {
    // Rewrites off: no chunk is held, however large the body.
    let shared = shared(r#","usage":{"openai_stream_usage":false}"#);
    let mut host = chat_request();
    let mut flow = RequestFlow::new(&shared);
    flow.on_request_headers(&mut host, false);
    let body = big_chat_body(2_000_000, false); // ~4 MB
    let steps = feed_streamed(&mut flow, &mut host, &body, 64 * 1024);
    assert!(steps.iter().all(|s| *s == Step::Continue), "never paused");
    respond(&mut flow, &mut host, "200", &[CHAT_RESPONSE]);
    let r = &records(&shared)[0];
    assert_eq!(
        r["requested_model"], "gpt-4o",
        "read from the tail of a streamed body"
    );
}

#[test]
fn a_chat_body_past_the_hold_limit_is_released_and_read_as_it_passes() {
    let shared = shared(r#","usage":{"max_buffered_body_bytes":100000}"#);
    let mut host = chat_request();
    let mut flow = RequestFlow::new(&shared);
    flow.on_request_headers(&mut host, false);
    let body = big_chat_body(200_000, true); // ~400 KB
                                             // Held (Pause) while under the limit, as Envoy buffers: the host's
                                             // buffer grows; past the limit everything goes on.
    let mut held = Vec::new();
    let mut steps = Vec::new();
    let parts: Vec<&[u8]> = body.chunks(32 * 1024).collect();
    for (i, part) in parts.iter().enumerate() {
        if steps.last() == Some(&Step::Continue) {
            held.clear();
        }
        held.extend_from_slice(part);
        host.request_body = held.clone();
        steps.push(flow.on_request_body(&mut host, held.len(), i + 1 == parts.len()));
    }
    assert_eq!(steps[0], Step::Pause);
    assert!(
        steps.iter().skip(4).all(|s| *s == Step::Continue),
        "{steps:?}"
    );
    respond(&mut flow, &mut host, "200", &[CHAT_RESPONSE]);
    let r = &records(&shared)[0];
    assert_eq!(r["requested_model"], "gpt-4o");
    assert_eq!(r["stream"], true);
}

#[test]
fn a_body_over_the_limit_is_refused_with_413() {
    let shared =
        shared(r#","usage":{"max_request_body_bytes":50000,"max_buffered_body_bytes":1024}"#);
    let mut host = chat_request();
    let mut flow = RequestFlow::new(&shared);
    flow.on_request_headers(&mut host, false);
    let steps = feed_streamed(
        &mut flow,
        &mut host,
        &big_chat_body(40_000, false),
        16 * 1024,
    );
    assert!(
        steps.contains(&Step::Pause),
        "the request stops once over the limit"
    );
    assert_eq!(host.local_reply.as_ref().unwrap().status, 413);
    assert_eq!(host.metric(Metric::Denied413), 1);
}

/// A body that came whole in its first chunk, its end flagged by an empty
/// callback (as Envoy delivers it): the clock read at that chunk is the
/// call's end too, with no second reading. A body of several chunks ends
/// at a fresh reading.
#[test]
fn the_end_of_a_body_read_whole_is_the_time_of_its_chunk() {
    for (chunks, duration) in [
        (vec![CHAT_RESPONSE, &b""[..]], 8),
        (vec![&CHAT_RESPONSE[..20], &CHAT_RESPONSE[20..], b""], 18),
    ] {
        let shared = shared("");
        let mut host = chat_request();
        let mut flow = RequestFlow::new(&shared);
        flow.on_request_headers(&mut host, false);
        flow.on_request_body(&mut host, CHAT_BODY.len(), true);
        host.now_ms += 3;
        respond(&mut flow, &mut host, "200", &chunks);
        let recs = records(&shared);
        assert_eq!(recs[0]["ttft_ms"], 8);
        assert_eq!(recs[0]["duration_ms"], duration, "{} chunks", chunks.len());
        assert_eq!(recs[0]["input_tokens"], 12);
    }
}

/// One admitted chat call, start to end; its request id.
fn one_chat_call(shared: &Shared) -> String {
    let mut host = chat_request();
    let mut flow = RequestFlow::new(shared);
    flow.on_request_headers(&mut host, false);
    flow.on_request_body(&mut host, CHAT_BODY.len(), true);
    respond(&mut flow, &mut host, "200", &[CHAT_RESPONSE]);
    flow.on_log(&mut host);
    flow.request_id().to_string()
}

#[test]
fn records_are_written_a_few_calls_at_a_time_in_their_order() {
    use crate::jobs::shipper::DEFERRED;
    let shared = shared("");
    let first = one_chat_call(&shared);
    {
        let shipper = shared.shipper.borrow();
        assert_eq!(shipper.written(), 0, "the record waits for the next calls");
        assert_eq!(shipper.buffered(), 1, "but it is buffered");
        assert_eq!(shipper.counters().emitted, 1);
    }
    // A record written at once (a refusal's) comes after the waiting one.
    shared.shipper.borrow_mut().push(br#"{"id":"direct"}"#);
    let mut ids = vec![first, "direct".to_string()];
    for _ in 0..DEFERRED {
        ids.push(one_chat_call(&shared));
    }
    assert_eq!(
        shared.shipper.borrow().written(),
        2 + DEFERRED,
        "the DEFERRED-th waiting call wrote them all"
    );
    ids.push(one_chat_call(&shared));
    let records = records(&shared);
    let got: Vec<&str> = records.iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(got, ids, "every call recorded once, in order");
    let last = records.last().unwrap();
    assert_eq!(
        last["input_tokens"], 12,
        "a waiting record is the same record"
    );
    assert_eq!(last["output_tokens"], 7);
    assert_eq!(last["tags"]["team"], "search");
    assert_eq!(last["labels"]["feature"], "summarize");
}

#[test]
fn waiting_records_count_as_dropped_when_the_vm_stops() {
    let shared = shared("");
    one_chat_call(&shared);
    one_chat_call(&shared);
    let mut shipper = shared.shipper.borrow_mut();
    assert_eq!(shipper.abandon(), 2, "lost, and said so");
    assert_eq!(shipper.counters().dropped, 2);
    assert_eq!(shipper.buffered(), 0);
}

/// A response body chunk and its end-of-stream flag.
type Chunk<'a> = (&'a [u8], bool);

/// One chat call answered with `status` and the body `chunks`, each with
/// its end-of-stream flag; `on_log` ends it (a call cut off when no chunk
/// was flagged last). Its record.
fn call_answered(shared: &Shared, status: &str, chunks: &[Chunk]) -> serde_json::Value {
    let mut host = chat_request();
    let mut flow = RequestFlow::new(shared);
    flow.on_request_headers(&mut host, false);
    flow.on_request_body(&mut host, CHAT_BODY.len(), true);
    host.response_headers = vec![
        (":status".into(), status.into()),
        ("content-type".into(), "application/json".into()),
    ];
    flow.on_response_headers(&mut host);
    for (chunk, end) in chunks {
        host.now_ms += 5;
        host.response_chunk = chunk.to_vec();
        flow.on_response_body(&mut host, chunk.len(), *end);
    }
    flow.on_log(&mut host);
    let mut records = records(shared);
    assert_eq!(records.len(), 1);
    records.remove(0)
}

#[test]
fn a_json_answer_read_with_its_record_gives_the_usage_read_as_it_passed() {
    // The same calls under a key with a token limit, whose usage is needed
    // at the call's end (read as the body passes), and under one without
    // (the body's first chunk kept and read with the record).
    let live = shared_keyed(r#","limits":{"tokens_per_minute":1000000000}"#, "");
    let later = shared("");
    let (head, tail) = CHAT_RESPONSE.split_at(30);
    let cases: Vec<(&str, Vec<Chunk>)> = vec![
        ("200", vec![(CHAT_RESPONSE, true)]),
        ("200", vec![(CHAT_RESPONSE, false), (b"", true)]),
        ("200", vec![(head, false), (tail, false), (b"", true)]),
        ("200", vec![(head, false), (tail, true)]),
        ("200", vec![(CHAT_RESPONSE, false)]),
        ("200", vec![(head, false)]),
        (
            "200",
            vec![(CHAT_RESPONSE, false), (b" \n", false), (b"", true)],
        ),
        ("200", vec![(b"not json", false), (b"", true)]),
        ("500", vec![(br#"{"error":{"message":"boom"}}"#, true)]),
    ];
    let fields = [
        "input_tokens",
        "output_tokens",
        "cached_input_tokens",
        "reasoning_tokens",
        "model",
        "requested_model",
        "error",
        "status",
    ];
    for (status, chunks) in &cases {
        let a = call_answered(&live, status, chunks);
        let b = call_answered(&later, status, chunks);
        for f in fields {
            assert_eq!(a[f], b[f], "{f} of {status} {chunks:?}");
        }
    }
    let whole = call_answered(&later, "200", &[(CHAT_RESPONSE, false), (b"", true)]);
    assert_eq!(whole["input_tokens"], 12, "the kept body was read");
    assert_eq!(whole["output_tokens"], 7);
}

#[test]
fn a_json_answer_is_kept_only_while_nothing_needs_its_usage() {
    let first_chunk = |shared: &Shared| {
        let mut host = chat_request();
        let mut flow = RequestFlow::new(shared);
        flow.on_request_headers(&mut host, false);
        flow.on_request_body(&mut host, CHAT_BODY.len(), true);
        host.response_headers = vec![
            (":status".into(), "200".into()),
            ("content-type".into(), "application/json".into()),
        ];
        flow.on_response_headers(&mut host);
        host.response_chunk = CHAT_RESPONSE.to_vec();
        flow.on_response_body(&mut host, CHAT_RESPONSE.len(), false);
        flow
    };
    assert!(
        first_chunk(&shared("")).held.is_some(),
        "kept for the record"
    );
    let limited = shared_keyed(r#","limits":{"tokens_per_minute":1000000000}"#, "");
    assert!(
        first_chunk(&limited).held.is_none(),
        "a token limit counts the tokens at the end: read as it passes"
    );
}

/// One chat call with `body` (its true `content-length` when `declared`),
/// delivered as Envoy does (the body, then an empty end) or as Kong does
/// (the whole body with the end flag); the request body's state after its
/// first callback, and the call's record.
/// A chat request carrying `body`, its length declared or not.
fn chat_request_with_body(body: &[u8], declared: bool) -> MemoryHost {
    let mut host = chat_request();
    host.request_headers.retain(|(n, _)| n != "content-length");
    if declared {
        host.request_headers
            .push(("content-length".into(), body.len().to_string()));
    }
    host.request_body = body.to_vec();
    host
}

fn chat_with_body(body: &[u8], declared: bool, kong: bool) -> (&'static str, serde_json::Value) {
    let shared = shared("");
    let mut host = chat_request_with_body(body, declared);
    let mut flow = RequestFlow::new(&shared);
    assert_eq!(flow.on_request_headers(&mut host, false), Step::Continue);
    let step = flow.on_request_body(&mut host, body.len(), kong);
    let state = match flow.request_body {
        RequestBody::Kept(_) => "kept",
        RequestBody::Read => "read",
        RequestBody::Buffering => "buffered",
        _ => "other",
    };
    assert_eq!(step == Step::Pause, state == "buffered", "{state}");
    if !kong {
        host.request_body.clear();
        assert_eq!(flow.on_request_body(&mut host, 0, true), Step::Continue);
    }
    respond(&mut flow, &mut host, "200", &[CHAT_RESPONSE]);
    flow.on_log(&mut host);
    let mut r = records(&shared).remove(0);
    for per_call in ["id", "request_id", "ts", "start", "end", "duration_ms"] {
        r.as_object_mut().map(|o| o.remove(per_call));
    }
    (state, r)
}

#[test]
fn a_whole_body_naming_no_stream_passes_unread_and_is_read_with_its_record() {
    // Read as it passed (no declared length, so not known to be whole).
    let (state, live) = chat_with_body(CHAT_BODY, false, false);
    assert_eq!(state, "read");
    assert_eq!(live["requested_model"], "gpt-4o-mini");
    assert_eq!(live["stream"], false);
    // Known whole (its declared length, or Kong's end flag): kept for the
    // record, and the same record.
    for (declared, kong) in [(true, false), (false, true), (true, true)] {
        let (state, kept) = chat_with_body(CHAT_BODY, declared, kong);
        assert_eq!(state, "kept", "declared {declared}, kong {kong}");
        assert_eq!(kept, live, "declared {declared}, kong {kong}");
    }
    // A body that names `stream` (even false) is read at once: a stream is
    // rewritten and metered as events.
    let named =
        br#"{"model":"gpt-4o-mini","stream":false,"messages":[{"role":"user","content":"hi"}]}"#;
    let (state, r) = chat_with_body(named, true, false);
    assert_eq!(state, "read");
    assert_eq!(r["requested_model"], "gpt-4o-mini");
    // Only the bytes are looked at: the word in a message, after a quote,
    // has the body read at once too (as before; the record is the same).
    let word =
        br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"a \"stream of words"}]}"#;
    let (state, r) = chat_with_body(word, true, false);
    assert_eq!(
        state, "read",
        "`\"stream` anywhere keeps the body from waiting"
    );
    assert_eq!(r["requested_model"], "gpt-4o-mini");
    // Text escaped as `\u` (as Python's json.dumps writes anything not
    // ASCII) spells no `stream`: kept, and the same record as read live.
    let escaped = br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"\u4f60\u597d, caf\u00e9"}]}"#;
    let (state, kept) = chat_with_body(escaped, true, false);
    let (_, live) = chat_with_body(escaped, false, false);
    assert_eq!(state, "kept");
    assert_eq!(kept, live);
    // Not JSON: kept, and read with the record as the end of a buffered
    // body would have been.
    let (state, kept) = chat_with_body(b"model=gpt-4o-mini", true, false);
    let (buffered, live) = chat_with_body(b"model=gpt-4o-mini", false, false);
    assert_eq!((state, buffered), ("kept", "buffered"));
    assert_eq!(kept, live);
}

#[test]
fn a_status_is_read_as_three_digits_or_as_any_number() {
    assert_eq!(status_code("200"), Some(200));
    assert_eq!(status_code("599"), Some(599));
    assert_eq!(status_code(" 404"), Some(404));
    assert_eq!(status_code("1000"), Some(1000));
    assert_eq!(status_code("2x0"), None);
    assert_eq!(status_code(""), None);
}
