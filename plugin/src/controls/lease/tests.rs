use super::*;
use crate::host::memory::MemoryHost;

const NOW: u64 = 1_700_000_000_000;

fn lease(allowance: u64, used: u64) -> Lease {
    Lease {
        seq: 3,
        period_start: "2026-12-01T00:00:00.000Z".into(),
        allowance,
        used,
        demand: 0,
        expires_at_ms: NOW + 10_000,
    }
}

fn host_with(l: &Lease) -> MemoryHost {
    let mut h = MemoryHost::default();
    h.shared.insert(lease_key("b1"), (l.encode(), 1));
    h
}

fn stored(h: &MemoryHost) -> Lease {
    h.shared
        .get(&lease_key("b1"))
        .and_then(|(v, _)| Lease::decode(v))
        .expect("lease")
}

fn need(fixed: u64, per_out: f64, out: u64) -> Need {
    Need {
        fixed,
        per_out,
        out_tokens: out,
        min_out: 16,
    }
}

#[test]
fn lease_values_round_trip_and_garbage_is_none() {
    let l = lease(5, 2);
    assert_eq!(Lease::decode(&l.encode()), Some(l));
    assert_eq!(Lease::decode(b"1\t2\t3"), None);
    assert_eq!(Lease::decode(b"x\tp\t1\t1\t1\t1"), None);
    assert_eq!(Lease::decode(b"1\tp\t1\t1\t1\t1\textra"), None);
}

#[test]
fn fitting_never_exceeds_the_room_and_is_the_most_that_fits() {
    let n = need(1_000, 600_000.0, 4096);
    assert_eq!(n.fitting(n.cost(4096)), 4096);
    assert_eq!(n.fitting(u64::MAX), 4096);
    assert_eq!(n.fitting(999), 0);
    for room in (1_000..50_000_000).step_by(777_777) {
        let out = n.fitting(room);
        assert!(n.cost(out) <= room, "room {room}: {out}");
        if out < 4096 {
            assert!(n.cost(out + 1) > room, "room {room}: {out} is not the most");
        }
    }
    let free = Need { per_out: 0.0, ..n };
    assert_eq!(free.fitting(1_000), 4096);
}

#[test]
fn a_reservation_takes_all_it_needs_when_it_fits() {
    let mut h = host_with(&lease(10_000_000, 0));
    let n = need(1_000, 1_000.0, 100);
    let (r, out) = reserve(&mut h, "b1", &n, NOW).expect("fits");
    assert_eq!((out, r.amount), (100, 101_000));
    assert_eq!(stored(&h).used, 101_000);
    assert!(settle(&mut h, &r, 40_000));
    assert_eq!(stored(&h).used, 40_000, "settled to the real cost");
}

#[test]
fn a_reservation_that_does_not_fit_is_clamped_then_refused() {
    let mut h = host_with(&lease(51_000, 0));
    let n = need(1_000, 1_000.0, 4096);
    let (r, out) = reserve(&mut h, "b1", &n, NOW).expect("clamped");
    assert_eq!(out, 50);
    assert_eq!(r.amount, 51_000);
    let l = stored(&h);
    assert_eq!(l.used, 51_000);
    assert_eq!(
        l.demand,
        n.cost(4096) - 51_000,
        "the shortfall is asked for"
    );
    // Nothing left: not even 16 tokens fit.
    assert_eq!(reserve(&mut h, "b1", &n, NOW), Err(Refusal::NoRoom));
    assert_eq!(stored(&h).used, 51_000);
    // A call asking for fewer than the minimum still fits when its own limit does.
    assert!(settle(&mut h, &r, 0));
    let tiny = need(1_000, 1_000.0, 4);
    assert_eq!(reserve(&mut h, "b1", &tiny, NOW).map(|(_, o)| o), Ok(4));
}

#[test]
fn no_lease_or_an_expired_one_is_no_lease() {
    let mut h = MemoryHost::default();
    let n = need(1, 1.0, 1);
    assert_eq!(reserve(&mut h, "b1", &n, NOW), Err(Refusal::NoLease));
    let mut h = host_with(&lease(u64::MAX, 0));
    assert_eq!(
        reserve(&mut h, "b1", &n, NOW + 10_000),
        Err(Refusal::NoLease)
    );
    h.shared_fails = true;
    assert!(reserve(&mut h, "b1", &n, NOW).is_err());
}

#[test]
fn racing_workers_never_take_more_than_the_allowance() {
    // Every write first loses to another worker's (the memory host bumps the
    // cas), so each reservation is retried against the value it lost to.
    let allowance = 1_000_000;
    let mut h = host_with(&lease(allowance, 0));
    let n = need(10_000, 1_000.0, 200);
    let mut total = 0;
    let mut admitted = 0;
    for i in 0..100 {
        h.interference = i % 3;
        if let Ok((r, _)) = reserve(&mut h, "b1", &n, NOW) {
            total += r.amount;
            admitted += 1;
        }
    }
    let l = stored(&h);
    assert_eq!(l.used, total, "every reservation counted exactly once");
    assert!(l.used <= allowance);
    assert!(admitted >= 4, "{admitted}");
}

#[test]
fn settling_a_reservation_of_an_earlier_period_changes_nothing() {
    let mut h = host_with(&lease(1_000, 500));
    let r = Reservation {
        budget_id: "b1".into(),
        period_start: "2026-11-01T00:00:00.000Z".into(),
        amount: 400,
    };
    assert!(settle(&mut h, &r, 0));
    assert_eq!(stored(&h).used, 500);
}

#[test]
fn prices_and_wants() {
    let prices = decode_prices(
        b"v1\nopenai:gpt-4o-mini\t1.5e-7\t7.5e-8\t1.5e-7\t6e-7\t16384\nopenai:mystery\t-\nbad\tx\n",
    );
    let Some(Priced::Known(p)) = prices.get("openai:gpt-4o-mini").copied() else {
        panic!("{prices:?}");
    };
    assert_eq!(p.max_output_tokens, Some(16384));
    assert_eq!(p.input_max(), 1.5e-7);
    assert_eq!(prices.get("openai:mystery"), Some(&Priced::Unknown));
    assert!(!prices.contains_key("bad"));

    let mut h = MemoryHost::default();
    want_price(&mut h, "openai", "gpt-4o");
    want_price(&mut h, "openai", "gpt-4o");
    want_price(&mut h, "anthropic", "claude-x");
    let wants = h.shared.get(WANTS_KEY).map(|(v, _)| v.clone());
    assert_eq!(
        wants.as_deref(),
        Some(&b"openai:gpt-4o\nanthropic:claude-x\n"[..])
    );
}

#[test]
fn an_input_that_does_not_fit_is_refused_even_without_output() {
    let mut h = host_with(&lease(999, 0));
    let embeddings = Need {
        fixed: 1_000,
        per_out: 0.0,
        out_tokens: 0,
        min_out: 16,
    };
    assert_eq!(
        reserve(&mut h, "b1", &embeddings, NOW),
        Err(Refusal::NoRoom)
    );
    let mut h = host_with(&lease(1_000, 0));
    assert!(reserve(&mut h, "b1", &embeddings, NOW).is_ok());
}

proptest::proptest! {
    /// The digit-by-digit text is the `format!` text, and reads back.
    #[test]
    fn lease_text_is_the_formatted_text_and_round_trips(
        seq in proptest::num::i64::ANY,
        allowance in proptest::num::u64::ANY,
        used in proptest::num::u64::ANY,
        demand in 0u64..1000,
        expires_at_ms in proptest::num::u64::ANY,
        period_start in "[0-9TZ:.-]{0,24}",
    ) {
        let l = Lease { seq, period_start, allowance, used, demand, expires_at_ms };
        let formatted = format!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            l.seq, l.period_start, l.allowance, l.used, l.demand, l.expires_at_ms
        );
        proptest::prop_assert_eq!(l.encode(), formatted.into_bytes());
        proptest::prop_assert_eq!(Lease::decode(&l.encode()), Some(l));
    }
}

#[test]
fn lease_text_refuses_what_encode_never_writes() {
    for bad in [
        &b"1\tp\t\t1\t1\t1"[..],
        b"1\tp\t-1\t1\t1\t1",
        b"1\tp\t18446744073709551616\t1\t1\t1",
        b"--1\tp\t1\t1\t1\t1",
        b"9223372036854775808\tp\t1\t1\t1\t1",
        b"1\tp\t1 \t1\t1\t1",
    ] {
        assert_eq!(Lease::decode(bad), None, "{bad:?}");
    }
    let min = b"-9223372036854775808\tp\t1\t1\t1\t1";
    assert_eq!(Lease::decode(min).map(|l| l.seq), Some(i64::MIN));
}

#[test]
fn lease_numbers_parse_up_to_u64_max_and_no_further() {
    let text = |n: &str| format!("1\tp\t{n}\t0\t0\t0");
    let allowance = |n: &str| Lease::decode(text(n).as_bytes()).map(|l| l.allowance);
    assert_eq!(allowance("18446744073709551615"), Some(u64::MAX));
    assert_eq!(
        allowance("9999999999999999999"),
        Some(9_999_999_999_999_999_999)
    );
    assert_eq!(allowance("00000000000000000001"), Some(1));
    assert_eq!(allowance("18446744073709551616"), None);
    assert_eq!(allowance("99999999999999999999"), None);
    assert_eq!(allowance("000000000000000000001"), None, "21 digits");
    assert_eq!(allowance("0"), Some(0));
}
