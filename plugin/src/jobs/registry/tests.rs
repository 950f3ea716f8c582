use super::*;
use crate::host::memory::MemoryHost;
use crate::request::identity::{ClaimSource, Principal, Rejection};
use crate::request::record::IdGen;
use sha2::{Digest, Sha256};

fn config(gateway: &str, registry: &str) -> Filter {
    Filter::from_json(
        format!(
            r#"{{"gateway":"{gateway}","collector":{{"cluster":"127.0.0.1:9","authority":"col","token":"ingest"}},
                "caps":{{"enabled":false}},
                "identity":{{"keys":[{{"key_id":"static","sha256":"{}","tags":{{"team":"static"}}}}],
                             "registry":{registry}}}}}"#,
            sha_hex("sk-static")
        )
        .as_bytes(),
    )
    .unwrap()
}

fn shared(gateway: &str) -> Shared {
    Shared::new(
        config(gateway, r#"{"poll_ms":1000}"#),
        IdGen::new([1; 16]),
        0,
    )
}

fn sha_hex(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn snapshot(version: &str, keys: &[(&str, &str, &str, &str)]) -> Vec<u8> {
    let keys: Vec<String> = keys
        .iter()
        .map(|(key, id, status, not_after)| {
            format!(
                r#"{{"sha256":"{}","key_id":"{id}","tags":{{"team":"t-{id}"}},"limits":{{"requests_per_minute":3}},"status":"{status}","not_after":{not_after}}}"#,
                sha_hex(key)
            )
        })
        .collect();
    format!(r#"{{"version":"{version}","keys":[{}]}}"#, keys.join(",")).into_bytes()
}

struct NoClaims;
impl ClaimSource for NoClaims {
    fn claim(&mut self, _: &str) -> Option<String> {
        None
    }
}

/// What the request path of the worker owning `s` answers for `key` at `now`.
fn call(s: &Shared, key: &str, now: u64) -> Result<Principal, Rejection> {
    let view = s.registry.borrow();
    let auth = format!("Bearer {key}");
    s.filter.identity.resolve_with(
        &[("authorization", auth.as_str())],
        &mut NoClaims,
        Some(view.keys()),
        now,
    )
}

fn header<'a>(h: &'a MemoryHost, call: usize, name: &str) -> Option<&'a str> {
    h.dispatched[call]
        .1
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// One poll by `p` for worker `s`, answered with `status` and `body`.
fn poll(p: &mut RegistryPoller, h: &mut MemoryHost, s: &Shared, status: Option<u32>, body: &[u8]) {
    let _token = p.run(h, s).expect("a poll was due");
    p.on_answer(h, s, Answer { status, body });
}

#[test]
fn a_poll_fetches_stores_and_serves_the_registry() {
    let s = shared("envoy");
    let mut h = MemoryHost::with_request(&[]);
    let mut p = RegistryPoller::default();
    let now = h.now_ms;
    assert_eq!(call(&s, "sk-a", now), Err(Rejection::UnknownKey));
    poll(
        &mut p,
        &mut h,
        &s,
        Some(200),
        &snapshot("v1", &[("sk-a", "a", "active", "null")]),
    );
    assert_eq!(h.dispatched[0].0, "127.0.0.1:9");
    assert_eq!(header(&h, 0, ":path"), Some("/v1/keys/registry"));
    assert_eq!(header(&h, 0, ":authority"), Some("col"));
    assert_eq!(header(&h, 0, "authorization"), Some("Bearer ingest"));
    assert_eq!(header(&h, 0, "if-none-match"), None);
    assert_eq!(
        h.dispatch_timeouts,
        [1000],
        "an answer older than a poll is moot"
    );
    let p_a = call(&s, "sk-a", now).unwrap();
    assert_eq!(&*p_a.key_id, "a");
    assert_eq!(p_a.limits.and_then(|l| l.requests_per_minute), Some(3));
    assert_eq!(&*call(&s, "sk-static", now).unwrap().key_id, "static");
    assert_eq!(h.metric(Metric::RegistryPolls), 1);
    assert_eq!(h.metric(Metric::RegistryUpdates), 1);
    let (fetched, version) = split_meta(&h.shared[META_KEY].0).unwrap();
    assert_eq!((fetched, version), (now, "v1"));
}

#[test]
fn the_next_poll_sends_the_version_and_304_renews_it() {
    let s = shared("envoy");
    let mut h = MemoryHost::with_request(&[]);
    let mut p = RegistryPoller::default();
    poll(&mut p, &mut h, &s, Some(200), &snapshot("v1", &[]));
    h.now_ms += 500;
    assert!(p.run(&mut h, &s).is_none(), "not due yet");
    h.now_ms += 500;
    poll(&mut p, &mut h, &s, Some(304), b"");
    assert_eq!(header(&h, 1, "if-none-match"), Some("\"v1\""));
    let (fetched, _) = split_meta(&h.shared[META_KEY].0).unwrap();
    assert_eq!(fetched, h.now_ms);
    assert_eq!(h.metric(Metric::RegistryUpdates), 1);
    assert_eq!(h.metric(Metric::RegistryPollFailures), 0);
}

#[test]
fn workers_share_one_poll_and_each_decodes_once_per_version() {
    let (one, two) = (shared("envoy"), shared("envoy"));
    let mut h = MemoryHost::with_request(&[]);
    let (mut p1, mut p2) = (RegistryPoller::default(), RegistryPoller::default());
    let body = snapshot("v1", &[("sk-a", "a", "active", "null")]);
    poll(&mut p1, &mut h, &one, Some(200), &body);
    // Worker two: the shared copy is fresh, so no poll of its own; its
    // tick takes the registry in.
    assert!(p2.run(&mut h, &two).is_none());
    assert_eq!(call(&two, "sk-a", h.now_ms), Err(Rejection::UnknownKey));
    p2.after_tick(&mut h, &two);
    assert!(call(&two, "sk-a", h.now_ms).is_ok());
    let decoded = std::rc::Rc::as_ptr(&two.registry.borrow().keys_rc());
    p2.after_tick(&mut h, &two);
    assert_eq!(
        std::rc::Rc::as_ptr(&two.registry.borrow().keys_rc()),
        decoded,
        "same version: not decoded again"
    );
    // Revoked by the next version: both workers refuse it within one poll.
    h.now_ms += 1000;
    poll(
        &mut p2,
        &mut h,
        &two,
        Some(200),
        &snapshot("v2", &[("sk-a", "a", "revoked", "null")]),
    );
    p1.after_tick(&mut h, &one);
    for s in [&one, &two] {
        assert_eq!(call(s, "sk-a", h.now_ms), Err(Rejection::RevokedKey));
    }
    assert_eq!(h.dispatched.len(), 2);
}

#[test]
fn a_bad_or_missing_answer_keeps_the_last_good_registry_and_expiry_still_applies() {
    let s = shared("envoy");
    let mut h = MemoryHost::with_request(&[]);
    let mut p = RegistryPoller::default();
    let expires = h.now_ms + 5000;
    poll(
        &mut p,
        &mut h,
        &s,
        Some(200),
        &snapshot(
            "v1",
            &[
                ("sk-a", "a", "active", "null"),
                ("sk-e", "e", "active", &(expires / 1000).to_string()),
            ],
        ),
    );
    let failures: [(Option<u32>, &[u8]); 5] = [
        (
            Some(200),
            b"{\"version\":\"v2\",\"keys\":[{\"sha256\":\"no\"}]}",
        ),
        (Some(200), b"<html>"),
        (Some(500), b""),
        (Some(401), b""),
        (None, b""),
    ];
    for (status, body) in failures {
        h.now_ms += 1000;
        poll(&mut p, &mut h, &s, status, body);
        assert!(call(&s, "sk-a", h.now_ms).is_ok(), "{status:?}: no lockout");
    }
    assert_eq!(h.metric(Metric::RegistryRejected), 2);
    assert_eq!(h.metric(Metric::RegistryPollFailures), 3);
    assert_eq!(h.metric(Metric::RegistryStale), 5);
    assert_eq!(split_meta(&h.shared[META_KEY].0).unwrap().1, "v1");
    // The collector is gone, yet the expired key is refused from its time on.
    assert!(h.now_ms >= expires);
    assert_eq!(call(&s, "sk-e", h.now_ms), Err(Rejection::ExpiredKey));
    assert_eq!(
        call(&s, "sk-e", expires - 1).map(|p| p.key_id),
        Ok("e".into())
    );
    // A dispatch the host refuses counts the same way.
    h.now_ms += 1000;
    h.dispatch_fails = true;
    assert!(p.run(&mut h, &s).is_none());
    assert_eq!(h.metric(Metric::RegistryPollFailures), 4);
    assert_eq!(h.metric(Metric::RegistryStale), 6);
}

#[test]
fn evicted_keys_are_fetched_again_whole() {
    // Kong: CAS semantics of its shm zone, and zones may evict.
    let s = shared("kong");
    let mut h = MemoryHost::with_request(&[]);
    h.kong_cas = true;
    let mut p = RegistryPoller::default();
    poll(
        &mut p,
        &mut h,
        &s,
        Some(200),
        &snapshot("v1", &[("sk-a", "a", "active", "null")]),
    );
    let other = shared("kong");
    h.shared.remove(DATA_KEY);
    RegistryPoller::default().after_tick(&mut h, &other);
    assert_eq!(split_meta(&h.shared[META_KEY].0), Some((0, "")));
    // The next poll asks for everything (no If-None-Match) and heals it.
    poll(
        &mut p,
        &mut h,
        &s,
        Some(200),
        &snapshot("v1", &[("sk-a", "a", "active", "null")]),
    );
    assert_eq!(header(&h, 1, "if-none-match"), None);
    RegistryPoller::default().after_tick(&mut h, &other);
    assert!(call(&other, "sk-a", h.now_ms).is_ok());
    // The first worker kept serving throughout.
    assert!(call(&s, "sk-a", h.now_ms).is_ok());
    // A 304 finding the meta gone polls again (the scheduler defers it on Kong).
    h.shared.remove(META_KEY);
    h.now_ms += 1000;
    p.run(&mut h, &s).unwrap();
    assert_eq!(
        p.on_answer(
            &mut h,
            &s,
            Answer {
                status: Some(304),
                body: b""
            }
        ),
        Next::Now
    );
}

#[test]
fn without_a_registry_nothing_polls_and_a_reconfigure_drops_the_copy() {
    let s = shared("envoy");
    let mut h = MemoryHost::with_request(&[]);
    let mut p = RegistryPoller::default();
    poll(
        &mut p,
        &mut h,
        &s,
        Some(200),
        &snapshot("v1", &[("sk-a", "a", "active", "null")]),
    );
    let off = Filter::from_json(br#"{"collector":{"cluster":"c","token":"t"}}"#).unwrap();
    assert_eq!(p.period_ms(&off), None);
    let ids = s.ids.clone();
    let s = Shared::configure(Some(s), off, ids, 0);
    p.after_tick(&mut h, &s);
    assert!(s.registry.borrow().keys().is_empty());
    assert!(p.run(&mut h, &s).is_none());
    assert_eq!(h.dispatched.len(), 1);
}

#[test]
fn a_registry_entry_for_a_static_key_id_is_left_out() {
    let s = shared("envoy");
    let mut h = MemoryHost::with_request(&[]);
    let mut p = RegistryPoller::default();
    poll(
        &mut p,
        &mut h,
        &s,
        Some(200),
        &snapshot(
            "v1",
            &[
                ("sk-other", "static", "active", "null"),
                ("sk-static", "x", "revoked", "null"),
            ],
        ),
    );
    assert_eq!(call(&s, "sk-other", h.now_ms), Err(Rejection::UnknownKey));
    let p_static = call(&s, "sk-static", h.now_ms).unwrap();
    assert_eq!(&*p_static.key_id, "static", "the static secret wins");
    assert_eq!(s.registry.borrow().keys().shadowed, 2);
}

/// A chat call with `key` through the whole request flow of worker `s`,
/// sharing `h` (one gateway); the local reply's status, if any.
fn request(s: &Shared, h: &mut MemoryHost, key: &str) -> Option<u32> {
    use crate::request::flow::RequestFlow;
    let auth = format!("Bearer {key}");
    h.request_headers = [
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        ("authorization", auth.as_str()),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    h.local_reply = None;
    let mut flow = RequestFlow::new(s);
    flow.on_request_headers(h, true);
    h.local_reply.as_ref().map(|r| r.status)
}

#[test]
fn registry_limits_revocation_and_expiry_reach_the_request_path() {
    let s = shared("envoy");
    let mut h = MemoryHost::with_request(&[]);
    let mut p = RegistryPoller::default();
    assert_eq!(request(&s, &mut h, "sk-a"), Some(401));
    poll(
        &mut p,
        &mut h,
        &s,
        Some(200),
        &snapshot("v1", &[("sk-a", "a", "active", "null")]),
    );
    // Limit 3 per minute (the snapshot's): the fourth call is refused.
    for _ in 0..3 {
        assert_eq!(request(&s, &mut h, "sk-a"), None);
    }
    assert_eq!(request(&s, &mut h, "sk-a"), Some(429));
    // Raised live to 10: the next poll lets calls through again.
    h.now_ms += 1000;
    let raised = String::from_utf8(snapshot("v2", &[("sk-a", "a", "active", "null")]))
        .unwrap()
        .replace("\"requests_per_minute\":3", "\"requests_per_minute\":10");
    poll(&mut p, &mut h, &s, Some(200), raised.as_bytes());
    assert_eq!(request(&s, &mut h, "sk-a"), None);
    // Revoked: 401 within one poll.
    h.now_ms += 1000;
    poll(
        &mut p,
        &mut h,
        &s,
        Some(200),
        &snapshot("v3", &[("sk-a", "a", "revoked", "null")]),
    );
    assert_eq!(request(&s, &mut h, "sk-a"), Some(401));
    let body = String::from_utf8(h.local_reply.as_ref().unwrap().body.clone()).unwrap();
    assert!(body.contains("revoked"), "{body}");
    // Static keys are untouched by all of it.
    assert_eq!(request(&s, &mut h, "sk-static"), None);
}
