use super::*;
use crate::domain::time::parse_rfc3339_ms;

fn ts(text: &str) -> i64 {
    parse_rfc3339_ms(text).expect("timestamp")
}

fn budget(amount: f64, period: Period) -> Budget {
    Budget {
        id: "b1".into(),
        scope: Scope::from([("team".to_owned(), "search".to_owned())]),
        period,
        amount_usd: amount,
        soft: 0.8,
        hard: 1.0,
        alerts: Tiers::default(),
        enforce: crate::domain::budgets::Enforce::Flags,
    }
}

#[test]
fn tiers_fire_at_their_fraction_inclusive_and_all_at_once() {
    let t = Tiers::default();
    assert!(t.crossed(100.0, 49.99).is_empty());
    assert_eq!(t.crossed(100.0, 50.0), vec![Level::Info]);
    assert_eq!(t.crossed(100.0, 70.0), vec![Level::Info, Level::Warning]);
    assert_eq!(t.crossed(100.0, 89.9).len(), 2);
    assert_eq!(t.crossed(100.0, 100.0), Level::ALL.to_vec());
}

#[test]
fn month_forecast_is_spend_plus_mean_daily_burn_times_days_left() {
    // 2026-11-21T00:00Z: 10 days left in November.
    let now = ts("2026-11-21T00:00:00Z");
    let w = forecast_window(Period::Month, now);
    assert_eq!(w.to_ms - w.from_ms, 14 * DAY_MS);
    assert!((w.units_left - 10.0).abs() < 1e-9, "{w:?}");
    // $140 over 14 days = $10/day; $200 so far + 10 × $10.
    assert!((forecast_usd(200.0, 140.0, &w) - 300.0).abs() < 1e-9);
}

#[test]
fn day_forecast_uses_hourly_burn_and_hours_left() {
    let now = ts("2026-11-21T18:00:00Z");
    let w = forecast_window(Period::Day, now);
    assert_eq!(w.to_ms - w.from_ms, 24 * HOUR_MS);
    assert!((w.units_left - 6.0).abs() < 1e-9);
    // $48 in 24 h = $2/h; $30 + 6 × $2.
    assert!((forecast_usd(30.0, 48.0, &w) - 42.0).abs() < 1e-9);
}

#[test]
fn previous_same_point_of_a_month_caps_at_its_end() {
    let (from, to) = previous_same_point(Period::Month, ts("2026-03-31T12:00:00Z"));
    assert_eq!(from, ts("2026-02-01T00:00:00Z"));
    assert_eq!(to, ts("2026-03-01T00:00:00Z"));
    let (from, to) = previous_same_point(Period::Day, ts("2026-03-10T06:00:00Z"));
    assert_eq!(
        (from, to),
        (ts("2026-03-09T00:00:00Z"), ts("2026-03-09T06:00:00Z"))
    );
}

#[test]
fn spike_needs_twenty_percent_and_the_minimum() {
    assert!(is_spike(120.0, 100.0, 50.0));
    assert!(!is_spike(119.0, 100.0, 50.0));
    assert!(!is_spike(120.0, 40.0, 50.0), "previous below the minimum");
    assert!(!is_spike(5.0, 0.0, 0.0), "no previous spend is no spike");
}

#[test]
fn z_score_and_anomaly() {
    let history: Vec<f64> = (0..30)
        .map(|i| if i % 2 == 0 { 9.0 } else { 11.0 })
        .collect();
    let z = z_score(&history, 20.0).expect("variation");
    assert!((z - 10.0).abs() < 1e-9, "{z}");
    assert!(is_anomaly(&history, 20.0, 5.0));
    assert!(!is_anomaly(&history, 20.0, 25.0), "below the minimum");
    assert!(!is_anomaly(&history, 13.0, 0.0), "z = 3 is not > 3");
    assert_eq!(z_score(&[5.0; 30], 50.0), None);
    assert_eq!(z_score(&[5.0], 50.0), None);
}

#[test]
fn evaluate_fires_each_tier_once_with_a_stable_id() {
    let b = budget(100.0, Period::Month);
    let start = ts("2026-11-01T00:00:00Z");
    let now = ts("2026-11-05T00:00:00Z");
    let reading = Reading {
        spend_usd: 72.0,
        forecast_usd: 80.0,
        previous_usd: 0.0,
        period_start: start,
    };
    let alerts = evaluate(&b, &reading, 10.0, now);
    let levels: Vec<Level> = alerts.iter().map(|a| a.level).collect();
    assert_eq!(levels, vec![Level::Info, Level::Warning]);
    assert_eq!(alerts[1].id, alert_id("b1", Level::Warning, start));
    assert_ne!(alerts[0].id, alerts[1].id);
    assert_ne!(alert_id("b1", Level::Warning, start + 1), alerts[1].id);
    // A forecast over the amount is Critical before the tier.
    let over = Reading {
        forecast_usd: 130.0,
        ..reading
    };
    let alerts = evaluate(&b, &over, 10.0, now);
    let critical = alerts
        .iter()
        .find(|a| a.level == Level::Critical)
        .expect("critical");
    assert_eq!(critical.kind, Kind::Forecast);
    // So is a spike.
    let spike = Reading {
        previous_usd: 50.0,
        ..reading
    };
    let alerts = evaluate(&b, &spike, 10.0, now);
    let critical = alerts
        .iter()
        .find(|a| a.level == Level::Critical)
        .expect("critical");
    assert_eq!(critical.kind, Kind::Spike);
}

#[test]
fn an_unacked_warning_escalates_after_24_hours_once() {
    let b = budget(100.0, Period::Month);
    let reading = Reading {
        spend_usd: 75.0,
        forecast_usd: 75.0,
        previous_usd: 0.0,
        period_start: 0,
    };
    let at = ts("2026-11-05T00:00:00Z");
    let mut warning = evaluate(&b, &reading, 0.0, at)
        .into_iter()
        .find(|a| a.level == Level::Warning)
        .expect("warning");
    assert!(!warning.escalation_due(at + ESCALATE_AFTER_MS - 1));
    assert!(warning.escalation_due(at + ESCALATE_AFTER_MS));
    warning.escalated_at = Some(at + ESCALATE_AFTER_MS);
    assert!(!warning.escalation_due(at + 2 * ESCALATE_AFTER_MS));
    warning.escalated_at = None;
    warning.acked_at = Some(at + 1);
    assert!(!warning.escalation_due(at + ESCALATE_AFTER_MS));
    assert_eq!(warning.state(), AlertState::Acked);
    assert_eq!(escalation_event_id("alt_x"), "alt_x.escalation");
}

#[test]
fn a_budgets_own_tiers_are_the_ones_evaluated() {
    let b = Budget {
        alerts: Tiers {
            info: 0.25,
            warning: 0.4,
            critical: 0.6,
            hard: 0.8,
        },
        ..budget(100.0, Period::Month)
    };
    let reading = Reading {
        spend_usd: 45.0,
        forecast_usd: 45.0,
        previous_usd: 0.0,
        period_start: 0,
    };
    let alerts = evaluate(&b, &reading, 10.0, 1);
    let got: Vec<(Level, f64)> = alerts.iter().map(|a| (a.level, a.threshold)).collect();
    assert_eq!(got, vec![(Level::Info, 0.25), (Level::Warning, 0.4)]);
    // With the defaults, $45 of $100 raises nothing.
    assert!(evaluate(&budget(100.0, Period::Month), &reading, 10.0, 1).is_empty());
}

#[test]
fn an_anomaly_is_one_per_team_model_and_day_with_its_z_score() {
    let scope = Scope::from([
        ("model".to_owned(), "gpt-4o".to_owned()),
        ("team".to_owned(), "search".to_owned()),
    ]);
    let day = ts("2026-11-20T00:00:00Z");
    let history: Vec<f64> = (0..30)
        .map(|i| if i % 2 == 0 { 9.0 } else { 11.0 })
        .collect();
    let a = anomaly(&scope, day, &history, 40.0, 10.0, day + 5).expect("anomaly");
    assert_eq!(
        (a.level, a.kind, a.budget_id.as_deref()),
        (Level::Critical, Kind::Anomaly, None)
    );
    assert_eq!(a.z_score, Some(30.0));
    assert_eq!((a.spend_usd, a.amount_usd, a.threshold), (40.0, 10.0, 3.0));
    assert_eq!(
        a.id,
        anomaly_id(&scope, day),
        "the same id on every replica"
    );
    assert_ne!(
        a.id,
        anomaly_id(&scope, day + DAY_MS),
        "another day, another alert"
    );
    let other = Scope::from([("model".to_owned(), "gpt-4o".to_owned())]);
    assert_ne!(a.id, anomaly_id(&other, day));
    assert!(
        anomaly(&scope, day, &history, 40.0, 50.0, day).is_none(),
        "below the minimum"
    );
    assert!(
        anomaly(&scope, day, &history, 12.0, 0.0, day).is_none(),
        "z = 1"
    );
    let view = serde_json::to_value(a.view()).expect("json");
    assert_eq!(view["kind"], "anomaly");
    assert!(view["budget_id"].is_null());
    assert_eq!(view["z_score"], 30.0);
}

#[test]
fn forecast_windows_and_the_previous_point_are_whole_hours() {
    // Whole hours only, so the rollups answer them (no raw scan of the
    // current hour, no raw records past retention at the start).
    let now = ts("2026-11-21T18:20:00Z");
    let w = forecast_window(Period::Day, now);
    assert_eq!(w.from_ms, ts("2026-11-20T18:00:00Z"));
    assert_eq!(w.to_ms, ts("2026-11-21T19:00:00Z"));
    assert!((w.units - 25.0).abs() < 1e-9, "{w:?}");
    assert!((w.units_left - (5.0 + 40.0 / 60.0)).abs() < 1e-9, "{w:?}");
    // $50 over 25 hours = $2/h.
    assert!((forecast_usd(0.0, 50.0, &w) - 2.0 * w.units_left).abs() < 1e-9);
    let m = forecast_window(Period::Month, ts("2026-11-21T00:30:00Z"));
    assert_eq!(m.from_ms, ts("2026-11-07T00:00:00Z"));
    assert_eq!(m.to_ms, ts("2026-11-21T01:00:00Z"));
    assert!((m.units - (14.0 + 1.0 / 24.0)).abs() < 1e-9);
    for w in [w, m] {
        assert_eq!(w.from_ms % HOUR_MS, 0);
        assert_eq!(w.to_ms % HOUR_MS, 0);
    }
    assert_eq!(
        previous_same_point(Period::Month, ts("2026-03-10T06:20:00Z")),
        (ts("2026-02-01T00:00:00Z"), ts("2026-02-10T07:00:00Z"))
    );
}
