//! Reconciliation with the provider's bill (SPEC §13): importing providers'
//! exports (`POST /v1/provider-usage`), the report (`GET
//! /v1/reconciliation?month=`), and the `coverage.low` alert, raised through
//! `service::alerts::raise` (so webhooks get it) when a month's coverage is
//! under `AISPEND_COVERAGE_MIN`.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::domain::alerts::{Alert, Kind, Level};
use crate::domain::finops::period::Period;
use crate::domain::reconcile::import::{self, PROVIDERS};
use crate::domain::reconcile::report::{self, model_key, GatewayCell, Reconciliation};
use crate::domain::time::{format_rfc3339_ms, month_of, month_start};
use crate::domain::usage_query::{Dim, UsageQuery};
use crate::domain::validate::CREDENTIAL_LABEL;
use crate::error::AppError;
use crate::service::access::RequestContext;
use crate::service::finops::params;
use crate::service::{alerts, audit};
use crate::state::AppState;
use crate::store::StoreErrorKind;

fn store_err(state: &AppState) -> impl Fn(crate::store::StoreError) -> AppError + '_ {
    move |e| {
        state.count_store_error(&e);
        AppError::from(e)
    }
}

fn whole_fleet_only(ctx: &RequestContext) -> Result<(), AppError> {
    match &ctx.principal.scope {
        None => Ok(()),
        Some(_) => Err(AppError::OutOfScope(String::from(
            "reconciliation covers every team; a token scoped to some tags reads its scope \
             from /v1/usage",
        ))),
    }
}

/// `POST /v1/provider-usage?provider=openai|anthropic|gemini` (finance):
/// the body is the provider's export as downloaded.
pub async fn import(
    state: &AppState,
    ctx: &RequestContext,
    raw: Option<&str>,
    body: &[u8],
) -> Result<Value, AppError> {
    let p = params(raw, &["provider"])?;
    let provider = p.get("provider").ok_or_else(|| {
        AppError::BadRequest(format!("provider: required ({})", PROVIDERS.join(", ")))
    })?;
    let parsed = import::parse(provider, body).map_err(AppError::BadRequest)?;
    let summary = json!({
        "provider": parsed.provider,
        "source": parsed.source,
        "from": format_rfc3339_ms(parsed.from_ms),
        "to": format_rfc3339_ms(parsed.to_ms),
        "lines": parsed.lines.len(),
        "skipped": parsed.skipped,
    });
    let (from, to) = (parsed.from_ms, parsed.to_ms);
    let (replaced, _) = state
        .store
        .replace_provider_usage(parsed)
        .await
        .map_err(store_err(state))?;
    let mut out = summary;
    out["replaced"] = json!(replaced);
    audit::record(
        state,
        ctx,
        "provider_usage.import",
        &format!(
            "{provider}:{}..{}",
            format_rfc3339_ms(from),
            format_rfc3339_ms(to)
        ),
        None,
        Some(out.clone()),
    )
    .await?;
    // The months the export touches: their coverage may have dropped.
    let mut months = vec![month_of(from), month_of((to - 1).max(from))];
    months.dedup();
    let mut alerts_raised = Vec::new();
    for month in months {
        let period = Period::parse_month("month", &month).map_err(AppError::BadRequest)?;
        let r = build(state, &month, period.range_ms()).await?;
        if let Some(id) = check_coverage(state, &r, period.range_ms().0).await? {
            alerts_raised.push(id);
        }
    }
    out["alerts"] = json!(alerts_raised);
    Ok(out)
}

/// The gateway side of one month and the provider lines, reconciled.
async fn build(
    state: &AppState,
    month: &str,
    (from, to): (i64, i64),
) -> Result<Reconciliation, AppError> {
    let query = |group_by| UsageQuery {
        from_ms: from,
        to_ms: to,
        group_by,
        filters: Vec::new(),
        required_tags: Vec::new(),
    };
    let usage = state
        .store
        .usage(query(vec![Dim::Provider, Dim::Model, Dim::Day]))
        .await
        .map_err(store_err(state))?;
    let mut gateway: BTreeMap<(String, String, String), GatewayCell> = BTreeMap::new();
    for row in &usage.rows {
        let dim = |i: usize| row.dims.get(i).cloned().flatten().unwrap_or_default();
        let cell = gateway
            .entry((dim(0), model_key(&dim(1)), dim(2)))
            .or_default();
        cell.cost_usd += row.sums.cost_usd;
        cell.tokens += row.sums.input_tokens + row.sums.output_tokens;
        cell.requests += row.sums.requests;
    }
    let lines = state
        .store
        .provider_usage(from, to)
        .await
        .map_err(store_err(state))?;
    // Per credential, from the records' `credential_id` (raw records, so
    // only when an export names credentials; a month past the retention
    // horizon has no per-credential gateway side).
    let mut by_cred: BTreeMap<(String, String), GatewayCell> = BTreeMap::new();
    let named = lines.iter().any(|l| !l.credential.is_empty());
    let per_credential = if named {
        Some(
            state
                .store
                .usage(query(vec![
                    Dim::Provider,
                    Dim::Label(CREDENTIAL_LABEL.to_owned()),
                ]))
                .await,
        )
    } else {
        None
    };
    match per_credential {
        Some(Ok(report)) => {
            for row in &report.rows {
                let (Some(Some(provider)), Some(Some(cred))) = (row.dims.first(), row.dims.get(1))
                else {
                    continue;
                };
                let cell = by_cred.entry((provider.clone(), cred.clone())).or_default();
                cell.cost_usd += row.sums.cost_usd;
                cell.tokens += row.sums.input_tokens + row.sums.output_tokens;
                cell.requests += row.sums.requests;
            }
        }
        None => {}
        Some(Err(e)) if e.kind() == StoreErrorKind::BeyondRetention => {}
        Some(Err(e)) => return Err(store_err(state)(e)),
    }
    Ok(report::build(month, &gateway, &by_cred, &lines))
}

/// The `coverage.low` alert of a month, once per month (its id is derived
/// from the month, so every replica computes the same one).
fn coverage_alert(r: &Reconciliation, min: f64, period_start: i64, now: i64) -> Option<Alert> {
    let coverage = r.totals.coverage?;
    if coverage >= min {
        return None;
    }
    let digest = Sha256::digest(format!("coverage.low\n{}", r.month));
    let id = format!(
        "alt_{}",
        crate::domain::access::hex(digest.get(..12).unwrap_or_default())
    );
    let round = |v: f64| (v * 1e6).round() / 1e6;
    Some(Alert {
        id,
        level: Level::Warning,
        kind: Kind::CoverageLow,
        budget_id: None,
        scope: BTreeMap::from([("month".to_owned(), r.month.clone())]),
        threshold: min,
        spend_usd: round(r.totals.gateway_cost_usd),
        amount_usd: round(r.totals.provider_cost_usd),
        forecast_usd: round(r.totals.unattributed_usd),
        period_start,
        at: now,
        acked_at: None,
        acked_by: None,
        escalated_at: None,
        z_score: None,
    })
}

/// Raises `coverage.low` when the month's coverage is under the setting;
/// the alert id when one was stored now.
async fn check_coverage(
    state: &AppState,
    r: &Reconciliation,
    period_start: i64,
) -> Result<Option<String>, AppError> {
    let min = state.alerts.settings.coverage_min;
    let Some(alert) = coverage_alert(r, min, period_start, state.now()) else {
        return Ok(None);
    };
    let id = alert.id.clone();
    let stored = alerts::raise(state, alert)
        .await
        .map_err(store_err(state))?;
    Ok(stored.then_some(id))
}

/// `GET /v1/reconciliation?month=YYYY-MM`.
pub async fn reconciliation(
    state: &AppState,
    ctx: &RequestContext,
    raw: Option<&str>,
) -> Result<Reconciliation, AppError> {
    whole_fleet_only(ctx)?;
    let p = params(raw, &["month"])?;
    let month = p.get("month").ok_or_else(|| {
        AppError::BadRequest(String::from(
            "month: required (a month YYYY-MM, e.g. 2026-11)",
        ))
    })?;
    let period = Period::parse_month("month", month).map_err(AppError::BadRequest)?;
    let range = period.range_ms();
    let r = build(state, &month_of(range.0), range).await?;
    check_coverage(state, &r, month_start(range.0)).await?;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::reconcile::report::Totals;

    fn month(gateway: f64, provider: f64) -> Reconciliation {
        Reconciliation {
            month: "2026-11".into(),
            totals: Totals {
                gateway_cost_usd: gateway,
                provider_cost_usd: provider,
                coverage: (provider > 0.0).then(|| gateway / provider),
                ..Totals::default()
            },
            ..Reconciliation::default()
        }
    }

    #[test]
    fn coverage_low_fires_under_the_share_only_once_per_month_id() {
        assert!(
            coverage_alert(&month(95.0, 100.0), 0.95, 0, 1).is_none(),
            "at the share"
        );
        assert!(
            coverage_alert(&month(0.0, 0.0), 0.95, 0, 1).is_none(),
            "nothing billed"
        );
        let a = coverage_alert(&month(94.0, 100.0), 0.95, 7, 1).expect("under the share");
        assert_eq!(
            (a.kind, a.level, a.threshold),
            (Kind::CoverageLow, Level::Warning, 0.95)
        );
        assert_eq!(
            (a.spend_usd, a.amount_usd, a.period_start),
            (94.0, 100.0, 7)
        );
        let b = coverage_alert(&month(10.0, 100.0), 0.95, 7, 2).expect("lower still");
        assert_eq!(a.id, b.id, "one alert per month, whatever the numbers");
        let other = Reconciliation {
            month: "2026-12".into(),
            ..month(10.0, 100.0)
        };
        assert_ne!(coverage_alert(&other, 0.95, 7, 2).expect("fires").id, a.id);
    }
}
