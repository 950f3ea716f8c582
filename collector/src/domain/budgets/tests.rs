use serde_json::json;

use super::*;
use crate::domain::time::{format_rfc3339_ms, parse_rfc3339_ms};

fn t(text: &str) -> i64 {
    parse_rfc3339_ms(text).unwrap_or(i64::MIN)
}

fn bounds(period: Period, now: &str) -> (String, String) {
    let (a, b) = period.bounds(t(now));
    (format_rfc3339_ms(a), format_rfc3339_ms(b))
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_owned(), b.to_owned())
}

#[test]
fn day_periods_are_utc_days() {
    assert_eq!(
        bounds(Period::Day, "2026-11-24T07:00:00Z"),
        pair("2026-11-24T00:00:00Z", "2026-11-25T00:00:00Z")
    );
    // 23:30 at -05:00 is already the next UTC day.
    assert_eq!(
        bounds(Period::Day, "2026-11-24T23:30:00-05:00"),
        pair("2026-11-25T00:00:00Z", "2026-11-26T00:00:00Z")
    );
    // The last millisecond of a day still belongs to it.
    assert_eq!(
        bounds(Period::Day, "2026-11-24T23:59:59.999Z"),
        pair("2026-11-24T00:00:00Z", "2026-11-25T00:00:00Z")
    );
}

#[test]
fn month_periods_handle_month_and_year_ends_and_leap_years() {
    assert_eq!(
        bounds(Period::Month, "2026-11-24T07:00:00Z"),
        pair("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z")
    );
    assert_eq!(
        bounds(Period::Month, "2026-12-31T23:59:59.999Z"),
        pair("2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z")
    );
    assert_eq!(
        bounds(Period::Month, "2027-01-01T00:00:00Z"),
        pair("2027-01-01T00:00:00Z", "2027-02-01T00:00:00Z")
    );
    let (start, end) = Period::Month.bounds(t("2028-02-29T12:00:00Z"));
    assert_eq!(format_rfc3339_ms(start), "2028-02-01T00:00:00Z");
    assert_eq!(end - start, 29 * DAY_MS, "February 2028 is a leap month");
    let (start, end) = Period::Month.bounds(t("2027-02-10T00:00:00Z"));
    assert_eq!(end - start, 28 * DAY_MS);
    let (start, end) = Period::Month.bounds(t("2026-04-30T23:00:00Z"));
    assert_eq!(end - start, 30 * DAY_MS);
}

fn budget(soft: f64, hard: f64) -> Budget {
    Budget {
        id: "b1".into(),
        scope: Scope::from([pair("team", "search")]),
        period: Period::Month,
        amount_usd: 100.0,
        soft,
        hard,
        alerts: crate::domain::alerts::Tiers::default(),
        enforce: Enforce::Flags,
    }
}

#[test]
fn state_crosses_each_threshold_when_reached() {
    let b = budget(0.8, 1.0);
    assert_eq!(b.state(0.0), BudgetState::Ok);
    assert_eq!(b.state(79.99), BudgetState::Ok);
    assert_eq!(b.state(80.0), BudgetState::Soft);
    assert_eq!(b.state(99.99), BudgetState::Soft);
    assert_eq!(b.state(100.0), BudgetState::Hard);
    assert_eq!(b.state(250.0), BudgetState::Hard);
    // soft == hard: there is no soft band.
    let b = budget(1.0, 1.0);
    assert_eq!(b.state(99.0), BudgetState::Ok);
    assert_eq!(b.state(100.0), BudgetState::Hard);
    // A hard threshold above the amount allows overspend up to it.
    let b = budget(0.5, 1.2);
    assert_eq!(b.state(110.0), BudgetState::Soft);
    assert_eq!(b.state(120.0), BudgetState::Hard);
}

#[test]
fn a_full_body_is_accepted_and_defaults_apply() {
    let body = json!({"id":"b1","scope":{"team":"search","key_id":"k-1"},"period":"month",
                      "amount_usd":100.0,"soft":0.5,"hard":0.9});
    let b = validate_budget(&body, None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        b.scope,
        Scope::from([pair("key_id", "k-1"), pair("team", "search")])
    );
    assert_eq!(
        (b.period, b.amount_usd, b.soft, b.hard),
        (Period::Month, 100.0, 0.5, 0.9)
    );

    let body = json!({"id":"team.search:daily-1","scope":{"team":"search"},"period":"day",
                      "amount_usd":5});
    let b = validate_budget(&body, None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((b.soft, b.hard), (DEFAULT_SOFT, DEFAULT_HARD));
    assert_eq!(b.period, Period::Day);
}

#[test]
fn put_takes_the_id_from_the_url() {
    let body = json!({"scope":{"team":"search"},"period":"day","amount_usd":5});
    let b = validate_budget(&body, Some("b9")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(b.id, "b9");
    let body = json!({"id":"b9","scope":{"team":"search"},"period":"day","amount_usd":5});
    assert!(validate_budget(&body, Some("b9")).is_ok());
    let body = json!({"id":"other","scope":{"team":"search"},"period":"day","amount_usd":5});
    let err = validate_budget(&body, Some("b9")).err().unwrap_or_default();
    assert!(err.contains("differs"), "{err}");
}

#[test]
fn bad_budgets_are_rejected_with_a_reason() {
    let base = json!({"id":"b1","scope":{"team":"search"},"period":"month","amount_usd":100.0});
    let with = |key: &str, value: Value| {
        let mut body = base.clone();
        if let Some(obj) = body.as_object_mut() {
            if value.is_null() {
                obj.remove(key);
            } else {
                obj.insert(key.to_owned(), value);
            }
        }
        body
    };
    let long_id = "x".repeat(65);
    let cases = [
        (json!([1]), "JSON object"),
        (with("id", Value::Null), "`id` is required"),
        (with("id", json!("a b")), "must match"),
        (with("id", json!(long_id)), "must match"),
        (with("id", json!(7)), "expected a string"),
        (with("scope", Value::Null), "field `scope`"),
        (with("scope", json!({})), "at least one pair"),
        (with("scope", json!({"Team":"search"})), "scope key"),
        (with("scope", json!({"team":"a b"})), "scope.team"),
        (with("scope", json!({"team":3})), "scope.team"),
        (with("period", Value::Null), "`period` is required"),
        (with("period", json!("week")), "\"day\" or \"month\""),
        (with("amount_usd", Value::Null), "`amount_usd` is required"),
        (with("amount_usd", json!(0)), "greater than 0"),
        (with("amount_usd", json!(-5)), "greater than 0"),
        (with("amount_usd", json!("100")), "expected a number"),
        (with("soft", json!(0)), "0 < soft <= hard"),
        (with("soft", json!(1.5)), "0 < soft <= hard"),
        (with("hard", json!(0.5)), "0 < soft <= hard"),
        (with("soft", json!("x")), "expected a number"),
        (with("limit", json!(1)), "unknown field"),
    ];
    for (body, expected) in cases {
        match validate_budget(&body, None) {
            Ok(b) => panic!("{body} accepted: {b:?}"),
            Err(e) => assert!(e.contains(expected), "{body}: {e}"),
        }
    }
}

#[test]
fn budget_ids_follow_the_charset() {
    assert!(is_budget_id("b1"));
    assert!(is_budget_id("team.search:2026-11_a"));
    assert!(is_budget_id(&"a".repeat(64)));
    assert!(!is_budget_id(""));
    assert!(!is_budget_id(&"a".repeat(65)));
    assert!(!is_budget_id("a/b"));
    assert!(!is_budget_id("é"));
}

#[test]
fn alert_tiers_default_merge_and_are_checked() {
    let base =
        json!({"id": "b1", "scope": {"team": "search"}, "period": "month", "amount_usd": 10});
    let tiers = |alerts: serde_json::Value| {
        let mut body = base.clone();
        body["alerts"] = alerts;
        validate_budget(&body, None).map(|b| b.alerts)
    };
    let default = validate_budget(&base, None).expect("default").alerts;
    assert_eq!(
        (
            default.info,
            default.warning,
            default.critical,
            default.hard
        ),
        (0.5, 0.7, 0.9, 1.0)
    );
    let custom = tiers(json!({"info": 0.25, "warning": 0.5})).expect("partial");
    assert_eq!(
        (custom.info, custom.warning, custom.critical, custom.hard),
        (0.25, 0.5, 0.9, 1.0),
        "a tier left out keeps its default"
    );
    let err = tiers(json!({"info": 0.8})).expect_err("info above warning");
    assert!(
        err.contains("info <= warning <= critical <= hard") && err.contains("info 0.8"),
        "{err}"
    );
    let err = tiers(json!({"urgent": 0.8})).expect_err("unknown tier");
    assert!(err.contains("\"urgent\""), "{err}");
    let err = tiers(json!({"hard": 0})).expect_err("zero");
    assert!(err.contains("alerts.hard"), "{err}");
    let err = tiers(json!({"hard": "1"})).expect_err("string");
    assert!(err.contains("alerts.hard"), "{err}");
    assert!(tiers(json!([0.5]))
        .expect_err("array")
        .contains("field `alerts`"));
    assert!(
        tiers(json!({"hard": 1.5, "critical": 1.2})).is_ok(),
        "tiers above 100 % are allowed"
    );
}
