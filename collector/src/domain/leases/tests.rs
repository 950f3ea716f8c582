use super::*;

fn input(others: f64, previous: Option<Lease>, report: HostReport, now_ms: i64) -> GrantInput {
    GrantInput {
        cap_usd: 10.0,
        base_usd: 1.0,
        others_committed_usd: others,
        previous,
        report,
        now_ms,
        policy: LeasePolicy::default(),
    }
}

fn report(seq: Option<i64>, used: f64) -> HostReport {
    HostReport {
        seq,
        used_usd: used,
        demand_usd: 0.0,
    }
}

#[test]
fn a_first_grant_is_the_floor_share_of_the_room() {
    let l = grant(&input(4.0, None, HostReport::default(), 1_000));
    // room = 10 - 1 - 4 = 5; floor 10% of it.
    assert!((l.granted_usd - 0.5).abs() < 1e-12, "{l:?}");
    assert_eq!(l.committed_usd, l.granted_usd);
    assert_eq!(l.seq, 1);
    assert_eq!(l.expires_ms, 11_000);
}

#[test]
fn demand_and_burn_grow_the_slice_but_never_past_the_room() {
    let first = grant(&input(0.0, None, HostReport::default(), 0));
    let asked = HostReport {
        seq: Some(1),
        used_usd: 0.5,
        demand_usd: 3.0,
    };
    // Over 100 s the burn is small: the demand decides (0.5 used + 3).
    let l = grant(&input(0.0, Some(first), asked, 100_000));
    assert!((l.granted_usd - 3.5).abs() < 1e-12, "{l:?}");
    // Burn 0.5 USD in 1 s → smoothed 0.25/s → 2 TTLs × 10 s = 5 USD.
    let fast = grant(&input(0.0, Some(first), asked, 1_000));
    assert!((fast.granted_usd - 5.5).abs() < 1e-12, "{fast:?}");
    let l2 = grant(&input(0.0, Some(l), report(Some(2), 0.5), 101_000));
    assert!(l2.granted_usd <= 9.0 + 1e-12);
    let huge = HostReport {
        seq: Some(l2.seq),
        used_usd: 1.0,
        demand_usd: 1e9,
    };
    let l3 = grant(&input(0.0, Some(l2), huge, 102_000));
    assert!((l3.granted_usd - 9.0).abs() < 1e-12, "{l3:?}");
}

#[test]
fn the_invariant_holds_over_many_hosts_and_polls() {
    // Hosts poll in turn with random-ish use; base + Σ committed <= cap.
    let mut leases: Vec<Option<Lease>> = vec![None; 5];
    let mut used = [0.0_f64; 5];
    for step in 0..200_i64 {
        let h = (step * 7 % 5) as usize;
        let others: f64 = leases
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != h)
            .filter_map(|(_, l)| l.map(|l| l.committed_usd))
            .sum();
        let prev = leases[h];
        // The host spends part of what it holds before polling.
        if let Some(p) = prev {
            used[h] = (used[h] + 0.3 * (p.granted_usd - used[h])).min(p.granted_usd);
        }
        let r = HostReport {
            seq: prev.map(|p| p.seq),
            used_usd: used[h],
            demand_usd: if step % 3 == 0 { 2.0 } else { 0.0 },
        };
        let l = grant(&input(others, prev, r, step * 500));
        leases[h] = Some(l);
        let total: f64 = leases
            .iter()
            .filter_map(|l| l.map(|l| l.committed_usd))
            .sum();
        assert!(1.0 + total <= 10.0 + 1e-9, "step {step}: {total}");
        assert!(l.granted_usd + 1e-12 >= used[h]);
    }
}

#[test]
fn a_shrunk_grant_stays_committed_until_acknowledged() {
    let big = Lease {
        seq: 3,
        granted_usd: 5.0,
        committed_usd: 5.0,
        used_usd: 1.0,
        burn_usd_per_s: 0.0,
        updated_ms: 0,
        expires_ms: 10_000,
    };
    // Others took most of the room meanwhile: the new grant is small, but the
    // host may still work under the old one.
    let l = grant(&input(3.5, Some(big), report(Some(2), 1.0), 1_000));
    assert!(l.granted_usd < 5.0);
    assert_eq!(l.committed_usd, 5.0);
    // Acknowledging the newest grant retires the big one.
    let l2 = grant(&input(3.5, Some(l), report(Some(l.seq), 1.0), 2_000));
    assert!(l2.committed_usd < 5.0, "{l2:?}");
}

#[test]
fn a_host_that_lost_its_state_starts_from_what_it_could_have_spent() {
    let held = Lease {
        seq: 7,
        granted_usd: 4.0,
        committed_usd: 4.0,
        used_usd: 1.0,
        burn_usd_per_s: 0.0,
        updated_ms: 0,
        expires_ms: 10_000,
    };
    let l = grant(&input(0.0, Some(held), report(None, 0.0), 1_000));
    assert_eq!(l.used_usd, 4.0);
    assert!(l.granted_usd >= 4.0);
    assert!(l.committed_usd >= 4.0);
}

#[test]
fn garbage_reports_count_as_nothing() {
    let r = HostReport {
        seq: None,
        used_usd: f64::NAN,
        demand_usd: -5.0,
    };
    let l = grant(&input(0.0, None, r, 0));
    assert_eq!(l.used_usd, 0.0);
    assert!(l.granted_usd > 0.0 && l.granted_usd.is_finite());
}

#[test]
fn host_ids() {
    assert!(is_host_id("envoy-1.example:9"));
    assert!(!is_host_id(""));
    assert!(!is_host_id("a b"));
    assert!(!is_host_id(&"x".repeat(129)));
}

#[test]
fn polls_parse_and_bad_parameters_are_named() {
    assert_eq!(parse_poll("").expect("empty"), None);
    let p = parse_poll("host=gw-1&lease=b1,3,0.25,1.5&lease=b2,-,0,0&model=openai:gpt-4o-mini")
        .expect("parse")
        .expect("poll");
    assert_eq!(p.host, "gw-1");
    assert_eq!(
        p.reports.get("b1"),
        Some(&HostReport {
            seq: Some(3),
            used_usd: 0.25,
            demand_usd: 1.5
        })
    );
    assert_eq!(p.reports.get("b2").map(|r| r.seq), Some(None));
    assert_eq!(p.models, vec![("openai".into(), "gpt-4o-mini".into())]);
    for (query, needle) in [
        ("host=a%20b", "host"),
        ("lease=b1,1,0,0", "need `host`"),
        ("host=h&lease=b1,1,-1,0", "lease"),
        ("host=h&lease=b1,x,0,0", "lease"),
        ("host=h&lease=b1,1,0", "lease"),
        ("host=h&lease=b1,1,0,0&lease=b1,2,0,0", "twice"),
        ("host=h&model=gpt", "model"),
        ("host=h&colour=red", "colour"),
    ] {
        let e = parse_poll(query).expect_err(query);
        assert!(e.contains(needle), "{query}: {e}");
    }
}
