//! Rows of the alert, webhook and outbox tables as both stores read and
//! write them: columns listed and text decoded once, here.

use crate::domain::alerts::{Alert, Kind, Level};
use crate::domain::budgets::Scope;
use crate::domain::webhooks::{Delivery, DeliveryState, Webhook, EVENTS};
use crate::store::StoreError;

pub(crate) const ALERT_COLUMNS: &str = "id, budget_id, level, kind, scope, threshold, spend_usd, \
     amount_usd, forecast_usd, period_start, at, acked_at, acked_by, escalated_at, z_score";
pub(crate) const WEBHOOK_COLUMNS: &str = "id, url, secret, events, format, created_at, created_by";
pub(crate) const DELIVERY_COLUMNS: &str = "id, event_id, webhook_id, event, state, attempts, \
     next_attempt_at, last_status, last_error, created_at, delivered_at";

/// The event every alert and escalation is enqueued under.
pub(crate) const ALERT_EVENT: &str = "spend.alert";

/// The text columns of an alert row (numbers are read as they are).
pub(crate) struct AlertText {
    pub level: String,
    pub kind: String,
    pub scope: String,
}

/// The `budget_id` column: the budget's id, or for an alert about no
/// budget (an anomaly) the alert's own id, so the UNIQUE (budget_id, level,
/// period_start) still keeps one row per alert.
pub(crate) fn budget_column(alert: &Alert) -> &str {
    alert.budget_id.as_deref().unwrap_or(&alert.id)
}

/// The inverse of `budget_column`.
pub(crate) fn budget_of_column(id: &str, column: String) -> Option<String> {
    (column != id).then_some(column)
}

pub(crate) fn decode_alert(mut alert: Alert, text: AlertText) -> Result<Alert, StoreError> {
    alert.level = Level::parse(&text.level).ok_or_else(|| {
        StoreError::invalid(format!(
            "alert {}: level {:?} is unknown",
            alert.id, text.level
        ))
    })?;
    alert.kind = Kind::parse(&text.kind).ok_or_else(|| {
        StoreError::invalid(format!(
            "alert {}: kind {:?} is unknown",
            alert.id, text.kind
        ))
    })?;
    alert.scope = serde_json::from_str::<Scope>(&text.scope)
        .map_err(|e| StoreError::invalid(format!("alert {} scope: {e}", alert.id)))?;
    Ok(alert)
}

/// An alert with placeholders for the columns `decode_alert` fills.
pub(crate) fn blank_alert(id: String) -> Alert {
    Alert {
        id,
        level: Level::Info,
        kind: Kind::Threshold,
        budget_id: None,
        scope: Scope::new(),
        threshold: 0.0,
        spend_usd: 0.0,
        amount_usd: 0.0,
        forecast_usd: 0.0,
        period_start: 0,
        at: 0,
        acked_at: None,
        acked_by: None,
        escalated_at: None,
        z_score: None,
    }
}

pub(crate) fn events_json(events: &[String]) -> String {
    serde_json::Value::from(events.to_vec()).to_string()
}

pub(crate) fn decode_events(id: &str, text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str::<Vec<String>>(text)
        .map_err(|e| StoreError::invalid(format!("webhook {id} events: {e}")))
}

/// Whether a webhook with these stored events receives alert events.
pub(crate) fn wants_alerts(events: &[String]) -> bool {
    events
        .iter()
        .any(|e| e == ALERT_EVENT && EVENTS.contains(&e.as_str()))
}

pub(crate) fn decode_state(id: i64, text: &str) -> Result<DeliveryState, StoreError> {
    DeliveryState::parse(text)
        .ok_or_else(|| StoreError::invalid(format!("delivery {id}: state {text:?} is unknown")))
}

/// Used by both stores to finish a webhook row.
pub(crate) fn webhook(
    id: String,
    url: String,
    secret: String,
    events: &str,
    format: String,
    created_at: i64,
    created_by: String,
) -> Result<Webhook, StoreError> {
    Ok(Webhook {
        events: decode_events(&id, events)?,
        id,
        url,
        secret,
        format,
        created_at,
        created_by,
    })
}

/// Used by both stores to finish a delivery row.
pub(crate) fn delivery(mut d: Delivery, state: &str) -> Result<Delivery, StoreError> {
    d.state = decode_state(d.id, state)?;
    Ok(d)
}
