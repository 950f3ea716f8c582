use super::*;
use crate::config::Gateway;
use crate::controls::limits::{shared_key, window_offset, WINDOW_MS};
use crate::host::memory::MemoryHost;

const KEY: &str = "demo-search";

fn limits(rpm: Option<u64>, tpm: Option<u64>) -> KeyLimits {
    KeyLimits {
        requests_per_minute: rpm,
        tokens_per_minute: tpm,
    }
}

fn profiles() -> [(Profile, bool); 2] {
    [
        (Profile::new(Gateway::Envoy), false),
        (Profile::new(Gateway::Kong), true),
    ]
}

/// A host whose clock sits 1 s into KEY's window.
fn host(kong: bool) -> MemoryHost {
    let mut h = MemoryHost::with_request(&[]);
    let base = 1_700_000_000_000u64;
    h.now_ms = base - (base + window_offset(KEY)) % WINDOW_MS + 1000;
    h.kong_cas = kong;
    h
}

/// (requests, tokens) in the shared counter.
fn stored(h: &MemoryHost) -> (u64, u64) {
    h.shared
        .get(&shared_key(KEY))
        .and_then(|(b, _)| Counter::decode(b))
        .map_or((0, 0), |c| (c.requests, c.tokens))
}

fn key() -> Rc<str> {
    Rc::from(KEY)
}

fn allowed(a: Admission) -> bool {
    matches!(a, Admission::Allowed(_))
}

/// Far from its limit a key is synced once per share of its room: the
/// requests in between make no shared-data call and wait on the VM, and
/// the flush writes them.
#[test]
fn a_key_far_from_its_limit_syncs_once_per_share() {
    for (profile, kong) in profiles() {
        let mut h = host(kong);
        let mut t = LocalCounts::default();
        let l = limits(Some(3200), None);
        let now = h.now_ms;
        assert!(allowed(admit(&mut h, profile, &mut t, &key(), &l, now)));
        assert_eq!(stored(&h), (1, 0), "the first request syncs");
        // Room 3199 at the sync: this VM's share is 3199 / 32 = 99.
        let before = h.shared.clone();
        for _ in 0..99 {
            assert!(allowed(admit(&mut h, profile, &mut t, &key(), &l, now)));
        }
        assert_eq!(h.shared, before, "no shared-data write within the share");
        assert_eq!(t.waiting(KEY), (99, 0));
        assert!(allowed(admit(&mut h, profile, &mut t, &key(), &l, now)));
        assert_eq!(stored(&h), (101, 0), "the share used up: the next syncs");
        assert_eq!(t.waiting(KEY), (0, 0));
        assert!(allowed(admit(&mut h, profile, &mut t, &key(), &l, now)));
        let waiting = t.take_all();
        assert_eq!(waiting.len(), 1);
        assert_eq!(waiting[0].1, (1, 0));
        assert!(t.is_empty(), "the flush forgets the copy");
    }
}

/// A key with less room than SHARE requests is synced on every request:
/// exact, as with no table.
#[test]
fn a_key_near_its_limit_syncs_every_request() {
    for (profile, kong) in profiles() {
        let mut h = host(kong);
        let mut t = LocalCounts::default();
        let l = limits(Some(20), None);
        let now = h.now_ms;
        for n in 1..=20 {
            assert!(allowed(admit(&mut h, profile, &mut t, &key(), &l, now)));
            assert_eq!(stored(&h), (n, 0));
        }
        assert!(matches!(
            admit(&mut h, profile, &mut t, &key(), &l, now),
            Admission::Limited { .. }
        ));
        assert_eq!(stored(&h), (20, 0));
    }
}

/// Several workers (one table each) on one shared store, interleaved at
/// random: together they pass the limit by at most (W − 1) × limit / SHARE,
/// and once each has flushed the counter holds every admitted request.
#[test]
fn workers_pass_a_limit_by_at_most_their_shares_and_lose_no_count() {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for (profile, kong) in profiles() {
        for workers in 1..=4u64 {
            for limit in [40, 1000, 5000] {
                let mut h = host(kong);
                let now = h.now_ms;
                let l = limits(Some(limit), None);
                let mut tables: Vec<LocalCounts> =
                    (0..workers).map(|_| LocalCounts::default()).collect();
                let mut admitted = 0;
                for _ in 0..2 * limit {
                    let w = (next() % workers) as usize;
                    if allowed(admit(&mut h, profile, &mut tables[w], &key(), &l, now)) {
                        admitted += 1;
                    }
                }
                let bound = limit + (workers - 1) * limit / SHARE;
                assert!(
                    (limit..=bound).contains(&admitted),
                    "{workers} workers, limit {limit}: {admitted} admitted (bound {bound})"
                );
                for t in &mut tables {
                    for (k, counts) in t.take_all() {
                        assert!(super::super::add_counts_at(
                            &mut h, profile, &k, counts, now
                        ));
                    }
                }
                assert_eq!(stored(&h).0, admitted, "every admitted request counted");
            }
        }
    }
}

/// Tokens wait with the requests; once they reach the share of the token
/// room the next request syncs and writes them.
#[test]
fn waiting_tokens_bring_the_next_sync() {
    let (profile, kong) = profiles()[0];
    let mut h = host(kong);
    let mut t = LocalCounts::default();
    let l = limits(Some(100_000), Some(3200));
    let now = h.now_ms;
    assert!(allowed(admit(&mut h, profile, &mut t, &key(), &l, now)));
    assert!(t.add_tokens(&key(), 99)); // share of 3200 tokens: 100
    assert!(allowed(admit(&mut h, profile, &mut t, &key(), &l, now)));
    assert_eq!(stored(&h), (1, 0), "within both shares");
    assert!(t.add_tokens(&key(), 1));
    match admit(&mut h, profile, &mut t, &key(), &l, now) {
        Admission::Allowed(s) => assert_eq!(s.remaining_tokens, 3100),
        other => panic!("{other:?}"),
    }
    assert_eq!(stored(&h), (3, 100), "synced with the waiting tokens");
}

/// A copy is good for its window only, and a reconfigure forgets it.
#[test]
fn a_new_window_or_forget_seen_brings_a_sync() {
    let (profile, kong) = profiles()[1];
    let mut h = host(kong);
    let mut t = LocalCounts::default();
    let l = limits(Some(100_000), None);
    let now = h.now_ms;
    for _ in 0..3 {
        assert!(allowed(admit(&mut h, profile, &mut t, &key(), &l, now)));
    }
    assert_eq!(stored(&h), (1, 0));
    t.forget_seen();
    assert!(allowed(admit(&mut h, profile, &mut t, &key(), &l, now)));
    assert_eq!(stored(&h), (4, 0));
    assert!(allowed(admit(&mut h, profile, &mut t, &key(), &l, now)));
    let later = now + WINDOW_MS;
    assert!(allowed(admit(&mut h, profile, &mut t, &key(), &l, later)));
    let c = Counter::decode(&h.shared[&shared_key(KEY)].0).unwrap();
    assert_eq!(
        (c.prev_requests, c.requests),
        (4, 2),
        "the waiting request goes into the window current at the sync"
    );
}

/// With the table full, a new key's requests are synced one by one and its
/// tokens are not kept.
#[test]
fn a_full_table_syncs_every_request() {
    let (profile, kong) = profiles()[0];
    let mut h = host(kong);
    let mut t = LocalCounts::default();
    for i in 0..MAX_KEYS {
        assert!(t.add_tokens(&Rc::from(format!("other-{i}").as_str()), 1));
    }
    let l = limits(Some(100_000), None);
    let now = h.now_ms;
    for n in 1..=3 {
        assert!(allowed(admit(&mut h, profile, &mut t, &key(), &l, now)));
        assert_eq!(stored(&h), (n, 0));
    }
    assert!(!t.add_tokens(&key(), 5));
    assert_eq!(t.waiting(KEY), (0, 0));
}
