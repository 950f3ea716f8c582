//! The alert, webhook and outbox part of the store suite (CONTRACTS §10):
//! run on every backend by `store_suite!`.

use std::sync::Arc;

use crate::domain::alerts::{alert_id, escalation_event_id, Alert, AlertState, Kind, Level};
use crate::domain::budgets::Scope;
use crate::domain::webhooks::{Attempt, DeliveryState, Webhook};
use crate::store::Store;

const NOW: i64 = 1_800_000_000_000;
const PERIOD: i64 = 1_799_000_000_000;

fn alert(budget: &str, level: Level, at: i64) -> Alert {
    Alert {
        id: alert_id(budget, level, PERIOD),
        level,
        kind: Kind::Threshold,
        budget_id: Some(budget.to_owned()),
        scope: Scope::from([("team".to_owned(), "search".to_owned())]),
        threshold: 0.5,
        spend_usd: 51.0,
        amount_usd: 100.0,
        forecast_usd: 90.0,
        period_start: PERIOD,
        at,
        acked_at: None,
        acked_by: None,
        escalated_at: None,
        z_score: None,
    }
}

fn hook(id: &str, events: &[&str]) -> Webhook {
    Webhook {
        id: id.to_owned(),
        url: format!("http://127.0.0.1:9/{id}"),
        secret: "0123456789abcdef".into(),
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        format: "json".into(),
        created_at: NOW,
        created_by: "bootstrap:admin".into(),
    }
}

pub async fn alerts_are_stored_once_and_enqueue_deliveries(store: &dyn Store) {
    assert!(store
        .create_webhook(hook("wh_a", &["spend.alert"]))
        .await
        .expect("hook"));
    assert!(!store
        .create_webhook(hook("wh_a", &["spend.alert"]))
        .await
        .expect("dup"));
    assert!(store
        .create_webhook(hook("wh_b", &["spend.alert"]))
        .await
        .expect("hook"));
    let listed = store.list_webhooks().await.expect("list");
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].secret, "0123456789abcdef");
    assert_eq!(listed[0].events, vec!["spend.alert".to_owned()]);

    let info = alert("b1", Level::Info, NOW);
    assert!(store
        .insert_alert(info.clone(), "{\"n\":1}".into())
        .await
        .expect("insert"));
    // The same (budget, level, period) again, later: nothing changes.
    let again = Alert {
        at: NOW + 5,
        spend_usd: 60.0,
        ..info.clone()
    };
    assert!(!store
        .insert_alert(again, "{\"n\":2}".into())
        .await
        .expect("again"));
    assert!(store
        .insert_alert(alert("b1", Level::Warning, NOW + 1), "{}".into())
        .await
        .expect("w"));
    let alerts = store.list_alerts().await.expect("alerts");
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[0].level, Level::Warning, "newest first");
    assert_eq!(alerts[1], info, "stored as given, the first one kept");
    assert_eq!(
        store.get_alert(info.id.clone()).await.expect("get"),
        Some(info.clone())
    );
    assert_eq!(store.get_alert("alt_none".into()).await.expect("get"), None);

    // Two alerts × two webhooks = four deliveries, each once.
    assert_eq!(store.outbox_depth().await.expect("depth"), 4);
    let a = store
        .list_deliveries("wh_a".into(), 10)
        .await
        .expect("deliveries");
    assert_eq!(a.len(), 2);
    assert!(a
        .iter()
        .all(|d| d.state == DeliveryState::Pending && d.attempts == 0));
    let first = a
        .iter()
        .find(|d| d.event_id == info.id)
        .expect("info delivery");
    assert_eq!(first.event, "{\"n\":1}");

    // Ack once.
    assert!(store
        .ack_alert(info.id.clone(), "tok_x".into(), NOW + 9)
        .await
        .expect("ack"));
    assert!(!store
        .ack_alert(info.id.clone(), "tok_y".into(), NOW + 10)
        .await
        .expect("ack2"));
    assert!(!store
        .ack_alert("alt_none".into(), "tok_y".into(), NOW)
        .await
        .expect("none"));
    let acked = store
        .get_alert(info.id.clone())
        .await
        .expect("get")
        .expect("some");
    assert_eq!(
        (acked.state(), acked.acked_by.as_deref(), acked.acked_at),
        (AlertState::Acked, Some("tok_x"), Some(NOW + 9))
    );

    // Escalation: once, only while open, with its own event id.
    assert!(!store
        .escalate_alert(
            info.id.clone(),
            escalation_event_id(&info.id),
            "{}".into(),
            NOW
        )
        .await
        .expect("acked"));
    let warning = alert("b1", Level::Warning, NOW + 1);
    let esc = escalation_event_id(&warning.id);
    assert!(store
        .escalate_alert(warning.id.clone(), esc.clone(), "{\"e\":1}".into(), NOW + 2)
        .await
        .expect("esc"));
    assert!(!store
        .escalate_alert(warning.id.clone(), esc.clone(), "{}".into(), NOW + 3)
        .await
        .expect("esc2"));
    assert_eq!(store.outbox_depth().await.expect("depth"), 6);
    let b = store.list_deliveries("wh_b".into(), 10).await.expect("b");
    assert_eq!(b[0].event_id, esc, "newest first");

    // Deleting a webhook drops its undelivered rows.
    assert!(store.delete_webhook("wh_b".into()).await.expect("delete"));
    assert!(!store.delete_webhook("wh_b".into()).await.expect("delete2"));
    assert_eq!(store.outbox_depth().await.expect("depth"), 3);
}

pub async fn outbox_claims_retries_and_finishes(store: &dyn Store) {
    assert!(store
        .create_webhook(hook("wh_a", &["spend.alert"]))
        .await
        .expect("hook"));
    for (i, level) in [Level::Info, Level::Warning, Level::Critical]
        .into_iter()
        .enumerate()
    {
        let at = NOW + i as i64;
        assert!(store
            .insert_alert(alert("b1", level, at), format!("{{\"i\":{i}}}"))
            .await
            .expect("insert"));
    }
    // Nothing is due before its time.
    assert!(store
        .claim_deliveries(NOW - 1, NOW + 60_000, 10)
        .await
        .expect("early")
        .is_empty());
    let claimed = store
        .claim_deliveries(NOW + 10, NOW + 60_000, 2)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 2, "limit");
    assert_eq!(claimed[0].event, "{\"i\":0}", "oldest first");
    // Leased: a second worker gets only the third.
    let other = store
        .claim_deliveries(NOW + 10, NOW + 60_000, 10)
        .await
        .expect("claim2");
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].event, "{\"i\":2}");

    let failed = Attempt {
        at: NOW + 11,
        status: Some(503),
        error: Some("HTTP 503".into()),
        delivered: false,
    };
    store
        .finish_delivery(claimed[0].id, failed.clone(), Some(NOW + 5_000))
        .await
        .expect("retry");
    let ok = Attempt {
        at: NOW + 12,
        status: Some(200),
        error: None,
        delivered: true,
    };
    store
        .finish_delivery(claimed[1].id, ok.clone(), None)
        .await
        .expect("ok");
    store
        .finish_delivery(other[0].id, failed.clone(), None)
        .await
        .expect("give up");
    // A late finish of a finished delivery changes nothing.
    store
        .finish_delivery(claimed[1].id, failed.clone(), None)
        .await
        .expect("late");
    assert_eq!(store.outbox_depth().await.expect("depth"), 1);

    let all = store
        .list_deliveries("wh_a".into(), 10)
        .await
        .expect("list");
    let by_id = |id: i64| all.iter().find(|d| d.id == id).expect("row").clone();
    let retry = by_id(claimed[0].id);
    assert_eq!(
        (
            retry.state,
            retry.attempts,
            retry.next_attempt_at,
            retry.last_status
        ),
        (DeliveryState::Pending, 1, NOW + 5_000, Some(503))
    );
    assert_eq!(retry.last_error.as_deref(), Some("HTTP 503"));
    let done = by_id(claimed[1].id);
    assert_eq!(
        (done.state, done.attempts, done.delivered_at),
        (DeliveryState::Delivered, 1, Some(NOW + 12))
    );
    assert_eq!(by_id(other[0].id).state, DeliveryState::Failed);
    // The retry is due again at its time, not before.
    assert!(store
        .claim_deliveries(NOW + 4_999, NOW + 60_000, 10)
        .await
        .expect("c")
        .is_empty());
    let again = store
        .claim_deliveries(NOW + 5_000, NOW + 60_000, 10)
        .await
        .expect("c");
    assert_eq!(
        again.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![claimed[0].id]
    );
    assert_eq!(
        store
            .list_deliveries("wh_none".into(), 10)
            .await
            .expect("none"),
        vec![]
    );
}

/// Many evaluators (replicas) inserting the same alerts at once: each
/// alert is stored once and enqueued once.
pub async fn concurrent_evaluators_store_each_alert_once(store: Arc<dyn Store>) {
    assert!(store
        .create_webhook(hook("wh_a", &["spend.alert"]))
        .await
        .expect("hook"));
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut won = 0;
            for level in Level::ALL {
                if store
                    .insert_alert(alert("b1", level, NOW + worker), "{}".into())
                    .await
                    .expect("insert")
                {
                    won += 1;
                }
            }
            won
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("task");
    }
    assert_eq!(total, 4, "each level inserted by exactly one evaluator");
    assert_eq!(store.list_alerts().await.expect("alerts").len(), 4);
    assert_eq!(store.outbox_depth().await.expect("depth"), 4);
}

/// Anomalies (CONTRACTS §10) through the evaluation loop's pass with an
/// injected clock: 30 days of steady spend for two (team, model) pairs,
/// then one day where one of them jumps. Read from the store's rollups.
pub async fn anomalies_fire_once_per_team_model_and_day(store: Arc<dyn Store>) {
    use std::sync::atomic::{AtomicI64, Ordering};

    use crate::domain::pricing::PriceTable;
    use crate::domain::time::{DAY_MS, HOUR_MS};
    use crate::service::alerts::{evaluate, AlertSettings};
    use crate::state::{AppState, Tokens};
    use crate::store::tests::rec;

    let day = super::ts("2026-11-20T00:00:00Z");
    let mut records = Vec::new();
    for d in 1..=30 {
        // $9 and $11 on alternate days: mean $10, standard deviation $1.
        let usd = if d % 2 == 0 { 9.0 } else { 11.0 };
        let at = day - d * DAY_MS + 10 * HOUR_MS;
        for (team, model) in [("search", "gpt-4o"), ("growth", "gpt-4o")] {
            records.push(rec(
                &format!("h-{team}-{d}"),
                at,
                "k1",
                Some(team),
                Some(model),
                3,
                Some(usd),
            ));
        }
    }
    // Today: search on gpt-4o spends $25 (z = 15) in two calls; growth $11.
    records.push(rec(
        "t-1",
        day + HOUR_MS,
        "k1",
        Some("search"),
        Some("gpt-4o"),
        3,
        Some(12.5),
    ));
    records.push(rec(
        "t-2",
        day + 2 * HOUR_MS,
        "k1",
        Some("search"),
        Some("gpt-4o"),
        3,
        Some(12.5),
    ));
    records.push(rec(
        "t-3",
        day + 2 * HOUR_MS,
        "k1",
        Some("growth"),
        Some("gpt-4o"),
        3,
        Some(11.0),
    ));
    store.insert_batch(records).await.expect("insert");
    assert!(store
        .create_webhook(hook("wh_anomaly", &["spend.alert"]))
        .await
        .expect("hook"));

    let clock = Arc::new(AtomicI64::new(day + 3 * HOUR_MS));
    let state_with = |min_usd: f64| {
        let c = Arc::clone(&clock);
        AppState::new(
            Arc::clone(&store),
            PriceTable::embedded().expect("prices"),
            Tokens::default(),
        )
        .with_alerts(AlertSettings {
            anomaly_min_usd: min_usd,
            ..AlertSettings::default()
        })
        .with_clock(Arc::new(move || c.load(Ordering::SeqCst)))
    };

    // Above the spend: nothing, whatever the z-score.
    assert_eq!(evaluate(&state_with(30.0)).await.expect("evaluate"), 0);
    assert!(store.list_alerts().await.expect("alerts").is_empty());

    let state = state_with(20.0);
    assert_eq!(evaluate(&state).await.expect("evaluate"), 1);
    let alerts = store.list_alerts().await.expect("alerts");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let a = &alerts[0];
    assert_eq!(
        (a.kind, a.level, a.budget_id.as_deref()),
        (Kind::Anomaly, Level::Critical, None)
    );
    assert_eq!(
        a.scope,
        Scope::from([
            ("model".to_owned(), "gpt-4o".to_owned()),
            ("team".to_owned(), "search".to_owned())
        ])
    );
    assert_eq!(
        (a.period_start, a.spend_usd, a.amount_usd),
        (day, 25.0, 10.0)
    );
    assert_eq!(a.z_score, Some(15.0));
    assert_eq!(
        store.outbox_depth().await.expect("depth"),
        1,
        "delivered like any alert"
    );

    // Evaluated again today, and tomorrow (when the day is "yesterday"): never repeated.
    assert_eq!(evaluate(&state).await.expect("evaluate"), 0);
    clock.store(day + DAY_MS + HOUR_MS, Ordering::SeqCst);
    assert_eq!(evaluate(&state).await.expect("evaluate"), 0);
    assert_eq!(store.list_alerts().await.expect("alerts").len(), 1);
    assert_eq!(store.outbox_depth().await.expect("depth"), 1);

    // A late record for yesterday makes growth anomalous on that day too: caught.
    store
        .insert_batch(vec![rec(
            "late",
            day + 20 * HOUR_MS,
            "k1",
            Some("growth"),
            Some("gpt-4o"),
            3,
            Some(20.0),
        )])
        .await
        .expect("late");
    assert_eq!(evaluate(&state).await.expect("evaluate"), 1);
    let growth: Vec<Alert> = store
        .list_alerts()
        .await
        .expect("alerts")
        .into_iter()
        .filter(|a| a.scope.get("team").map(String::as_str) == Some("growth"))
        .collect();
    assert_eq!(growth.len(), 1);
    assert_eq!((growth[0].period_start, growth[0].spend_usd), (day, 31.0));
}
