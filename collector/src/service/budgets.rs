//! Budgets (CONTRACTS §6): create, read, replace and delete them, and each
//! budget's spend and state in its current UTC period.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::domain::access::budget_in_scope;
use crate::domain::alerts::{forecast_usd, forecast_window};
use crate::domain::budgets::{validate_budget, Budget, BudgetState, Period, Scope};
use crate::domain::overrides::active_extras;
use crate::domain::time::format_rfc3339_ms;
use crate::error::AppError;
use crate::service::access::RequestContext;
use crate::service::audit;
use crate::state::AppState;
use crate::store::{Store, StoreError};

/// A budget as every budget endpoint answers it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetView {
    #[serde(flatten)]
    pub budget: Budget,
    pub spend_usd: f64,
    pub state: BudgetState,
    pub period_start: String,
    pub period_end: String,
    /// What active overrides add to the hard threshold now (CONTRACTS §9).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub override_usd: Option<f64>,
    /// Spend so far + mean burn × time left (CONTRACTS §10).
    pub forecast_usd: f64,
    #[serde(skip)]
    pub period_end_ms: i64,
}

#[derive(Debug, Serialize)]
pub struct BudgetList {
    pub budgets: Vec<BudgetView>,
}

/// The extra hard-threshold amount per budget from the overrides active now.
pub async fn override_extras(
    store: &dyn Store,
    now: i64,
) -> Result<BTreeMap<String, f64>, StoreError> {
    Ok(active_extras(&store.list_overrides().await?, now))
}

/// Spend and state of each budget now, in the order given (hard thresholds
/// raised by the active overrides) and forecast. Two spend queries per
/// period kind (day, month: the period and the forecast's burn window),
/// whatever the number of budgets, plus one for the overrides.
pub async fn views_of(
    store: &dyn Store,
    budgets: Vec<Budget>,
    now: i64,
) -> Result<Vec<BudgetView>, StoreError> {
    let extras = if budgets.is_empty() {
        BTreeMap::new()
    } else {
        override_extras(store, now).await?
    };
    let mut spends = vec![0.0; budgets.len()];
    let mut forecasts = vec![0.0; budgets.len()];
    for period in [Period::Day, Period::Month] {
        let (start, end) = period.bounds(now);
        let indices: Vec<usize> = (0..budgets.len())
            .filter(|&i| budgets.get(i).is_some_and(|b| b.period == period))
            .collect();
        if indices.is_empty() {
            continue;
        }
        let scopes: Vec<Scope> = indices
            .iter()
            .filter_map(|&i| budgets.get(i).map(|b| b.scope.clone()))
            .collect();
        let window = forecast_window(period, now);
        let burns = store
            .spend_usd(scopes.clone(), window.from_ms, window.to_ms)
            .await?;
        let sums = store.spend_usd(scopes, start, end).await?;
        for ((i, spend), burn) in indices.into_iter().zip(sums).zip(burns) {
            if let Some(slot) = spends.get_mut(i) {
                *slot = spend;
            }
            if let Some(slot) = forecasts.get_mut(i) {
                *slot = forecast_usd(spend, burn, &window);
            }
        }
    }
    Ok(budgets
        .into_iter()
        .zip(spends)
        .zip(forecasts)
        .map(|((budget, spend), forecast)| {
            let (start, end) = budget.period.bounds(now);
            // Floating sums carry noise in the last bits; 1e-10 USD is far
            // below a token's price.
            let spend_usd = (spend * 1e10).round() / 1e10;
            let extra = extras.get(&budget.id).copied();
            BudgetView {
                state: budget.state_with(spend_usd, extra.unwrap_or(0.0)),
                override_usd: extra,
                forecast_usd: forecast,
                spend_usd,
                period_start: format_rfc3339_ms(start),
                period_end: format_rfc3339_ms(end),
                period_end_ms: end,
                budget,
            }
        })
        .collect())
}

async fn view_of(state: &AppState, budget: Budget) -> Result<BudgetView, AppError> {
    let views = views_of(&*state.store, vec![budget], state.now())
        .await
        .inspect_err(|e| state.count_store_error(e))?;
    views
        .into_iter()
        .next()
        .ok_or_else(|| AppError::Store(StoreError::internal("budget view went missing")))
}

fn not_found(id: &str) -> AppError {
    AppError::NotFound(format!("no budget with id {id:?}"))
}

fn target(id: &str) -> String {
    format!("budget:{id}")
}

fn json_of(budget: &Budget) -> Option<Value> {
    serde_json::to_value(budget).ok()
}

/// A scoped viewer may read a budget only inside its scope.
fn check_scope(ctx: &RequestContext, budget: &Budget) -> Result<(), AppError> {
    match &ctx.principal.scope {
        Some(scope) if !budget_in_scope(scope, &budget.scope) => Err(AppError::OutOfScope(
            format!("budget {:?} is outside this token's scope", budget.id),
        )),
        _ => Ok(()),
    }
}

/// Creates the budget described by `body`; 409 when its id exists.
pub async fn create(
    state: &AppState,
    ctx: &RequestContext,
    body: &Value,
) -> Result<BudgetView, AppError> {
    let budget = validate_budget(body, None).map_err(AppError::BadRequest)?;
    let created = state
        .store
        .create_budget(budget.clone())
        .await
        .inspect_err(|e| state.count_store_error(e))?;
    if !created {
        return Err(AppError::Conflict(format!(
            "a budget with id {:?} already exists; PUT /v1/budgets/{} replaces it",
            budget.id, budget.id
        )));
    }
    state.caps.budgets_changed();
    audit::record(
        state,
        ctx,
        "budget.create",
        &target(&budget.id),
        None,
        json_of(&budget),
    )
    .await?;
    view_of(state, budget).await
}

/// Every budget with its spend and state, sorted by id; for a scoped
/// viewer, only the budgets inside its scope.
pub async fn list(state: &AppState, ctx: &RequestContext) -> Result<BudgetList, AppError> {
    let mut budgets = state
        .store
        .list_budgets()
        .await
        .inspect_err(|e| state.count_store_error(e))?;
    if let Some(scope) = &ctx.principal.scope {
        budgets.retain(|b| budget_in_scope(scope, &b.scope));
    }
    let budgets = views_of(&*state.store, budgets, state.now())
        .await
        .inspect_err(|e| state.count_store_error(e))?;
    Ok(BudgetList { budgets })
}

/// The stored budget `id`, or 404.
async fn existing(state: &AppState, id: &str) -> Result<Budget, AppError> {
    state
        .store
        .get_budget(id.to_owned())
        .await
        .inspect_err(|e| state.count_store_error(e))?
        .ok_or_else(|| not_found(id))
}

pub async fn get(state: &AppState, ctx: &RequestContext, id: &str) -> Result<BudgetView, AppError> {
    let budget = existing(state, id).await?;
    check_scope(ctx, &budget)?;
    view_of(state, budget).await
}

/// Replaces budget `id` wholesale with `body` (which may omit `id`).
pub async fn replace(
    state: &AppState,
    ctx: &RequestContext,
    id: &str,
    body: &Value,
) -> Result<BudgetView, AppError> {
    let budget = validate_budget(body, Some(id)).map_err(AppError::BadRequest)?;
    let before = existing(state, id).await?;
    let replaced = state
        .store
        .replace_budget(budget.clone())
        .await
        .inspect_err(|e| state.count_store_error(e))?;
    if !replaced {
        return Err(not_found(id));
    }
    state.caps.budgets_changed();
    audit::record(
        state,
        ctx,
        "budget.replace",
        &target(id),
        json_of(&before),
        json_of(&budget),
    )
    .await?;
    view_of(state, budget).await
}

/// Deletes budget `id`; answers it as it was just before.
pub async fn delete(
    state: &AppState,
    ctx: &RequestContext,
    id: &str,
) -> Result<BudgetView, AppError> {
    let budget = existing(state, id).await?;
    let view = view_of(state, budget).await?;
    let deleted = state
        .store
        .delete_budget(id.to_owned())
        .await
        .inspect_err(|e| state.count_store_error(e))?;
    if !deleted {
        return Err(not_found(id));
    }
    state.caps.budgets_changed();
    audit::record(
        state,
        ctx,
        "budget.delete",
        &target(id),
        json_of(&view.budget),
        None,
    )
    .await?;
    Ok(view)
}

/// One host's lease as `GET /v1/budgets/{id}/leases` answers it.
#[derive(Debug, Serialize)]
pub struct LeaseView {
    pub host: String,
    pub seq: i64,
    /// The newest grant: reserved + spent this period may reach it.
    pub allowance_usd: f64,
    /// What this host holds of the cap (its grants not yet retired).
    pub committed_usd: f64,
    /// What it reported it used (reservations in flight included).
    pub used_usd: f64,
    pub burn_usd_per_s: f64,
    pub updated_at: String,
    pub expires_at: String,
    /// Not renewed in time: the host reserves nothing more under it.
    pub expired: bool,
}

/// Where a strict budget's cap is held this period (SPEC §6).
#[derive(Debug, Serialize)]
pub struct BudgetLeases {
    pub budget_id: String,
    pub period_start: String,
    /// hard × amount + active overrides.
    pub cap_usd: f64,
    /// Spend recorded before the period's first lease.
    pub base_usd: f64,
    /// Σ committed over the hosts.
    pub held_usd: f64,
    /// What no host holds: cap − base − held (what the next grants share).
    pub unheld_usd: f64,
    pub leases: Vec<LeaseView>,
}

/// The leases of budget `id`'s current period, by host (empty for a
/// `flags` budget or before any gateway polled).
pub async fn leases(
    state: &AppState,
    ctx: &RequestContext,
    id: &str,
) -> Result<BudgetLeases, AppError> {
    let budget = existing(state, id).await?;
    check_scope(ctx, &budget)?;
    let now = state.now();
    let (period_start_ms, _) = budget.period.bounds(now);
    let view = view_of(state, budget).await?;
    let count = |e: &StoreError| state.count_store_error(e);
    let (base_usd, held_usd) = state
        .store
        .lease_totals(id.to_owned(), period_start_ms)
        .await
        .inspect_err(count)?;
    let listed = state
        .store
        .list_leases(id.to_owned(), period_start_ms)
        .await
        .inspect_err(count)?;
    let cap_usd = view.budget.hard * view.budget.amount_usd + view.override_usd.unwrap_or(0.0);
    Ok(BudgetLeases {
        budget_id: view.budget.id.clone(),
        period_start: view.period_start.clone(),
        cap_usd,
        base_usd,
        held_usd,
        unheld_usd: (cap_usd - base_usd - held_usd).max(0.0),
        leases: listed
            .into_iter()
            .map(|l| LeaseView {
                host: l.host,
                seq: l.lease.seq,
                allowance_usd: l.lease.granted_usd,
                committed_usd: l.lease.committed_usd,
                used_usd: l.lease.used_usd,
                burn_usd_per_s: l.lease.burn_usd_per_s,
                updated_at: format_rfc3339_ms(l.lease.updated_ms),
                expires_at: format_rfc3339_ms(l.lease.expires_ms),
                expired: l.lease.expires_ms <= now,
            })
            .collect(),
    })
}
