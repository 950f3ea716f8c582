use super::*;
use crate::controls::caps;
use crate::host::memory::MemoryHost;

fn filter(extra: &str) -> Filter {
    Filter::from_json(
        format!(r#"{{"collector":{{"cluster":"c","authority":"col","token":"t"}},"caps":{{"token":"read"{extra}}}}}"#)
            .as_bytes(),
    )
    .unwrap()
}

const ANSWER: &[u8] =
    br#"{"version":"v1","caps":[{"budget_id":"b","scope":{"team":"search"},"state":"hard"}]}"#;

fn header<'a>(h: &'a MemoryHost, call: usize, name: &str) -> Option<&'a str> {
    h.dispatched[call]
        .1
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn shared_flags(h: &MemoryHost) -> (u64, String, String) {
    let (at, v, f) = caps::split(&h.shared[caps::SHARED_KEY].0).unwrap();
    (at, v.to_string(), f.to_string())
}

#[test]
fn polls_with_token_and_stores_the_flags() {
    let f = filter("");
    let mut h = MemoryHost::with_request(&[]);
    let mut p = CapsPoller::default();
    let token = p.tick(&mut h, &f).unwrap();
    assert!(p.owns(token) && p.is_polling());
    assert_eq!(h.dispatched[0].0, "c");
    assert_eq!(header(&h, 0, ":method"), Some("GET"));
    assert_eq!(header(&h, 0, ":path"), Some("/v1/caps"));
    assert_eq!(header(&h, 0, ":authority"), Some("col"));
    assert_eq!(header(&h, 0, "authorization"), Some("Bearer read"));
    assert_eq!(header(&h, 0, "if-none-match"), None);
    assert!(p.tick(&mut h, &f).is_none(), "one poll at a time");
    assert!(p.on_response(&mut h, Some(200), Some(ANSWER)));
    let (at, version, flags) = shared_flags(&h);
    assert_eq!((at, version.as_str()), (h.now_ms, "v1"));
    assert!(flags.starts_with("h\tb\tteam=search"));
    assert_eq!(h.metric(Metric::CapsPolls), 1);
}

#[test]
fn next_poll_sends_the_version_and_304_renews_the_age() {
    let f = filter(r#","poll_interval_ms":300"#);
    let mut h = MemoryHost::with_request(&[]);
    let mut p = CapsPoller::default();
    p.tick(&mut h, &f);
    p.on_response(&mut h, Some(200), Some(ANSWER));
    h.now_ms += 100;
    assert!(p.tick(&mut h, &f).is_none(), "not due yet");
    h.now_ms += 200;
    p.tick(&mut h, &f).unwrap();
    assert_eq!(header(&h, 1, "if-none-match"), Some("v1"));
    assert!(p.on_response(&mut h, Some(304), None));
    let (at, version, flags) = shared_flags(&h);
    assert_eq!((at, version.as_str()), (h.now_ms, "v1"));
    assert!(!flags.is_empty(), "a 304 keeps the flags");
}

#[test]
fn a_fresh_shared_copy_from_another_worker_skips_the_poll() {
    let f = filter("");
    let mut h = MemoryHost::with_request(&[]);
    let (mut a, mut b) = (CapsPoller::default(), CapsPoller::default());
    a.tick(&mut h, &f);
    a.on_response(&mut h, Some(200), Some(ANSWER));
    assert!(b.tick(&mut h, &f).is_none());
    h.now_ms += 2000;
    assert!(b.tick(&mut h, &f).is_some());
}

#[test]
fn failures_keep_the_old_flags_and_are_counted() {
    let f = filter(r#","poll_interval_ms":100"#);
    let mut h = MemoryHost::with_request(&[]);
    let mut p = CapsPoller::default();
    p.tick(&mut h, &f);
    p.on_response(&mut h, Some(200), Some(ANSWER));
    let before = h.shared[caps::SHARED_KEY].clone();
    for (status, body) in [
        (Some(503), None),
        (None, None),
        (Some(200), Some(&b"{bad"[..])),
    ] {
        h.now_ms += 100;
        p.tick(&mut h, &f).unwrap();
        assert!(!p.on_response(&mut h, status, body));
    }
    assert_eq!(h.shared[caps::SHARED_KEY], before);
    assert_eq!(h.metric(Metric::CapsPollFailures), 3);
    h.now_ms += 100;
    h.dispatch_fails = true;
    assert!(p.tick(&mut h, &f).is_none() && !p.is_polling());
    assert_eq!(h.metric(Metric::CapsPollFailures), 4);
}

#[test]
fn kong_cas_creates_then_updates() {
    let f = filter(r#","poll_interval_ms":100"#);
    let mut h = MemoryHost::with_request(&[]);
    h.kong_cas = true;
    let mut p = CapsPoller::default();
    p.tick(&mut h, &f);
    assert!(p.on_response(&mut h, Some(200), Some(ANSWER)));
    h.now_ms += 100;
    p.tick(&mut h, &f);
    h.interference = 2; // another worker writes in between twice
    assert!(p.on_response(&mut h, Some(200), Some(br#"{"version":"v2","caps":[]}"#)));
    assert_eq!(shared_flags(&h).1, "v2");
}

#[test]
fn disabled_caps_never_poll() {
    let f = filter(r#","enabled":false"#);
    let mut h = MemoryHost::with_request(&[]);
    assert!(CapsPoller::default().tick(&mut h, &f).is_none());
    assert!(h.dispatched.is_empty());
}
