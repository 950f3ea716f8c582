use super::*;
use crate::config::Gateway;
use crate::host::memory::MemoryHost;

const KEY: &str = "demo-search";

fn rpm(n: u64) -> KeyLimits {
    KeyLimits {
        requests_per_minute: Some(n),
        tokens_per_minute: None,
    }
}

fn tpm(n: u64) -> KeyLimits {
    KeyLimits {
        requests_per_minute: None,
        tokens_per_minute: Some(n),
    }
}

fn profiles() -> [(Profile, bool); 2] {
    [
        (Profile::new(Gateway::Envoy), false),
        (Profile::new(Gateway::Kong), true),
    ]
}

/// A host whose clock sits at `elapsed` ms into KEY's window.
fn host_at(elapsed: u64, kong: bool) -> MemoryHost {
    let mut h = MemoryHost::with_request(&[]);
    let base = 1_700_000_000_000u64;
    let start = base - (base + window_offset(KEY)) % WINDOW_MS;
    h.now_ms = start + elapsed;
    h.kong_cas = kong;
    h
}

fn stored(h: &MemoryHost) -> Counter {
    Counter::decode(&h.shared[&shared_key(KEY)].0).unwrap()
}

#[test]
fn counter_round_trips_and_rejects_foreign_bytes() {
    let c = Counter {
        window: 7,
        requests: 1,
        tokens: u64::MAX,
        prev_requests: 3,
        prev_tokens: 4,
    };
    assert_eq!(Counter::decode(&c.encode()), Some(c));
    assert_eq!(Counter::decode(b"12"), None);
}

#[test]
fn rolling_keeps_one_previous_window() {
    let c = Counter {
        window: 10,
        requests: 5,
        tokens: 50,
        ..Counter::default()
    };
    assert_eq!(c.rolled(10), c);
    let next = c.rolled(11);
    assert_eq!((next.prev_requests, next.requests), (5, 0));
    assert_eq!((next.prev_tokens, next.tokens), (50, 0));
    assert_eq!(
        c.rolled(12),
        Counter {
            window: 12,
            ..Counter::default()
        }
    );
}

#[test]
fn keys_reset_at_different_moments() {
    let offsets: std::collections::HashSet<u64> = (0..50)
        .map(|i| window_offset(&format!("key-{i}")))
        .collect();
    assert!(offsets.len() > 45, "offsets spread over the minute");
    assert!(offsets.iter().all(|o| *o < WINDOW_MS));
}

#[test]
fn sliding_estimate_decays_the_previous_window() {
    assert_eq!(estimate(100, 0, 0), 100);
    assert_eq!(estimate(100, 0, WINDOW_MS / 2), 50);
    assert_eq!(estimate(100, 3, WINDOW_MS / 4), 78);
    // Rounded up: one left over counts as one.
    assert_eq!(estimate(1, 0, WINDOW_MS - 1), 1);
}

#[test]
fn wait_until_room_matches_the_estimate() {
    for (prev, cur, allowed, elapsed) in [(10, 0, 5, 0), (10, 9, 9, 1000), (0, 12, 9, 30_000)] {
        let wait = wait_ms(prev, cur, allowed, elapsed);
        let mut c = Counter {
            window: 1,
            requests: cur,
            prev_requests: prev,
            ..Counter::default()
        };
        let mut at = elapsed + wait;
        if at >= WINDOW_MS {
            c = c.rolled(2);
            at -= WINDOW_MS;
        }
        assert!(
            estimate(c.prev_requests, c.requests, at) <= allowed,
            "{prev} {cur} {allowed} {elapsed}: still over after {wait} ms"
        );
        assert!(wait > 0);
    }
}

#[test]
fn requests_over_the_limit_get_429_state_under_both_cas_semantics() {
    for (profile, kong) in profiles() {
        let mut h = host_at(1000, kong);
        for remaining in [1, 0] {
            match admit(&mut h, profile, KEY, &rpm(2)) {
                Admission::Allowed(s) => assert_eq!(s.remaining_requests, remaining),
                other => panic!("{other:?}"),
            }
        }
        match admit(&mut h, profile, KEY, &rpm(2)) {
            Admission::Limited {
                state,
                retry_after_s,
            } => {
                assert_eq!(state.remaining_requests, 0);
                // 59 s to the window's end, then 30 s until the two decay to one.
                assert_eq!(retry_after_s, 89);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(stored(&h).requests, 2, "a refused request is not counted");
    }
}

#[test]
fn a_burst_at_the_window_edge_cannot_double_the_limit() {
    let p = Profile::new(Gateway::Envoy);
    let mut h = host_at(WINDOW_MS - 10, false);
    for _ in 0..10 {
        assert!(matches!(
            admit(&mut h, p, KEY, &rpm(10)),
            Admission::Allowed(_)
        ));
    }
    h.now_ms += 20; // next window, 10 ms in: the previous 10 still weigh ~10
    assert!(matches!(
        admit(&mut h, p, KEY, &rpm(10)),
        Admission::Limited { .. }
    ));
    h.now_ms += WINDOW_MS / 2; // half decayed: about 5 free
    let admitted = (0..10)
        .filter(|_| matches!(admit(&mut h, p, KEY, &rpm(10)), Admission::Allowed(_)))
        .count();
    // ceil(10 × 29 990 / 60 000) = 5 still weigh: 5 more fit under 10.
    assert_eq!(admitted, 5);
}

#[test]
fn concurrent_writers_are_retried_not_lost() {
    for (profile, kong) in profiles() {
        let mut h = host_at(0, kong);
        assert!(matches!(
            admit(&mut h, profile, KEY, &rpm(100)),
            Admission::Allowed(_)
        ));
        // Another worker wins the race 3 times; our increment still lands.
        h.interference = 3;
        assert!(matches!(
            admit(&mut h, profile, KEY, &rpm(100)),
            Admission::Allowed(_)
        ));
        assert_eq!(stored(&h).requests, 2);
    }
}

#[test]
fn kong_create_loses_to_a_concurrent_creator_and_retries() {
    let kong = Profile::new(Gateway::Kong);
    let mut h = host_at(0, true);
    // Someone creates the key between our read (absent) and our create (cas 0).
    h.interference = 1;
    assert!(matches!(
        admit(&mut h, kong, KEY, &rpm(5)),
        Admission::Allowed(_)
    ));
    assert_eq!(stored(&h).requests, 1);
}

#[test]
fn endless_contention_or_host_errors_are_unenforced() {
    let p = Profile::new(Gateway::Envoy);
    let mut h = host_at(0, false);
    assert!(matches!(
        admit(&mut h, p, KEY, &rpm(5)),
        Admission::Allowed(_)
    ));
    h.interference = MAX_ATTEMPTS;
    assert_eq!(admit(&mut h, p, KEY, &rpm(5)), Admission::Unenforced);
    let mut h = host_at(0, false);
    h.shared_fails = true;
    assert_eq!(admit(&mut h, p, KEY, &rpm(5)), Admission::Unenforced);
    assert!(!add_tokens(&mut h, p, KEY, 10));
}

#[test]
fn tokens_stop_the_next_call_once_the_budget_is_used() {
    for (profile, kong) in profiles() {
        let mut h = host_at(0, kong);
        let limits = tpm(100);
        match admit(&mut h, profile, KEY, &limits) {
            Admission::Allowed(s) => assert_eq!(s.remaining_tokens, 100),
            other => panic!("{other:?}"),
        }
        assert!(
            h.shared.is_empty(),
            "a tokens-only key writes nothing before the call"
        );
        assert!(add_tokens(&mut h, profile, KEY, 60));
        match admit(&mut h, profile, KEY, &limits) {
            Admission::Allowed(s) => assert_eq!(s.remaining_tokens, 40),
            other => panic!("{other:?}"),
        }
        assert!(add_tokens(&mut h, profile, KEY, 60));
        match admit(&mut h, profile, KEY, &limits) {
            Admission::Limited { state, .. } => assert_eq!(state.remaining_tokens, 0),
            other => panic!("{other:?}"),
        }
        assert_eq!(stored(&h).tokens, 120);
    }
}

#[test]
fn headers_name_only_the_configured_limits() {
    let state = RateState {
        limits: rpm(5),
        remaining_requests: 4,
        remaining_tokens: 0,
    };
    let mut out = Vec::new();
    state.headers(&mut out);
    assert_eq!(
        out,
        vec![
            ("x-ratelimit-limit-requests", "5".to_string()),
            ("x-ratelimit-remaining-requests", "4".to_string()),
        ]
    );
}

/// Several workers sharing one store, interleaving read and write: the
/// total admitted never exceeds the limit.
#[test]
fn interleaved_workers_never_admit_more_than_the_limit() {
    for (profile, kong) in profiles() {
        let mut h = host_at(5_000, kong);
        let mut admitted = 0;
        for i in 0..40 {
            // Every other call races with a simulated worker's write.
            h.interference = i % 2;
            if matches!(admit(&mut h, profile, KEY, &rpm(15)), Admission::Allowed(_)) {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 15);
    }
}
