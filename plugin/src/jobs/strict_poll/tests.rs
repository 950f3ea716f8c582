use super::*;
use crate::host::memory::MemoryHost;

const NOW: u64 = 1_700_000_000_000;

fn answer(seq: i64, allowance: f64, used: f64, period: &str) -> String {
    format!(
        r#"{{"version":"v","caps":[],"host":"gw-1","price_version":"pv1",
            "leases":[{{"budget_id":"b1","scope":{{"team":"search"}},"seq":{seq},
              "allowance_usd":{allowance},"used_usd":{used},"expires_in_ms":10000,
              "period_start":"{period}"}}],
            "prices":{{"openai:gpt-4o-mini":{{"input":1.5e-7,"cached_input":7.5e-8,
              "cache_write":1.5e-7,"output":6e-7,"max_output_tokens":16384}}}}}}"#
    )
}

fn lease_of(h: &MemoryHost) -> Lease {
    h.shared
        .get(&lease_key("b1"))
        .and_then(|(v, _)| Lease::decode(v))
        .expect("lease")
}

#[test]
fn grants_land_in_shared_data_newer_only_keeping_what_workers_used() {
    let mut h = MemoryHost::default();
    let asked = vec!["openai:gpt-4o-mini".to_string(), "openai:nope".to_string()];
    apply(&mut h, answer(1, 0.5, 0.25, "P1").as_bytes(), &asked, NOW).expect("apply");
    let l = lease_of(&h);
    assert_eq!(
        (l.seq, l.allowance, l.used),
        (1, 500_000_000_000, 250_000_000_000)
    );
    assert_eq!(l.expires_at_ms, NOW + 10_000);
    let index = h.shared.get(INDEX_KEY).map(|(v, _)| v.clone());
    assert_eq!(index.as_deref(), Some(&b"b1\tteam=search\n"[..]));
    let prices = h
        .shared
        .get(PRICES_KEY)
        .map(|(v, _)| v.clone())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&prices);
    assert!(text.starts_with("pv1\n"), "{text}");
    assert!(text.contains("openai:gpt-4o-mini\t0.00000015\t"), "{text}");
    assert!(text.contains("\t16384\n"), "{text}");
    assert!(
        text.contains("openai:nope\t-\n"),
        "asked and not priced: {text}"
    );

    // Workers reserved meanwhile; a newer grant keeps their count.
    let mut l = lease_of(&h);
    l.used = 300_000_000_000;
    l.demand = 7;
    h.shared.insert(lease_key("b1"), (l.encode(), 9));
    apply(&mut h, answer(2, 0.9, 0.0, "P1").as_bytes(), &[], NOW + 1).expect("apply");
    let l = lease_of(&h);
    assert_eq!(
        (l.seq, l.allowance, l.used, l.demand),
        (2, 900_000_000_000, 300_000_000_000, 0)
    );
    // An older grant arriving late changes nothing.
    apply(&mut h, answer(1, 5.0, 0.0, "P1").as_bytes(), &[], NOW + 2).expect("apply");
    assert_eq!(lease_of(&h).allowance, 900_000_000_000);
    // A new period starts from the collector's count.
    apply(&mut h, answer(1, 0.2, 0.0, "P2").as_bytes(), &[], NOW + 3).expect("apply");
    let l = lease_of(&h);
    assert_eq!((l.period_start.as_str(), l.used), ("P2", 0));
}

#[test]
fn the_poll_reports_leases_and_asks_for_prices() {
    let mut h = MemoryHost::default();
    apply(&mut h, answer(4, 0.5, 0.0, "P1").as_bytes(), &[], NOW).expect("apply");
    let mut l = lease_of(&h);
    l.used = 125_000_000_000;
    l.demand = 2_000_000_000_000;
    h.shared.insert(lease_key("b1"), (l.encode(), 5));
    crate::controls::lease::want_price(&mut h, "openai", "gpt-4o/mini");
    let (q, asked) = query(
        &mut h,
        "gw 1",
        &["openai:gpt-4o/mini".to_string(), "anthropic:c".to_string()],
    );
    assert_eq!(
        q,
        "host=gw%201&lease=b1%2C4%2C0.125%2C2&model=openai%3Agpt-4o%2Fmini&model=anthropic%3Ac"
    );
    assert_eq!(
        asked,
        vec!["openai:gpt-4o/mini".to_string(), "anthropic:c".to_string()]
    );
}

#[test]
fn bad_leases_are_refused_whole() {
    let mut h = MemoryHost::default();
    let bad = answer(1, -1.0, 0.0, "P1");
    assert!(apply(&mut h, bad.as_bytes(), &[], NOW).is_err());
    assert!(!h.shared.contains_key(&lease_key("b1")));
}

#[test]
fn the_host_id_is_configured_or_shared_by_the_first_worker() {
    let f = Filter::from_json(br#"{"collector":{"cluster":"c","token":"t"}}"#).expect("config");
    let mut h = MemoryHost::default();
    let (mut w1, mut w2) = (None, None);
    assert_eq!(
        host_id(&mut h, &f, &[b'a'; 32], &mut w1),
        None,
        "proposed, not used yet"
    );
    // Envoy: a value is used only once seen on two ticks.
    assert_eq!(host_id(&mut h, &f, &[b'b'; 32], &mut w2), None);
    let a = host_id(&mut h, &f, &[b'b'; 32], &mut w1).expect("id");
    let b = host_id(&mut h, &f, &[b'c'; 32], &mut w2).expect("id");
    assert_eq!(a, b, "every worker reads the one that stayed");
    assert!(a.starts_with("gw-aaaa"));
    let f = Filter::from_json(
        br#"{"collector":{"cluster":"c","token":"t"},"caps":{"strict":{"host_id":"edge-7"}}}"#,
    )
    .expect("config");
    assert_eq!(
        host_id(&mut h, &f, &[b'c'; 32], &mut None).as_deref(),
        Some("edge-7")
    );
}

#[test]
fn an_id_overwritten_in_the_startup_race_is_never_polled_under() {
    // Envoy: workers A and B both find no id; A writes its id, worker C
    // reads it, then B overwrites it. C must not poll under A's id.
    let f = Filter::from_json(br#"{"collector":{"cluster":"c","token":"t"}}"#).expect("config");
    let mut h = MemoryHost::default();
    let (mut a, mut c) = (None, None);
    assert_eq!(host_id(&mut h, &f, &[b'a'; 32], &mut a), None);
    assert_eq!(
        host_id(&mut h, &f, &[b'x'; 32], &mut c),
        None,
        "first sight"
    );
    h.shared
        .insert(HOST_KEY.to_string(), (b"gw-bbbb".to_vec(), 9));
    assert_eq!(
        host_id(&mut h, &f, &[b'x'; 32], &mut c),
        None,
        "changed since"
    );
    assert_eq!(
        host_id(&mut h, &f, &[b'x'; 32], &mut c).as_deref(),
        Some("gw-bbbb")
    );
    assert_eq!(host_id(&mut h, &f, &[b'a'; 32], &mut a), None);
    assert_eq!(
        host_id(&mut h, &f, &[b'a'; 32], &mut a).as_deref(),
        Some("gw-bbbb")
    );
}

#[test]
fn kong_uses_the_created_id_at_once() {
    let f = Filter::from_json(
        br#"{"gateway":"kong","collector":{"cluster":"127.0.0.1:9","token":"t"}}"#,
    )
    .expect("config");
    let mut h = MemoryHost::default();
    assert_eq!(host_id(&mut h, &f, &[b'k'; 32], &mut None), None);
    let id = host_id(&mut h, &f, &[b'z'; 32], &mut None).expect("created: final");
    assert!(id.starts_with("gw-kkkk"));
}

#[test]
fn the_poll_names_the_host_only_while_strict_budgets_exist() {
    let mut h = MemoryHost::default();
    assert!(!wanted(&mut h), "no answer yet: a plain poll");
    let (v, flags) =
        crate::controls::caps::from_collector(br#"{"version":"a","caps":[],"strict":0}"#)
            .expect("answer");
    h.shared.insert(
        crate::controls::caps::SHARED_KEY.into(),
        (crate::controls::caps::encode(NOW, &v, &flags), 1),
    );
    assert!(!wanted(&mut h));
    let (v, flags) = crate::controls::caps::from_collector(
        br#"{"version":"b","caps":[{"budget_id":"f","scope":{"team":"x"},"state":"soft"}],"strict":2}"#,
    )
    .expect("answer");
    assert!(flags.ends_with("x\t2\n"), "{flags:?}");
    assert_eq!(
        crate::controls::caps::decode_flags(&flags, &crate::request::identity::TagSchema::new(&[]))
            .caps
            .len(),
        1,
        "the marker is not a cap"
    );
    h.shared.insert(
        crate::controls::caps::SHARED_KEY.into(),
        (crate::controls::caps::encode(NOW, &v, &flags), 2),
    );
    assert!(wanted(&mut h));
    // Holding a lease keeps naming the host, to report and return it.
    let mut h = MemoryHost::default();
    apply(&mut h, answer(1, 0.5, 0.0, "P1").as_bytes(), &[], NOW).expect("apply");
    assert!(wanted(&mut h));
}

#[test]
fn one_root_of_a_host_names_it_at_a_time() {
    let mut h = MemoryHost::default();
    // No key yet (a configured id): created, claimed from the next tick.
    assert_eq!(claim(&mut h, "edge-7", NOW, NOW + 5_000), None);
    let first = claim(&mut h, "edge-7", NOW, NOW + 5_000).expect("claimed");
    // Another root (same host, same shared data) must wait: its poll
    // would report the same state as the one in flight.
    assert_eq!(claim(&mut h, "edge-7", NOW + 10, NOW + 5_010), None);
    let f = Filter::from_json(br#"{"collector":{"cluster":"c","token":"t"}}"#).expect("config");
    let mut seen = Some("edge-7".to_string());
    assert_eq!(
        host_id(&mut h, &f, &[b'x'; 32], &mut seen).as_deref(),
        Some("edge-7"),
        "the id reads through the claim"
    );
    release(&mut h, &first);
    let second = claim(&mut h, "edge-7", NOW + 20, NOW + 5_020).expect("released");
    // A claim whose poll never came back expires.
    assert!(claim(&mut h, "edge-7", NOW + 5_021, NOW + 10_000).is_some());
    // A stale release does not free the newer claim.
    release(&mut h, &second);
    assert_eq!(claim(&mut h, "edge-7", NOW + 5_030, NOW + 10_030), None);
    // Another id in the key: not ours to claim.
    assert_eq!(claim(&mut h, "other", NOW + 20_000, NOW + 25_000), None);
}
