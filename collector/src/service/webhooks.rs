//! Webhooks (CONTRACTS §10): register, list, delete, the delivery attempts
//! of one webhook, and the delivery worker that drains the outbox.
//!
//! The worker is its own task: ingest and evaluation only write outbox rows
//! (in the store), so a slow or dead receiver never blocks them. Each
//! attempt has a timeout; a failure is retried with exponential backoff
//! (`domain::webhooks::backoff_ms`) until `MAX_ATTEMPTS`. Rows live in the
//! store, so a restart loses none; a claim is a lease, so a worker killed
//! mid-attempt is retried by any replica when the lease ends. Delivery is at
//! least once: receivers deduplicate on `x-aispend-event-id`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};

use crate::domain::webhooks::{
    backoff_ms, body_for, signature, validate_webhook, Attempt, Delivery, Webhook, MAX_ATTEMPTS,
};
use crate::error::AppError;
use crate::service::access::{random_hex, RequestContext};
use crate::service::audit;
use crate::state::AppState;

/// How long a claimed delivery is reserved for one attempt.
const LEASE_MS: i64 = 60_000;
/// Deliveries claimed per pass.
const BATCH: i64 = 32;
/// How often the outbox is polled without a new alert.
const POLL: Duration = Duration::from_secs(1);

/// The answer to `POST /v1/webhooks`: the webhook and, this once, its secret.
#[derive(Debug, Serialize)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub webhook: Webhook,
    pub secret: String,
}

#[derive(Debug, Serialize)]
pub struct WebhookList {
    pub webhooks: Vec<Webhook>,
}

pub async fn create(
    state: &AppState,
    ctx: &RequestContext,
    body: &Value,
) -> Result<CreatedWebhook, AppError> {
    let new = validate_webhook(body, &state.alerts.settings.allowed_hosts)
        .map_err(AppError::BadRequest)?;
    let webhook = Webhook {
        id: format!("wh_{}", random_hex(8)?),
        url: new.url,
        secret: new.secret,
        events: new.events,
        format: new.format,
        created_at: state.now(),
        created_by: ctx.principal.actor.clone(),
    };
    let created = state
        .store
        .create_webhook(webhook.clone())
        .await
        .inspect_err(|e| state.count_store_error(e))?;
    if !created {
        return Err(AppError::Conflict(String::from(
            "webhook id collision; try again",
        )));
    }
    // The audit entry never carries the secret (`Webhook` skips it).
    audit::record(
        state,
        ctx,
        "webhook.create",
        &format!("webhook:{}", webhook.id),
        None,
        serde_json::to_value(&webhook).ok(),
    )
    .await?;
    Ok(CreatedWebhook {
        secret: webhook.secret.clone(),
        webhook,
    })
}

pub async fn list(state: &AppState) -> Result<WebhookList, AppError> {
    let webhooks = state
        .store
        .list_webhooks()
        .await
        .inspect_err(|e| state.count_store_error(e))?;
    Ok(WebhookList { webhooks })
}

async fn existing(state: &AppState, id: &str) -> Result<Webhook, AppError> {
    list(state)
        .await?
        .webhooks
        .into_iter()
        .find(|w| w.id == id)
        .ok_or_else(|| AppError::NotFound(format!("no webhook with id {id:?}")))
}

pub async fn delete(state: &AppState, ctx: &RequestContext, id: &str) -> Result<Webhook, AppError> {
    let webhook = existing(state, id).await?;
    let deleted = state
        .store
        .delete_webhook(id.to_owned())
        .await
        .inspect_err(|e| state.count_store_error(e))?;
    if !deleted {
        return Err(AppError::NotFound(format!("no webhook with id {id:?}")));
    }
    audit::record(
        state,
        ctx,
        "webhook.delete",
        &format!("webhook:{id}"),
        serde_json::to_value(&webhook).ok(),
        None,
    )
    .await?;
    Ok(webhook)
}

/// `GET /v1/webhooks/{id}/deliveries`: the newest 100 deliveries.
pub async fn deliveries(state: &AppState, id: &str) -> Result<Value, AppError> {
    existing(state, id).await?;
    let rows = state
        .store
        .list_deliveries(id.to_owned(), 100)
        .await
        .inspect_err(|e| state.count_store_error(e))?;
    Ok(json!({"deliveries": rows.iter().map(Delivery::view).collect::<Vec<_>>()}))
}

/// Sends one claimed delivery and records the attempt.
async fn deliver(state: &AppState, hooks: &BTreeMap<String, Webhook>, d: &Delivery) {
    let now = state.now();
    let Some(hook) = hooks.get(&d.webhook_id) else {
        let attempt = Attempt {
            at: now,
            status: None,
            error: Some(String::from("webhook deleted")),
            delivered: false,
        };
        if let Err(e) = state.store.finish_delivery(d.id, attempt, None).await {
            state.count_store_error(&e);
        }
        return;
    };
    let event: Value = serde_json::from_str(&d.event).unwrap_or(Value::Null);
    let body = body_for(&hook.format, &event);
    let timestamp = now.div_euclid(1000);
    let headers = [
        ("x-aispend-event-id", d.event_id.clone()),
        ("x-aispend-timestamp", timestamp.to_string()),
        (
            "x-aispend-signature",
            signature(&hook.secret, timestamp, &body),
        ),
    ];
    let timeout = Duration::from_millis(state.alerts.settings.webhook_timeout_ms);
    let result = state
        .alerts
        .client
        .post(&hook.url, &headers, body, timeout)
        .await;
    let (status, error) = match &result {
        Ok(code) if (200..300).contains(code) => (Some(i64::from(*code)), None),
        Ok(code) => (Some(i64::from(*code)), Some(format!("HTTP {code}"))),
        Err(e) => (None, Some(e.clone())),
    };
    let delivered = error.is_none();
    let attempts = d.attempts + 1;
    let retry_at = (!delivered && attempts < MAX_ATTEMPTS).then(|| now + backoff_ms(attempts));
    if delivered {
        state.alerts.deliveries_ok.fetch_add(1, Ordering::Relaxed);
    } else {
        state
            .alerts
            .delivery_failures
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            webhook = %hook.id, event = %d.event_id, attempts, error = error.as_deref().unwrap_or(""),
            "webhook delivery failed{}", if retry_at.is_some() { ", will retry" } else { ", giving up" }
        );
    }
    let attempt = Attempt {
        at: now,
        status,
        error,
        delivered,
    };
    if let Err(e) = state.store.finish_delivery(d.id, attempt, retry_at).await {
        state.count_store_error(&e);
    }
}

/// One pass: claim what is due, send it (concurrently), record each attempt.
pub async fn deliver_due(state: &AppState) -> Result<usize, crate::store::StoreError> {
    let now = state.now();
    let claimed = state
        .store
        .claim_deliveries(now, now + LEASE_MS, BATCH)
        .await?;
    if !claimed.is_empty() {
        let hooks: BTreeMap<String, Webhook> = state
            .store
            .list_webhooks()
            .await?
            .into_iter()
            .map(|w| (w.id.clone(), w))
            .collect();
        let sends = claimed.iter().map(|d| deliver(state, &hooks, d));
        futures_util::future::join_all(sends).await;
    }
    let depth = state.store.outbox_depth().await?;
    state.alerts.depth.store(depth, Ordering::Relaxed);
    Ok(claimed.len())
}

/// Drains the outbox: every second, and at once after a new alert.
pub async fn delivery_loop(state: AppState) {
    loop {
        match deliver_due(&state).await {
            Ok(n) if n as i64 == BATCH => continue,
            Ok(_) => {}
            Err(e) => {
                state.count_store_error(&e);
                tracing::warn!(error = %e, "webhook delivery pass failed");
            }
        }
        tokio::select! {
            () = state.alerts.deliver.notified() => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }
}
