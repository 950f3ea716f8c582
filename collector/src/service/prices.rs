//! Prices in time (SPEC §13): `GET /v1/prices`, price changes over the API
//! (`POST /v1/prices`, admin, audited) or by file (`AISPEND_PRICE_CHANGES`,
//! applied at start), and `POST /v1/prices/recompute`. The book ingest
//! prices with (`state.book`) is reloaded from the store after every change.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::domain::audit::AuditEntry;
use crate::domain::pricing::book::{PriceBook, PriceChanges};
use crate::domain::time::{format_rfc3339_ms, parse_rfc3339_ms, HOUR_MS};
use crate::error::AppError;
use crate::service::access::RequestContext;
use crate::service::audit;
use crate::service::finops::params;
use crate::state::AppState;
use crate::store::Pricer;

fn store_err(state: &AppState) -> impl Fn(crate::store::StoreError) -> AppError + '_ {
    move |e| {
        state.count_store_error(&e);
        AppError::from(e)
    }
}

/// Reloads the book from the store (the base table stays).
pub async fn reload(state: &AppState) -> Result<Arc<PriceBook>, AppError> {
    let history = state
        .store
        .price_history()
        .await
        .map_err(store_err(state))?;
    let book = PriceBook::new(state.prices.clone(), history.prices, history.discounts);
    state.book.set(book);
    Ok(state.book.get())
}

/// `GET /v1/prices[?provider=&model=&at=]`: the base table's version, every
/// change and discount, and with `provider` and `model` the price in effect
/// at `at` (default now).
pub async fn list(state: &AppState, raw: Option<&str>) -> Result<Value, AppError> {
    let p = params(raw, &["provider", "model", "at"])?;
    let book = reload(state).await?;
    let mut out = json!({
        "base_version": book.base().version(),
        "base_models": book.base().len(),
        "prices": book.changes().iter().map(|c| c.to_json()).collect::<Vec<_>>(),
        "discounts": book.discounts().iter().map(|d| d.to_json()).collect::<Vec<_>>(),
    });
    match (p.get("provider"), p.get("model")) {
        (Some(provider), Some(model)) => {
            let at = match p.get("at") {
                Some(t) => parse_rfc3339_ms(t).ok_or_else(|| {
                    AppError::BadRequest(String::from("at: expected an RFC 3339 time"))
                })?,
                None => state.now(),
            };
            let effective = book.quote(provider, model, at).map(|q| {
                json!({
                    "provider": provider,
                    "model": model,
                    "at": format_rfc3339_ms(at),
                    "price_version": q.version,
                    "input_cost_per_token": q.list.input,
                    "output_cost_per_token": q.list.output,
                    "cache_read_input_token_cost": q.list.cache_read,
                    "cache_creation_input_token_cost": q.list.cache_write,
                    "discount": q.discount,
                })
            });
            out["effective"] = effective.unwrap_or(Value::Null);
        }
        (None, None) if p.contains_key("at") => {
            return Err(AppError::BadRequest(String::from(
                "at: give provider and model with it",
            )))
        }
        (None, None) => {}
        _ => {
            return Err(AppError::BadRequest(String::from(
                "provider, model: give both or neither",
            )))
        }
    }
    Ok(out)
}

/// Stores `changes` (nothing when one conflicts with a stored entry) and
/// reloads the book; the summary the API answers and the audit keeps.
async fn apply(state: &AppState, changes: &PriceChanges) -> Result<Value, AppError> {
    let added = state
        .store
        .add_prices(changes.clone(), state.now())
        .await
        .map_err(store_err(state))?;
    if !added.conflicts.is_empty() {
        return Err(AppError::Conflict(format!(
            "already stored with other values (history is never edited; give a later \
             effective_from): {}",
            added.conflicts.join("; ")
        )));
    }
    reload(state).await?;
    Ok(json!({"added": added.added, "unchanged": added.unchanged}))
}

fn changes_json(changes: &PriceChanges) -> Value {
    json!({
        "prices": changes.prices.iter().map(|c| c.to_json()).collect::<Vec<_>>(),
        "discounts": changes.discounts.iter().map(|d| d.to_json()).collect::<Vec<_>>(),
    })
}

/// `POST /v1/prices` (admin): `{"prices":[…],"discounts":[…]}`.
pub async fn change(
    state: &AppState,
    ctx: &RequestContext,
    body: &Value,
) -> Result<Value, AppError> {
    let changes = PriceChanges::parse(body).map_err(AppError::BadRequest)?;
    let summary = apply(state, &changes).await?;
    if summary["added"].as_u64().unwrap_or(0) > 0 {
        audit::record(
            state,
            ctx,
            "prices.change",
            "prices",
            None,
            Some(changes_json(&changes)),
        )
        .await?;
    }
    Ok(summary)
}

/// Applies the `AISPEND_PRICE_CHANGES` file at start (idempotent: entries
/// already stored are unchanged); audited under the actor `file:<path>`.
pub async fn apply_file(state: &AppState, path: &std::path::Path) -> Result<Value, String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("cannot read price changes file {}: {e}", path.display()))?;
    let body: Value = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{}: not valid JSON: {e}", path.display()))?;
    let changes = PriceChanges::parse(&body).map_err(|e| format!("{}: {e}", path.display()))?;
    let summary = apply(state, &changes).await.map_err(|e| match e {
        AppError::Conflict(m) | AppError::BadRequest(m) => format!("{}: {m}", path.display()),
        AppError::Store(e) => format!("{}: {e}", path.display()),
        other => format!("{}: {other:?}", path.display()),
    })?;
    if summary["added"].as_u64().unwrap_or(0) > 0 {
        let entry = AuditEntry {
            seq: 0,
            at: state.now(),
            actor: format!("file:{}", path.display()),
            action: "prices.change".into(),
            target: "prices".into(),
            before: None,
            after: Some(changes_json(&changes)),
            request_id: String::new(),
        };
        state
            .store
            .append_audit(entry)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(summary)
}

fn hour_param(p: &HashMap<String, String>, name: &str) -> Result<i64, AppError> {
    let text = p.get(name).ok_or_else(|| {
        AppError::BadRequest(format!("{name}: required (RFC 3339, a whole hour)"))
    })?;
    let ms = parse_rfc3339_ms(text)
        .ok_or_else(|| AppError::BadRequest(format!("{name}: expected an RFC 3339 time")))?;
    if ms.rem_euclid(HOUR_MS) != 0 {
        return Err(AppError::BadRequest(format!(
            "{name}: must be a whole hour (e.g. 2026-11-01T00:00:00Z): rollups are rebuilt per hour"
        )));
    }
    Ok(ms)
}

/// `POST /v1/prices/recompute?from&to` (admin): reprices every record in
/// `[from, to)` with the prices in effect at each record's `ts` under a new
/// `price_version`, rebuilding the rollups; audited.
pub async fn recompute(
    state: &AppState,
    ctx: &RequestContext,
    raw: Option<&str>,
) -> Result<Value, AppError> {
    let p = params(raw, &["from", "to"])?;
    let (from, to) = (hour_param(&p, "from")?, hour_param(&p, "to")?);
    if to <= from {
        return Err(AppError::BadRequest(String::from("to: must be after from")));
    }
    let book = reload(state).await?;
    let version = format!(
        "rc-{}-{}",
        book.fingerprint(),
        crate::domain::access::hex(&state.now().to_be_bytes()[2..])
    );
    let pricer_book = book.clone();
    let pricer: Pricer = Arc::new(move |record| pricer_book.cost_of(record).0);
    let done = state
        .store
        .reprice(from, to, pricer, version.clone())
        .await
        .map_err(store_err(state))?;
    // Spend moved: caps, anomaly history and forecasts recompute.
    state.caps.records_ingested();
    state.alerts.history.records_before(from);
    let out = json!({
        "from": format_rfc3339_ms(from),
        "to": format_rfc3339_ms(to),
        "price_version": version,
        "records": done.records,
        "cost_before_usd": done.cost_before_usd,
        "cost_after_usd": done.cost_after_usd,
    });
    audit::record(
        state,
        ctx,
        "prices.recompute",
        &format!("{}..{}", format_rfc3339_ms(from), format_rfc3339_ms(to)),
        None,
        Some(out.clone()),
    )
    .await?;
    Ok(out)
}

/// How often a replica reloads the price changes other replicas stored.
pub const RELOAD_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Reloads the book every `RELOAD_EVERY`, so that a change stored through
/// another replica prices this one's ingest within a minute. Ends with the
/// process; a failed reload keeps the book and is logged.
pub async fn reload_loop(state: AppState) {
    let mut tick = tokio::time::interval(RELOAD_EVERY);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(e) = reload(&state).await {
            tracing::warn!(error = ?e, "price changes not reloaded");
        }
    }
}
