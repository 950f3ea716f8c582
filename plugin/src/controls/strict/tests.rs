//! Strict calls through a whole request (`RequestFlow` on the memory host):
//! reservation, clamping per body shape, refusal, settlement, release.

use super::*;
use crate::controls::lease::{lease_key, Lease, INDEX_KEY, PRICES_KEY, WANTS_KEY};
use crate::filter::Filter;
use crate::host::memory::MemoryHost;
use crate::host::Metric;
use crate::request::flow::{RequestFlow, Step};
use crate::request::record::IdGen;
use crate::vm::Shared;
use sha2::{Digest, Sha256};

const START: u64 = 1_700_000_000_000;
const PERIOD: &str = "2026-12-01T00:00:00.000Z";
/// gpt-4o-mini: 1.5e-7 in, 6e-7 out → pico-USD 150_000 / 600_000 per token.
const PRICES: &str = "v1\nopenai:gpt-4o-mini\t1.5e-7\t7.5e-8\t1.5e-7\t6e-7\t-\nopenai:mystery\t-\nanthropic:claude-x\t3e-6\t3e-7\t3.75e-6\t1.5e-5\t-\ngemini:gemini-2.5-flash\t3e-7\t3e-8\t3e-7\t2.5e-6\t-\n";
const RESPONSE: &[u8] =
    br#"{"model":"gpt-4o-mini","usage":{"prompt_tokens":12,"completion_tokens":8}}"#;

fn shared(caps: &str) -> Shared {
    let sha: String = Sha256::digest(b"sk-key")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let json = format!(
        r#"{{"identity":{{"keys":[{{"key_id":"k1","sha256":"{sha}","tags":{{"team":"search"}}}}]}},
            "collector":{{"cluster":"c","token":"t"}},"caps":{caps}}}"#
    );
    Shared::new(
        Filter::from_json(json.as_bytes()).expect("config"),
        IdGen::new([1; 16]),
        START,
    )
}

/// A host holding a lease of `allowance` pico-USD for team search.
fn host(path: &str, allowance: u64) -> MemoryHost {
    let mut h = MemoryHost::with_request(&[
        (":method", "POST"),
        (":path", path),
        ("authorization", "Bearer sk-key"),
        ("content-type", "application/json"),
    ]);
    h.now_ms = START + 1000;
    h.shared
        .insert(INDEX_KEY.into(), (b"b1\tteam=search\n".to_vec(), 1));
    h.shared
        .insert(PRICES_KEY.into(), (PRICES.as_bytes().to_vec(), 1));
    let lease = Lease {
        seq: 1,
        period_start: PERIOD.into(),
        allowance,
        used: 0,
        demand: 0,
        expires_at_ms: START + 60_000,
    };
    h.shared.insert(lease_key("b1"), (lease.encode(), 1));
    h
}

fn used(h: &MemoryHost) -> u64 {
    h.shared
        .get(&lease_key("b1"))
        .and_then(|(v, _)| Lease::decode(v))
        .map_or(u64::MAX, |l| l.used)
}

struct Done {
    host: MemoryHost,
    flow: RequestFlow,
    /// What reached the upstream (the body after any rewrite).
    upstream_body: Option<serde_json::Value>,
    /// What the request headers callback answered.
    headers: Step,
}

/// Headers and the whole body; then, when it went on, a response.
fn run(s: &Shared, mut h: MemoryHost, body: &str, status: u32, response: &[u8]) -> Done {
    s.sync_caps(&mut h);
    let mut flow = RequestFlow::new(s);
    let mut upstream_body = None;
    let headers = flow.on_request_headers(&mut h, false);
    // Envoy holds a strict call's headers until its body is reserved.
    if h.local_reply.is_none() {
        h.request_body = body.as_bytes().to_vec();
        let step = flow.on_request_body(&mut h, body.len(), true);
        if step == Step::Continue && h.local_reply.is_none() {
            upstream_body = serde_json::from_slice(&h.request_body).ok();
            h.response_headers = vec![(":status".into(), status.to_string())];
            flow.on_response_headers(&mut h);
            h.response_chunk = response.to_vec();
            flow.on_response_body(&mut h, response.len(), true);
        }
    }
    Done {
        host: h,
        flow,
        upstream_body,
        headers,
    }
}

/// A chat call with room to spare, answered with `RESPONSE`.
fn fits(s: &Shared, body: &str) -> Done {
    run(
        s,
        host("/v1/chat/completions", 10_000_000_000),
        body,
        200,
        RESPONSE,
    )
}

/// A Gemini call (the model in the path) with `room` in the lease.
fn gemini(s: &Shared, body: &str, room: u64) -> Done {
    run(
        s,
        host("/v1beta/models/gemini-2.5-flash:generateContent", room),
        body,
        200,
        b"{}",
    )
}

/// What the last call's record says it reserved (USD).
fn reserved_usd(s: &Shared) -> f64 {
    let records = s.take_records();
    records
        .last()
        .and_then(|r| r["reserved_usd"].as_f64())
        .unwrap_or(0.0)
}

fn header<'a>(h: &'a MemoryHost, name: &str) -> Option<&'a str> {
    let list = match &h.local_reply {
        Some(r) => &r.headers,
        None => &h.response_headers,
    };
    list.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn chat(max_tokens: u64) -> String {
    format!(
        r#"{{"model":"gpt-4o-mini","max_tokens":{max_tokens},"messages":[{{"role":"user","content":"hi"}}]}}"#
    )
}

#[test]
fn a_call_that_fits_reserves_then_settles_to_its_real_cost() {
    let s = shared("{}");
    let body = chat(100);
    let d = fits(&s, &body);
    assert!(d.host.local_reply.is_none());
    assert_eq!(d.headers, Step::Continue, "reserved from the body");
    assert_eq!(header(&d.host, CLAMPED_HEADER), None);
    assert_eq!(
        d.upstream_body.as_ref().map(|b| b["max_tokens"].clone()),
        Some(100.into())
    );
    // 12 input × 150_000 + 8 output × 600_000 pico-USD.
    assert_eq!(used(&d.host), 12 * 150_000 + 8 * 600_000);
    let records = s.take_records();
    let r = &records[0];
    let reserved = r["reserved_usd"].as_f64().unwrap_or(0.0);
    let expected = ((body.len() as u64 + 64) * 150_000 + 100 * 600_000) as f64 / 1e12;
    assert!((reserved - expected).abs() < 1e-12, "{r}");
    assert_eq!(r["settled_usd"].as_f64(), Some(6.6e-6));
    drop(d.flow);
}

#[test]
fn a_call_too_big_for_the_lease_is_clamped_in_each_body_shape() {
    let s = shared("{}");
    // Room for the input and 1000 output tokens of gpt-4o-mini.
    let body = chat(100_000);
    let room = (body.len() as u64 + 64) * 150_000 + 1_000 * 600_000;
    let d = run(&s, host("/v1/chat/completions", room), &body, 200, RESPONSE);
    assert_eq!(header(&d.host, CLAMPED_HEADER), Some("1000"));
    let up = d.upstream_body.expect("sent");
    assert_eq!(up["max_tokens"], 1000);
    assert_eq!(up["messages"][0]["content"], "hi");
    assert!(
        d.host.request_header("content-length").is_none(),
        "the body changed size: no stale content-length"
    );

    // Responses API, no limit in the body: one is added.
    let body = r#"{"model":"gpt-4o-mini","input":"hi"}"#;
    let room = (body.len() as u64 + 64) * 150_000 + 500 * 600_000;
    let d = run(&s, host("/v1/responses", room), body, 200, RESPONSE);
    assert_eq!(header(&d.host, CLAMPED_HEADER), Some("500"));
    assert_eq!(d.upstream_body.expect("sent")["max_output_tokens"], 500);

    // Anthropic.
    let body = r#"{"model":"claude-x","max_tokens":64000,"messages":[]}"#;
    let room = (body.len() as u64 + 64) * 3_750_000 + 20 * 15_000_000;
    let d = run(&s, host("/v1/messages", room), body, 200, b"{}");
    assert_eq!(header(&d.host, CLAMPED_HEADER), Some("20"));
    assert_eq!(d.upstream_body.expect("sent")["max_tokens"], 20);

    // Gemini, the model in the path.
    let body = r#"{"contents":[],"generationConfig":{"maxOutputTokens":8192}}"#;
    let room = (body.len() as u64 + 64) * 300_000 + 300 * 2_500_000;
    let d = gemini(&s, body, room);
    assert_eq!(header(&d.host, CLAMPED_HEADER), Some("300"));
    assert_eq!(
        d.upstream_body.expect("sent")["generationConfig"]["maxOutputTokens"],
        300
    );
}

#[test]
fn media_parts_reserve_their_allowance_however_their_keys_are_spelled() {
    let s = shared(r#"{"strict":{"media_tokens":1000}}"#);
    for key in ["image_url", r"im\u0061ge_url", r"\u0069mage_ur\u006C"] {
        let body = format!(
            r#"{{"model":"gpt-4o-mini","max_tokens":100,"messages":[{{"role":"user","content":[{{"type":"text","text":"what is this?"}},{{"{key}":{{"url":"https://x/a.png"}}}}]}}]}}"#
        );
        let d = fits(&s, &body);
        assert!(d.host.local_reply.is_none(), "{key}");
        let reserved = reserved_usd(&s);
        // One media part: 1000 input tokens more than the bytes bound.
        let expected = ((body.len() as u64 + 64 + 1000) * 150_000 + 100 * 600_000) as f64 / 1e12;
        assert!((reserved - expected).abs() < 1e-12, "{key}: {reserved}");
    }
}

#[test]
fn each_answer_asked_for_reserves_the_whole_limit() {
    let s = shared("{}");
    // n = 4: four answers of up to 100 tokens each, all billed.
    let body = r#"{"model":"gpt-4o-mini","n":4,"max_tokens":100,"messages":[{"role":"user","content":"hi"}]}"#;
    let d = fits(&s, body);
    assert!(d.host.local_reply.is_none());
    let reserved = reserved_usd(&s);
    let expected = ((body.len() as u64 + 64) * 150_000 + 4 * 100 * 600_000) as f64 / 1e12;
    assert!((reserved - expected).abs() < 1e-12, "{reserved}");
    // Room for 1000 output tokens in all: each of the four answers gets 250.
    let body = r#"{"model":"gpt-4o-mini","n":4,"max_tokens":4096,"messages":[]}"#;
    let room = (body.len() as u64 + 64) * 150_000 + 1_000 * 600_000;
    let d = run(&s, host("/v1/chat/completions", room), body, 200, RESPONSE);
    assert_eq!(header(&d.host, CLAMPED_HEADER), Some("250"));
    assert_eq!(d.upstream_body.expect("sent")["max_tokens"], 250);
    // Gemini's candidateCount likewise.
    let body = r#"{"contents":[],"generationConfig":{"candidateCount":2,"maxOutputTokens":8192}}"#;
    let room = (body.len() as u64 + 64) * 300_000 + 300 * 2_500_000;
    let d = gemini(&s, body, room);
    assert_eq!(header(&d.host, CLAMPED_HEADER), Some("150"));
    let up = d.upstream_body.expect("sent");
    assert_eq!(up["generationConfig"]["maxOutputTokens"], 150);
    assert_eq!(up["generationConfig"]["candidateCount"], 2);
}

#[test]
fn context_the_provider_keeps_reserves_its_allowance() {
    let s = shared(r#"{"strict":{"context_tokens":50000}}"#);
    let responses = |body: &str| {
        let d = run(
            &s,
            host("/v1/responses", 10_000_000_000),
            body,
            200,
            RESPONSE,
        );
        assert!(d.host.local_reply.is_none(), "{body}");
        reserved_usd(&s)
    };
    let alone = r#"{"model":"gpt-4o-mini","max_output_tokens":100,"input":"hi there"}"#;
    let follow_up = r#"{"model":"gpt-4o-mini","max_output_tokens":100,"previous_response_id":"resp_1","input":"and?"}"#;
    let bound = |body: &str, context: u64| {
        ((body.len() as u64 + 64 + context) * 150_000 + 100 * 600_000) as f64 / 1e12
    };
    assert!((responses(alone) - bound(alone, 0)).abs() < 1e-12);
    assert!((responses(follow_up) - bound(follow_up, 50_000)).abs() < 1e-12);
}

#[test]
fn a_call_without_room_for_the_minimum_is_402_and_reserves_nothing() {
    let s = shared("{}");
    let body = chat(4096);
    let room = (body.len() as u64 + 64) * 150_000 + 15 * 600_000;
    let d = run(&s, host("/v1/chat/completions", room), &body, 200, RESPONSE);
    let reply = d.host.local_reply.as_ref().expect("refused");
    assert_eq!(reply.status, 402);
    assert!(String::from_utf8_lossy(&reply.body).contains("budget_exceeded"));
    assert_eq!(used(&d.host), 0);
    assert_eq!(d.host.metric(Metric::Denied402), 1);
}

#[test]
fn failed_and_reset_calls_give_their_reservation_back() {
    let s = shared("{}");
    let d = run(
        &s,
        host("/v1/chat/completions", 10_000_000_000),
        &chat(100),
        500,
        b"{}",
    );
    assert!(d.host.local_reply.is_none());
    assert_eq!(used(&d.host), 0, "a 500 costs nothing");

    // Reset before any response: on_log settles.
    let mut h = host("/v1/chat/completions", 10_000_000_000);
    s.sync_caps(&mut h);
    let mut flow = RequestFlow::new(&s);
    assert_eq!(flow.on_request_headers(&mut h, false), Step::Continue);
    let body = chat(100);
    h.request_body = body.as_bytes().to_vec();
    flow.on_request_body(&mut h, body.len(), true);
    assert!(used(&h) > 0, "reserved while in flight");
    flow.on_log(&mut h);
    assert_eq!(used(&h), 0);

    // An answered stream cut before its usage keeps the reservation.
    let d = run(
        &s,
        host("/v1/chat/completions", 10_000_000_000),
        &chat(100),
        200,
        b"",
    );
    let records = s.take_records();
    let last = records.last().expect("record");
    assert_eq!(
        used(&d.host),
        lease::pico_ceil(last["reserved_usd"].as_f64().unwrap_or(0.0))
    );
}

#[test]
fn unpriced_models_follow_the_configured_choice() {
    let s = shared("{}");
    let body = r#"{"model":"brand-new","max_tokens":10}"#;
    let d = run(
        &s,
        host("/v1/chat/completions", 10_000_000_000),
        body,
        200,
        RESPONSE,
    );
    let reply = d.host.local_reply.as_ref().expect("refused");
    assert_eq!(reply.status, 503, "its price is being fetched");
    assert_eq!(header(&d.host, "retry-after"), Some("2"));
    let wants = d.host.shared.get(WANTS_KEY).map(|(v, _)| v.clone());
    assert_eq!(wants.as_deref(), Some(&b"openai:brand-new\n"[..]));

    let body = r#"{"model":"mystery","max_tokens":10}"#;
    let d = run(
        &s,
        host("/v1/chat/completions", 10_000_000_000),
        body,
        200,
        RESPONSE,
    );
    assert_eq!(d.host.local_reply.as_ref().map(|r| r.status), Some(402));

    let s = shared(r#"{"strict":{"unpriced":"reserve","unpriced_reserve_usd":0.001}}"#);
    let d = run(
        &s,
        host("/v1/chat/completions", 10_000_000_000),
        body,
        200,
        RESPONSE,
    );
    assert!(d.host.local_reply.is_none());
    assert_eq!(used(&d.host), 0, "settled to 0, as the collector counts it");
    let d = run(
        &s,
        host("/v1/chat/completions", 999_999_999),
        body,
        200,
        RESPONSE,
    );
    assert_eq!(
        d.host.local_reply.as_ref().map(|r| r.status),
        Some(402),
        "the configured amount does not fit"
    );
}

#[test]
fn without_a_current_lease_the_failure_mode_decides() {
    let expired = || {
        let mut h = host("/v1/chat/completions", 10_000_000_000);
        h.now_ms = START + 61_000; // past the lease's expiry
        h
    };
    // Fresh flags (no staleness counted): only the lease is missing.
    let open = shared(r#"{"stale_after_ms":3600000}"#);
    let d = run(&open, expired(), &chat(100), 200, RESPONSE);
    assert!(d.host.local_reply.is_none(), "fail_open passes");
    assert_eq!(d.host.metric(Metric::CapsUnenforced), 1);
    let records = open.take_records();
    assert!(records[0].get("reserved_usd").is_none());

    let closed = shared(r#"{"failure_mode":"fail_closed","stale_after_ms":3600000}"#);
    let d = run(&closed, expired(), &chat(100), 200, RESPONSE);
    assert_eq!(d.host.local_reply.as_ref().map(|r| r.status), Some(402));
}

#[test]
fn strict_off_or_another_team_reserves_nothing() {
    let s = shared(r#"{"strict":{"enabled":false}}"#);
    let d = run(
        &s,
        host("/v1/chat/completions", 1),
        &chat(100),
        200,
        RESPONSE,
    );
    assert!(d.host.local_reply.is_none());
    assert_eq!(d.headers, Step::Continue, "no strict budget: nothing held");
    assert_eq!(used(&d.host), 0);

    let s = shared("{}");
    let mut h = host("/v1/chat/completions", 1);
    h.shared
        .insert(INDEX_KEY.into(), (b"b1\tteam=growth\n".to_vec(), 2));
    let d = run(&s, h, &chat(100), 200, RESPONSE);
    assert!(d.host.local_reply.is_none());
    assert_eq!(used(&d.host), 0);
}
