//! Alerts, webhooks and the outbox in the PostgreSQL store (same rules as
//! SQLite's). The UNIQUE (budget_id, level, period_start) of `alerts` makes
//! evaluation idempotent across replicas: two replicas inserting the same
//! alert at once end with one row, and only the inserting transaction
//! enqueues its deliveries. Claims use `FOR UPDATE SKIP LOCKED`, so two
//! workers never claim the same delivery at once.

use deadpool_postgres::Client;
use tokio_postgres::{GenericClient, Row};

use crate::domain::alerts::Alert;
use crate::domain::record::map_to_json;
use crate::domain::webhooks::{Attempt, Delivery, DeliveryState, Webhook};
use crate::store::alert_rows::{
    blank_alert, budget_column, budget_of_column, decode_alert, delivery, events_json,
    wants_alerts, webhook, AlertText, ALERT_COLUMNS, DELIVERY_COLUMNS, WEBHOOK_COLUMNS,
};
use crate::store::StoreError;

async fn enqueue<C: GenericClient>(
    client: &C,
    event_id: &str,
    event: &str,
    at: i64,
) -> Result<(), StoreError> {
    for hook in list_webhooks(client).await? {
        if wants_alerts(&hook.events) {
            client
                .execute(
                    "INSERT INTO webhook_outbox (event_id, webhook_id, event, state, attempts, \
                     next_attempt_at, created_at) VALUES ($1, $2, $3, 'pending', 0, $4, $4) \
                     ON CONFLICT DO NOTHING",
                    &[&event_id, &hook.id, &event, &at],
                )
                .await?;
        }
    }
    Ok(())
}

pub async fn insert_alert(client: &mut Client, a: &Alert, event: &str) -> Result<bool, StoreError> {
    let tx = client.transaction().await?;
    let sql = format!(
        "INSERT INTO alerts ({ALERT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
         $11, $12, $13, $14, $15) ON CONFLICT DO NOTHING"
    );
    let changed = tx
        .execute(
            &sql,
            &[
                &a.id,
                &budget_column(a),
                &a.level.as_str(),
                &a.kind.as_str(),
                &map_to_json(&a.scope),
                &a.threshold,
                &a.spend_usd,
                &a.amount_usd,
                &a.forecast_usd,
                &a.period_start,
                &a.at,
                &a.acked_at,
                &a.acked_by,
                &a.escalated_at,
                &a.z_score,
            ],
        )
        .await?;
    if changed == 1 {
        enqueue(&*tx, &a.id, event, a.at).await?;
    }
    tx.commit().await?;
    Ok(changed == 1)
}

pub async fn escalate_alert(
    client: &mut Client,
    id: &str,
    event_id: &str,
    event: &str,
    at: i64,
) -> Result<bool, StoreError> {
    let tx = client.transaction().await?;
    let changed = tx
        .execute(
            "UPDATE alerts SET escalated_at = $2 \
             WHERE id = $1 AND acked_at IS NULL AND escalated_at IS NULL",
            &[&id, &at],
        )
        .await?;
    if changed == 1 {
        enqueue(&*tx, event_id, event, at).await?;
    }
    tx.commit().await?;
    Ok(changed == 1)
}

fn decode_alert_row(r: &Row) -> Result<Alert, StoreError> {
    let mut a = blank_alert(r.try_get(0)?);
    a.budget_id = budget_of_column(&a.id, r.try_get(1)?);
    let text = AlertText {
        level: r.try_get(2)?,
        kind: r.try_get(3)?,
        scope: r.try_get(4)?,
    };
    a.threshold = r.try_get(5)?;
    a.spend_usd = r.try_get(6)?;
    a.amount_usd = r.try_get(7)?;
    a.forecast_usd = r.try_get(8)?;
    a.period_start = r.try_get(9)?;
    a.at = r.try_get(10)?;
    a.acked_at = r.try_get(11)?;
    a.acked_by = r.try_get(12)?;
    a.escalated_at = r.try_get(13)?;
    a.z_score = r.try_get(14)?;
    decode_alert(a, text)
}

pub async fn get_alert(client: &Client, id: &str) -> Result<Option<Alert>, StoreError> {
    let sql = format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1");
    client
        .query_opt(&sql, &[&id])
        .await?
        .as_ref()
        .map(decode_alert_row)
        .transpose()
}

pub async fn list_alerts(client: &Client) -> Result<Vec<Alert>, StoreError> {
    let sql = format!("SELECT {ALERT_COLUMNS} FROM alerts ORDER BY at DESC, id");
    client
        .query(&sql, &[])
        .await?
        .iter()
        .map(decode_alert_row)
        .collect()
}

pub async fn ack_alert(
    client: &Client,
    id: &str,
    actor: &str,
    at: i64,
) -> Result<bool, StoreError> {
    Ok(client
        .execute(
            "UPDATE alerts SET acked_at = $3, acked_by = $2 WHERE id = $1 AND acked_at IS NULL",
            &[&id, &actor, &at],
        )
        .await?
        == 1)
}

pub async fn create_webhook(client: &Client, w: &Webhook) -> Result<bool, StoreError> {
    let sql = format!(
        "INSERT INTO webhooks ({WEBHOOK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT DO NOTHING"
    );
    Ok(client
        .execute(
            &sql,
            &[
                &w.id,
                &w.url,
                &w.secret,
                &events_json(&w.events),
                &w.format,
                &w.created_at,
                &w.created_by,
            ],
        )
        .await?
        == 1)
}

pub async fn list_webhooks<C: GenericClient>(client: &C) -> Result<Vec<Webhook>, StoreError> {
    let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY created_at, id");
    client
        .query(&sql, &[])
        .await?
        .iter()
        .map(|r| {
            let events: String = r.try_get(3)?;
            webhook(
                r.try_get(0)?,
                r.try_get(1)?,
                r.try_get(2)?,
                &events,
                r.try_get(4)?,
                r.try_get(5)?,
                r.try_get(6)?,
            )
        })
        .collect()
}

pub async fn delete_webhook(client: &mut Client, id: &str) -> Result<bool, StoreError> {
    let tx = client.transaction().await?;
    let deleted = tx
        .execute("DELETE FROM webhooks WHERE id = $1", &[&id])
        .await?
        == 1;
    tx.execute(
        "DELETE FROM webhook_outbox WHERE webhook_id = $1 AND state = 'pending'",
        &[&id],
    )
    .await?;
    tx.commit().await?;
    Ok(deleted)
}

fn decode_delivery(r: &Row) -> Result<Delivery, StoreError> {
    let state: String = r.try_get(4)?;
    delivery(
        Delivery {
            id: r.try_get(0)?,
            event_id: r.try_get(1)?,
            webhook_id: r.try_get(2)?,
            event: r.try_get(3)?,
            state: DeliveryState::Pending,
            attempts: r.try_get(5)?,
            next_attempt_at: r.try_get(6)?,
            last_status: r.try_get(7)?,
            last_error: r.try_get(8)?,
            created_at: r.try_get(9)?,
            delivered_at: r.try_get(10)?,
        },
        &state,
    )
}

pub async fn claim_deliveries(
    client: &Client,
    now: i64,
    lease_until: i64,
    limit: i64,
) -> Result<Vec<Delivery>, StoreError> {
    let sql = format!(
        "UPDATE webhook_outbox SET next_attempt_at = $2 WHERE id IN (\
         SELECT id FROM webhook_outbox WHERE state = 'pending' AND next_attempt_at <= $1 \
         ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) \
         RETURNING {DELIVERY_COLUMNS}"
    );
    let mut out = client
        .query(&sql, &[&now, &lease_until, &limit])
        .await?
        .iter()
        .map(decode_delivery)
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_by_key(|d| d.id);
    Ok(out)
}

pub async fn finish_delivery(
    client: &Client,
    id: i64,
    a: &Attempt,
    retry_at: Option<i64>,
) -> Result<(), StoreError> {
    let state = match (a.delivered, retry_at) {
        (true, _) => DeliveryState::Delivered,
        (false, Some(_)) => DeliveryState::Pending,
        (false, None) => DeliveryState::Failed,
    };
    client
        .execute(
            "UPDATE webhook_outbox SET attempts = attempts + 1, state = $2, \
             next_attempt_at = coalesce($3, next_attempt_at), last_status = $4, \
             last_error = $5, delivered_at = CASE WHEN $6 THEN $7 ELSE delivered_at END \
             WHERE id = $1 AND state = 'pending'",
            &[
                &id,
                &state.as_str(),
                &retry_at,
                &a.status,
                &a.error,
                &a.delivered,
                &Some(a.at),
            ],
        )
        .await?;
    Ok(())
}

pub async fn list_deliveries(
    client: &Client,
    webhook_id: &str,
    limit: i64,
) -> Result<Vec<Delivery>, StoreError> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_outbox WHERE webhook_id = $1 \
         ORDER BY id DESC LIMIT $2"
    );
    client
        .query(&sql, &[&webhook_id, &limit])
        .await?
        .iter()
        .map(decode_delivery)
        .collect()
}

pub async fn outbox_depth(client: &Client) -> Result<i64, StoreError> {
    let row = client
        .query_one(
            "SELECT count(*) FROM webhook_outbox WHERE state = 'pending'",
            &[],
        )
        .await?;
    Ok(row.try_get(0)?)
}
