use std::rc::Rc;

use super::*;
use crate::request::identity::{AuthKind, Principal};

fn schema() -> TagSchema {
    TagSchema::new(&["region".to_string()])
}

fn search() -> Principal {
    // Schema indexes: org 0, team 1, project 2, cost_center 3, environment 4.
    Principal {
        key_id: Rc::from("demo-search"),
        auth: AuthKind::ApiKey,
        tags: Rc::new(vec![(0, "acme".into()), (1, "search".into())]),
        limits: None,
    }
}

const ANSWER: &str = r#"{"version":"v7","poll_interval_ms":2000,"generated_at":"x","caps":[
  {"budget_id":"b-team","scope":{"team":"search"},"state":"soft","spend_usd":9,"amount_usd":10,"period_end":"x"},
  {"budget_id":"b-key","scope":{"key_id":"demo-search","org":"acme"},"state":"hard","spend_usd":1,"amount_usd":1,"period_end":"x"},
  {"budget_id":"b-other","scope":{"team":"growth"},"state":"hard"},
  {"budget_id":"b-ok","scope":{"team":"search"},"state":"ok"},
  {"budget_id":"b-region","scope":{"region":"eu","team":"search"},"state":"hard"},
  {"budget_id":"b-unknown-tag","scope":{"planet":"mars"},"state":"hard"}]}"#;

fn decoded(answer: &str) -> CapSet {
    let (_, flags) = from_collector(answer.as_bytes()).unwrap();
    decode_flags(&flags, &schema())
}

#[test]
fn a_cap_matches_when_every_scope_pair_matches() {
    let set = decoded(ANSWER);
    assert_eq!(set.caps.len(), 5, "ok budgets are dropped");
    let v = set.verdict(&search());
    assert_eq!(v.hard, Some("b-key"));
    assert_eq!(v.soft, vec!["b-team"]);
    let mut growth = search();
    growth.tags = Rc::new(vec![(1, "growth".into())]);
    growth.key_id = Rc::from("demo-growth");
    assert_eq!(set.verdict(&growth).hard, Some("b-other"));
    let mut nobody = search();
    nobody.tags = Rc::new(vec![(1, "ads".into())]);
    nobody.key_id = Rc::from("k");
    assert_eq!(set.verdict(&nobody), Verdict::default());
}

#[test]
fn bad_answers_are_errors_not_empty_flags() {
    assert!(from_collector(b"not json").is_err());
    assert!(from_collector(br#"{"caps":[{"budget_id":"b","scope":{},"state":"maybe"}]}"#).is_err());
    assert!(
        from_collector(br#"{"caps":[{"budget_id":"a\tb","scope":{},"state":"hard"}]}"#).is_err()
    );
    let (version, flags) = from_collector(br#"{"version":3,"caps":[]}"#).unwrap();
    assert_eq!((version.as_str(), flags.as_str()), ("3", ""));
}

#[test]
fn shared_value_round_trips() {
    let (version, flags) = from_collector(ANSWER.as_bytes()).unwrap();
    let value = encode(1234, &version, &flags);
    let (at, v, f) = split(&value).unwrap();
    assert_eq!((at, v, f), (1234, "v7", flags.as_str()));
    assert_eq!(split(b"garbage"), None);
}

#[test]
fn view_decodes_only_when_the_flags_change_and_ages_them() {
    let s = schema();
    let (version, flags) = from_collector(ANSWER.as_bytes()).unwrap();
    let mut view = CapsView::new(1000);
    // Nothing polled yet: fresh until stale_after from the VM's start.
    let snap = view.refresh(None, None, 5000, 10_000, &s);
    assert!(!snap.stale && snap.set.caps.is_empty());
    assert!(view.refresh(None, None, 11_001, 10_000, &s).stale);

    let first = view.refresh(
        Some(&encode(20_000, &version, &flags)),
        Some(1),
        20_500,
        10_000,
        &s,
    );
    assert!(!first.stale && first.set.caps.len() == 5);
    // A newer poll with the same flags: the decoded set is reused.
    let again = view.refresh(
        Some(&encode(22_000, &version, &flags)),
        Some(2),
        22_100,
        10_000,
        &s,
    );
    assert!(Rc::ptr_eq(&first.set, &again.set));
    // Same cas: no re-read at all, but the age still counts.
    let later = view.refresh(None, Some(2), 32_001, 10_000, &s);
    assert!(later.stale && Rc::ptr_eq(&first.set, &later.set));
    // Flags lifted.
    let lifted = view.refresh(
        Some(&encode(33_000, &version, "")),
        Some(3),
        33_000,
        10_000,
        &s,
    );
    assert!(lifted.set.caps.is_empty() && !lifted.stale);
}

#[test]
fn failure_modes_apply_only_to_stale_caps() {
    let set = Rc::new(decoded(
        r#"{"caps":[{"budget_id":"b","scope":{"team":"search"},"state":"soft"}]}"#,
    ));
    let fresh = Snapshot {
        set: set.clone(),
        stale: false,
    };
    let stale = Snapshot { set, stale: true };
    let p = search();
    let warn = CapCheck::Pass {
        warnings: vec!["b".into()],
    };
    assert_eq!(check(&fresh, &p, FailureMode::FailClosed), warn);
    assert_eq!(check(&stale, &p, FailureMode::FailOpen), warn);
    assert_eq!(
        check(&stale, &p, FailureMode::FailClosed),
        CapCheck::Unavailable
    );
    let hard = Snapshot {
        set: Rc::new(decoded(ANSWER)),
        stale: true,
    };
    assert_eq!(
        check(&hard, &p, FailureMode::FailOpen),
        CapCheck::Exceeded("b-key".into())
    );
}

#[test]
fn a_view_is_clear_only_with_no_flag_and_fresh() {
    let s = schema();
    let (version, flags) = from_collector(ANSWER.as_bytes()).unwrap();
    let mut view = CapsView::new(1000);
    // Nothing polled yet: clear while fresh, not once stale (a fail_closed
    // gateway must still refuse then).
    assert!(view.clear_at(5000, 10_000));
    assert!(!view.clear_at(11_001, 10_000));
    // Flags set: never clear, fresh or not.
    view.refresh(
        Some(&encode(20_000, &version, &flags)),
        Some(1),
        20_500,
        10_000,
        &s,
    );
    assert!(!view.clear_at(20_500, 10_000));
    // Lifted and fresh: clear again.
    view.refresh(
        Some(&encode(33_000, &version, "")),
        Some(2),
        33_000,
        10_000,
        &s,
    );
    assert!(view.clear_at(33_000, 10_000));
    assert!(!view.clear_at(43_001, 10_000));
}
