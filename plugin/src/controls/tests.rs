//! The controls through a whole request (`RequestFlow` on the memory host).

use crate::controls::caps;
use crate::filter::Filter;
use crate::host::memory::MemoryHost;
use crate::host::Metric;
use crate::request::flow::{RequestFlow, Step};
use crate::request::record::IdGen;
use crate::vm::Shared;
use sha2::{Digest, Sha256};

const START: u64 = 1_700_000_000_000;
const RESPONSE: &[u8] =
    br#"{"model":"gpt-4o-mini","usage":{"prompt_tokens":12,"completion_tokens":8}}"#;

fn shared(limits: &str, caps: &str) -> Shared {
    let sha: String = Sha256::digest(b"sk-key")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let json = format!(
        r#"{{"identity":{{"keys":[{{"key_id":"k1","sha256":"{sha}","tags":{{"team":"search"}},
              "limits":{limits}}}]}},
            "collector":{{"cluster":"c","token":"t"}},"caps":{caps}}}"#
    );
    Shared::new(
        Filter::from_json(json.as_bytes()).unwrap(),
        IdGen::new([1; 16]),
        START,
    )
}

fn host(shared_from: Option<&MemoryHost>) -> MemoryHost {
    let mut h = MemoryHost::with_request(&[
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        ("authorization", "Bearer sk-key"),
    ]);
    h.now_ms = START + 1000;
    if let Some(prev) = shared_from {
        h.shared = prev.shared.clone();
        h.now_ms = prev.now_ms;
    }
    h
}

/// One call; returns its host (local reply or response headers) for checks.
fn call(shared: &Shared, prev: Option<&MemoryHost>) -> MemoryHost {
    let mut h = host(prev);
    // The root tick before the call takes in the shared flags.
    shared.sync_caps(&mut h);
    let mut flow = RequestFlow::new(shared);
    if flow.on_request_headers(&mut h, true) == Step::Continue {
        h.response_headers = vec![(":status".into(), "200".into())];
        flow.on_response_headers(&mut h);
        h.response_chunk = RESPONSE.to_vec();
        flow.on_response_body(&mut h, RESPONSE.len(), true);
    }
    h
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

fn error_type(h: &MemoryHost) -> String {
    let body = &h.local_reply.as_ref().unwrap().body;
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    v["error"]["type"].as_str().unwrap().to_string()
}

#[test]
fn rate_limited_key_sees_its_state_on_200s_and_a_429() {
    let s = shared(
        r#"{"requests_per_minute":2,"tokens_per_minute":1000}"#,
        "{}",
    );
    let first = call(&s, None);
    assert!(first.local_reply.is_none());
    assert_eq!(header(&first, "x-ratelimit-limit-requests"), Some("2"));
    assert_eq!(header(&first, "x-ratelimit-remaining-requests"), Some("1"));
    assert_eq!(header(&first, "x-ratelimit-limit-tokens"), Some("1000"));
    assert_eq!(header(&first, "x-ratelimit-remaining-tokens"), Some("1000"));
    let second = call(&s, Some(&first));
    assert_eq!(
        header(&second, "x-ratelimit-remaining-tokens"),
        Some("980"),
        "12 + 8 tokens"
    );
    let third = call(&s, Some(&second));
    let reply = third.local_reply.as_ref().unwrap();
    assert_eq!(reply.status, 429);
    assert_eq!(error_type(&third), "rate_limit_exceeded");
    assert!(
        header(&third, "retry-after")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert_eq!(header(&third, "x-ratelimit-remaining-requests"), Some("0"));
    assert_eq!(third.metric(Metric::Denied429), 1);
}

#[test]
fn the_keys_standing_replaces_the_providers_headers_of_the_same_name() {
    // The key limits requests only; the provider (as OpenAI does) sends its
    // organization's standing for requests and tokens.
    let s = shared(r#"{"requests_per_minute":2}"#, "{}");
    let mut h = host(None);
    let mut flow = RequestFlow::new(&s);
    assert_eq!(flow.on_request_headers(&mut h, true), Step::Continue);
    h.response_headers = [
        (":status", "200"),
        ("X-RateLimit-Remaining-Requests", "9999"),
        ("x-ratelimit-limit-requests", "10000"),
        ("x-ratelimit-remaining-tokens", "149990"),
        ("x-ratelimit-reset-requests", "6ms"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    flow.on_response_headers(&mut h);
    let all = |name: &str| -> Vec<&str> {
        h.response_headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(
        all("x-ratelimit-limit-requests"),
        ["2"],
        "one value, the key's"
    );
    assert_eq!(all("x-ratelimit-remaining-requests"), ["1"]);
    // What the key has no limit for passes as the provider sent it.
    assert_eq!(all("x-ratelimit-remaining-tokens"), ["149990"]);
    assert_eq!(all("x-ratelimit-reset-requests"), ["6ms"]);
    assert_eq!(all("x-ratelimit-limit-tokens"), Vec::<&str>::new());
}

#[test]
fn unlimited_keys_touch_no_rate_counter() {
    let s = shared("null", "{}");
    let h = call(&s, None);
    assert!(h
        .shared
        .keys()
        .all(|k| !k.starts_with(crate::controls::limits::KEY_PREFIX)));
    assert_eq!(header(&h, "x-ratelimit-limit-requests"), None);
}

/// Put cap flags in shared data as a poll would, fetched now.
fn with_caps(h: &mut MemoryHost, flags_json: &str) {
    let fetched_at = h.now_ms;
    let (v, f) = caps::from_collector(flags_json.as_bytes()).unwrap();
    let cas = h.shared.get(caps::SHARED_KEY).map_or(1, |(_, c)| c + 1);
    h.shared.insert(
        caps::SHARED_KEY.into(),
        (caps::encode(fetched_at, &v, &f), cas),
    );
}

#[test]
fn soft_cap_warns_and_hard_cap_answers_402_until_lifted() {
    let s = shared("null", "{}");
    let mut h = host(None);
    with_caps(
        &mut h,
        r#"{"caps":[{"budget_id":"b1","scope":{"team":"search"},"state":"soft"}]}"#,
    );
    let soft = call(&s, Some(&h));
    assert!(soft.local_reply.is_none());
    assert_eq!(header(&soft, "x-aispend-budget-warning"), Some("b1"));

    with_caps(
        &mut h,
        r#"{"caps":[{"budget_id":"b1","scope":{"team":"search"},"state":"hard"}]}"#,
    );
    let hard = call(&s, Some(&h));
    assert_eq!(hard.local_reply.as_ref().unwrap().status, 402);
    assert_eq!(error_type(&hard), "budget_exceeded");
    assert_eq!(hard.metric(Metric::Denied402), 1);

    with_caps(&mut h, r#"{"caps":[]}"#);
    let lifted = call(&s, Some(&h));
    assert!(lifted.local_reply.is_none());
    assert_eq!(header(&lifted, "x-aispend-budget-warning"), None);
}

#[test]
fn stale_caps_fail_open_or_closed_and_are_counted() {
    let mut h = host(None);
    with_caps(&mut h, r#"{"caps":[]}"#);
    h.now_ms += 10_001;
    let open = call(&shared("null", "{}"), Some(&h));
    assert!(open.local_reply.is_none());
    assert_eq!(open.metric(Metric::CapsStale), 1);
    assert_eq!(open.metric(Metric::CapsUnenforced), 1);
    let closed = call(
        &shared("null", r#"{"failure_mode":"fail_closed"}"#),
        Some(&h),
    );
    assert_eq!(closed.local_reply.as_ref().unwrap().status, 503);
    assert_eq!(error_type(&closed), "caps_unavailable");
    assert_eq!(closed.metric(Metric::Denied503), 1);
}

#[test]
fn a_hard_cap_does_not_use_up_rate_limit_room() {
    let s = shared(r#"{"requests_per_minute":1}"#, "{}");
    let mut h = host(None);
    with_caps(
        &mut h,
        r#"{"caps":[{"budget_id":"b","scope":{"key_id":"k1"},"state":"hard"}]}"#,
    );
    assert_eq!(call(&s, Some(&h)).local_reply.unwrap().status, 402);
    with_caps(&mut h, r#"{"caps":[]}"#);
    assert!(call(&s, Some(&h)).local_reply.is_none());
}

#[test]
fn rate_limit_store_failure_follows_the_failure_mode() {
    for (mode, status) in [("fail_open", None), ("fail_closed", Some(429))] {
        let sh = {
            let s = shared(r#"{"requests_per_minute":5}"#, "{}");
            let mut cfg = s.filter.config.clone();
            cfg.limits.failure_mode = serde_json::from_str(&format!("\"{mode}\"")).unwrap();
            Shared::new(Filter::new(cfg), IdGen::new([2; 16]), START)
        };
        let mut h = host(None);
        h.shared_fails = true;
        let mut flow = RequestFlow::new(&sh);
        flow.on_request_headers(&mut h, true);
        assert_eq!(h.local_reply.as_ref().map(|r| r.status), status, "{mode}");
        assert_eq!(h.metric(Metric::LimitsUnenforced), 1);
    }
}

#[test]
fn refused_calls_leave_a_record_with_their_status_and_no_tokens() {
    // 429: recorded by default.
    let s = shared(r#"{"requests_per_minute":1}"#, "{}");
    let first = call(&s, None);
    let second = call(&s, Some(&first));
    assert_eq!(second.local_reply.as_ref().unwrap().status, 429);
    let records = s.take_records();
    assert_eq!(records.len(), 2);
    let refused = &records[1];
    assert_eq!(refused["status"], 429);
    assert_eq!(refused["error"], "rate_limit_exceeded");
    assert_eq!(
        (
            refused["input_tokens"].as_u64(),
            refused["output_tokens"].as_u64()
        ),
        (Some(0), Some(0))
    );
    assert_eq!(refused["key_id"], "k1");
    assert_eq!(refused["tags"]["team"], "search");
    assert_eq!(refused["operation"], "chat");
    // The client's request id is the record's id.
    let reply = second.local_reply.as_ref().unwrap();
    let id = reply
        .headers
        .iter()
        .find(|(n, _)| n == "x-aispend-request-id")
        .unwrap();
    assert_eq!(refused["id"], id.1.as_str());

    // 402: recorded by default too.
    let s = shared("null", "{}");
    let mut h = host(None);
    with_caps(
        &mut h,
        r#"{"caps":[{"budget_id":"b1","scope":{"team":"search"},"state":"hard"}]}"#,
    );
    call(&s, Some(&h));
    let records = s.take_records();
    assert_eq!(records[0]["status"], 402);
    assert_eq!(records[0]["error"], "budget_exceeded");
}

#[test]
fn which_refusals_are_recorded_is_configured() {
    let sha: String = Sha256::digest(b"sk-key")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let json = format!(
        r#"{{"identity":{{"keys":[{{"key_id":"k1","sha256":"{sha}","status":"revoked","tags":{{"team":"search"}}}}]}},
            "collector":{{"cluster":"c","token":"t"}},"usage":{{"record_refusals":[401]}}}}"#
    );
    let s = Shared::new(
        Filter::from_json(json.as_bytes()).unwrap(),
        IdGen::new([1; 16]),
        START,
    );
    let h = call(&s, None);
    assert_eq!(h.local_reply.as_ref().unwrap().status, 401);
    let records = s.take_records();
    assert_eq!(
        records.len(),
        1,
        "a revoked key's refusal is recorded against it"
    );
    assert_eq!(records[0]["key_id"], "k1");
    assert_eq!(records[0]["error"], "invalid_api_key");
    // An unknown key has nobody to record it against.
    let mut stranger = host(None);
    stranger.request_headers[2].1 = "Bearer sk-nobody".into();
    let mut flow = RequestFlow::new(&s);
    flow.on_request_headers(&mut stranger, true);
    assert!(s.take_records().is_empty());
}

/// The key's shared counter as stored (requests, tokens).
fn counter(h: &MemoryHost) -> (u64, u64) {
    let (bytes, _) = h.shared.get("aispend:rl:k1").cloned().unwrap_or_default();
    let c = crate::controls::limits::Counter::decode(&bytes).unwrap_or_default();
    (c.requests, c.tokens)
}

/// A call's tokens wait on its VM: the key's next request judges with them
/// and writes them with its own count (one shared-data read and write per
/// call); with no next request, the tick writes them.
#[test]
fn tokens_ride_along_with_the_next_request_or_the_tick() {
    use crate::jobs::{limits_flush::LimitsFlush, Job};
    let s = shared(
        r#"{"tokens_per_minute":50,"requests_per_minute":100}"#,
        "{}",
    );
    let first = call(&s, None);
    assert_eq!(
        counter(&first),
        (1, 0),
        "the tokens wait, not written at the call's end"
    );
    assert_eq!(s.limit_counts.borrow().waiting("k1").1, 20);
    let second = call(&s, Some(&first));
    assert_eq!(
        header(&second, "x-ratelimit-remaining-tokens"),
        Some("30"),
        "judged with them"
    );
    assert_eq!(counter(&second), (2, 20), "written with the second request");
    assert_eq!(
        s.limit_counts.borrow().waiting("k1").1,
        20,
        "the second call's own"
    );
    // No third request: the tick writes them.
    let mut tick_host = host(Some(&second));
    LimitsFlush.run(&mut tick_host, &s);
    assert_eq!(counter(&tick_host), (2, 40));
    assert!(s.limit_counts.borrow().is_empty());
    // 40 + the third call's 20 reach 50: the fourth is refused.
    let third = call(&s, Some(&tick_host));
    assert_eq!(header(&third, "x-ratelimit-remaining-tokens"), Some("10"));
    let fourth = call(&s, Some(&third));
    assert_eq!(fourth.local_reply.as_ref().map(|r| r.status), Some(429));
    assert_eq!(header(&fourth, "x-ratelimit-remaining-tokens"), Some("0"));
}

/// With the table of waiting keys full, a call's tokens are written at its end.
#[test]
fn a_full_table_writes_tokens_at_once() {
    let s = shared(r#"{"tokens_per_minute":1000}"#, "{}");
    {
        let mut p = s.limit_counts.borrow_mut();
        for i in 0..crate::controls::limits::local::MAX_KEYS {
            assert!(p.add_tokens(&std::rc::Rc::from(format!("other-{i}").as_str()), 1));
        }
    }
    let first = call(&s, None);
    assert_eq!(counter(&first).1, 20);
    assert_eq!(s.limit_counts.borrow().waiting("k1").1, 0);
}
