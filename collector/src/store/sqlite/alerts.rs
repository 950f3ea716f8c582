//! Alerts, webhooks and the outbox in the SQLite store (CONTRACTS §10):
//! plain functions over a connection (writes on the writer).

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::domain::alerts::Alert;
use crate::domain::record::map_to_json;
use crate::domain::webhooks::{Attempt, Delivery, DeliveryState, Webhook};
use crate::store::alert_rows::{
    blank_alert, budget_column, budget_of_column, decode_alert, delivery, events_json,
    wants_alerts, webhook, AlertText, ALERT_COLUMNS, DELIVERY_COLUMNS, WEBHOOK_COLUMNS,
};
use crate::store::StoreError;

/// Enqueues `event` under `event_id` for every alert webhook (in `conn`'s
/// open transaction).
fn enqueue(conn: &Connection, event_id: &str, event: &str, at: i64) -> Result<(), StoreError> {
    for hook in list_webhooks(conn)? {
        if wants_alerts(&hook.events) {
            conn.execute(
                "INSERT INTO webhook_outbox (event_id, webhook_id, event, state, attempts, \
                 next_attempt_at, created_at) VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?4) \
                 ON CONFLICT DO NOTHING",
                params![event_id, hook.id, event, at],
            )?;
        }
    }
    Ok(())
}

pub(super) fn insert_alert(conn: &Connection, a: &Alert, event: &str) -> Result<bool, StoreError> {
    let tx = conn.unchecked_transaction()?;
    let changed = tx.execute(
        &format!("INSERT INTO alerts ({ALERT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) ON CONFLICT DO NOTHING"),
        params![
            a.id,
            budget_column(a),
            a.level.as_str(),
            a.kind.as_str(),
            map_to_json(&a.scope),
            a.threshold,
            a.spend_usd,
            a.amount_usd,
            a.forecast_usd,
            a.period_start,
            a.at,
            a.acked_at,
            a.acked_by,
            a.escalated_at,
            a.z_score
        ],
    )?;
    if changed == 1 {
        enqueue(&tx, &a.id, event, a.at)?;
    }
    tx.commit()?;
    Ok(changed == 1)
}

pub(super) fn escalate_alert(
    conn: &Connection,
    id: &str,
    event_id: &str,
    event: &str,
    at: i64,
) -> Result<bool, StoreError> {
    let tx = conn.unchecked_transaction()?;
    let changed = tx.execute(
        "UPDATE alerts SET escalated_at = ?2 \
         WHERE id = ?1 AND acked_at IS NULL AND escalated_at IS NULL",
        params![id, at],
    )?;
    if changed == 1 {
        enqueue(&tx, event_id, event, at)?;
    }
    tx.commit()?;
    Ok(changed == 1)
}

fn raw_alert(r: &Row<'_>) -> Result<(Alert, AlertText), rusqlite::Error> {
    let mut a = blank_alert(r.get(0)?);
    a.budget_id = budget_of_column(&a.id, r.get(1)?);
    let text = AlertText {
        level: r.get(2)?,
        kind: r.get(3)?,
        scope: r.get(4)?,
    };
    a.threshold = r.get(5)?;
    a.spend_usd = r.get(6)?;
    a.amount_usd = r.get(7)?;
    a.forecast_usd = r.get(8)?;
    a.period_start = r.get(9)?;
    a.at = r.get(10)?;
    a.acked_at = r.get(11)?;
    a.acked_by = r.get(12)?;
    a.escalated_at = r.get(13)?;
    a.z_score = r.get(14)?;
    Ok((a, text))
}

pub(super) fn get_alert(conn: &Connection, id: &str) -> Result<Option<Alert>, StoreError> {
    let sql = format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1");
    let raw = conn
        .prepare_cached(&sql)?
        .query_row(params![id], raw_alert)
        .optional()?;
    raw.map(|(a, t)| decode_alert(a, t)).transpose()
}

pub(super) fn list_alerts(conn: &Connection) -> Result<Vec<Alert>, StoreError> {
    let sql = format!("SELECT {ALERT_COLUMNS} FROM alerts ORDER BY at DESC, id");
    let mut stmt = conn.prepare_cached(&sql)?;
    let raws = stmt
        .query_map([], raw_alert)?
        .collect::<Result<Vec<_>, _>>()?;
    raws.into_iter().map(|(a, t)| decode_alert(a, t)).collect()
}

pub(super) fn ack_alert(
    conn: &Connection,
    id: &str,
    actor: &str,
    at: i64,
) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE alerts SET acked_at = ?3, acked_by = ?2 WHERE id = ?1 AND acked_at IS NULL",
        params![id, actor, at],
    )? == 1)
}

pub(super) fn create_webhook(conn: &Connection, w: &Webhook) -> Result<bool, StoreError> {
    Ok(conn.execute(
        &format!("INSERT INTO webhooks ({WEBHOOK_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING"),
        params![w.id, w.url, w.secret, events_json(&w.events), w.format, w.created_at, w.created_by],
    )? == 1)
}

pub(super) fn list_webhooks(conn: &Connection) -> Result<Vec<Webhook>, StoreError> {
    let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY created_at, id");
    let mut stmt = conn.prepare_cached(&sql)?;
    let raws = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, String>(6)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    raws.into_iter()
        .map(|(id, url, secret, events, format, at, by)| {
            webhook(id, url, secret, &events, format, at, by)
        })
        .collect()
}

pub(super) fn delete_webhook(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    let tx = conn.unchecked_transaction()?;
    let deleted = tx.execute("DELETE FROM webhooks WHERE id = ?1", params![id])? == 1;
    tx.execute(
        "DELETE FROM webhook_outbox WHERE webhook_id = ?1 AND state = 'pending'",
        params![id],
    )?;
    tx.commit()?;
    Ok(deleted)
}

fn raw_delivery(r: &Row<'_>) -> Result<(Delivery, String), rusqlite::Error> {
    Ok((
        Delivery {
            id: r.get(0)?,
            event_id: r.get(1)?,
            webhook_id: r.get(2)?,
            event: r.get(3)?,
            state: DeliveryState::Pending,
            attempts: r.get(5)?,
            next_attempt_at: r.get(6)?,
            last_status: r.get(7)?,
            last_error: r.get(8)?,
            created_at: r.get(9)?,
            delivered_at: r.get(10)?,
        },
        r.get(4)?,
    ))
}

pub(super) fn claim_deliveries(
    conn: &Connection,
    now: i64,
    lease_until: i64,
    limit: i64,
) -> Result<Vec<Delivery>, StoreError> {
    let sql = format!(
        "UPDATE webhook_outbox SET next_attempt_at = ?2 WHERE id IN (\
         SELECT id FROM webhook_outbox WHERE state = 'pending' AND next_attempt_at <= ?1 \
         ORDER BY next_attempt_at, id LIMIT ?3) RETURNING {DELIVERY_COLUMNS}"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let raws = stmt
        .query_map(params![now, lease_until, limit], raw_delivery)?
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = raws
        .into_iter()
        .map(|(d, state)| delivery(d, &state))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_by_key(|d| d.id);
    Ok(out)
}

pub(super) fn finish_delivery(
    conn: &Connection,
    id: i64,
    a: &Attempt,
    retry_at: Option<i64>,
) -> Result<(), StoreError> {
    let state = match (a.delivered, retry_at) {
        (true, _) => DeliveryState::Delivered,
        (false, Some(_)) => DeliveryState::Pending,
        (false, None) => DeliveryState::Failed,
    };
    conn.execute(
        "UPDATE webhook_outbox SET attempts = attempts + 1, state = ?2, \
         next_attempt_at = coalesce(?3, next_attempt_at), last_status = ?4, last_error = ?5, \
         delivered_at = CASE WHEN ?6 THEN ?7 ELSE delivered_at END \
         WHERE id = ?1 AND state = 'pending'",
        params![
            id,
            state.as_str(),
            retry_at,
            a.status,
            a.error,
            a.delivered,
            a.at
        ],
    )?;
    Ok(())
}

pub(super) fn list_deliveries(
    conn: &Connection,
    webhook_id: &str,
    limit: i64,
) -> Result<Vec<Delivery>, StoreError> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_outbox WHERE webhook_id = ?1 \
         ORDER BY id DESC LIMIT ?2"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let raws = stmt
        .query_map(params![webhook_id, limit], raw_delivery)?
        .collect::<Result<Vec<_>, _>>()?;
    raws.into_iter().map(|(d, s)| delivery(d, &s)).collect()
}

pub(super) fn outbox_depth(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM webhook_outbox WHERE state = 'pending'",
        [],
        |r| r.get(0),
    )?)
}
