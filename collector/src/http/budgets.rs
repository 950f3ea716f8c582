//! The budget API (SPEC §6): `POST /v1/budgets`, `GET /v1/budgets`,
//! `GET|PUT|DELETE /v1/budgets/{id}`. Every answer shows the budget with its
//! spend and state in the current UTC period.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use axum::Json;
use serde::Serialize;
use serde_json::Value;

use crate::domain::budgets::{validate_budget, Budget, BudgetState, Period};
use crate::domain::time::{format_rfc3339_ms, now_ms};
use crate::error::AppError;
use crate::http::bearer_matches;
use crate::store::{Store, StoreError};
use crate::AppState;

/// A budget as every budget endpoint answers it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetView {
    #[serde(flatten)]
    pub budget: Budget,
    pub spend_usd: f64,
    pub state: BudgetState,
    pub period_start: String,
    pub period_end: String,
    #[serde(skip)]
    pub period_end_ms: i64,
}

#[derive(Debug, Serialize)]
pub struct BudgetList {
    pub budgets: Vec<BudgetView>,
}

/// Tokens allowed on the read side of the budget API.
#[derive(Clone)]
pub struct AnyToken(pub Vec<Option<String>>);

/// Middleware: lets the request through when it carries any of the tokens
/// (GET accepts the read or the admin token). An unset token (`None`, only
/// with `--insecure-no-auth`) opens the endpoint, as elsewhere.
pub async fn require_any_token(
    State(allowed): State<AnyToken>,
    request: Request,
    next: Next,
) -> Result<Response, AppError> {
    let open = allowed.0.iter().any(|t| match t {
        None => true,
        Some(token) => bearer_matches(request.headers(), token),
    });
    if !open {
        return Err(AppError::Unauthorized);
    }
    Ok(next.run(request).await)
}

/// Spend and state of each budget now, in the order given. One spend query
/// per period kind (day, month), whatever the number of budgets.
pub async fn views_of(
    store: &dyn Store,
    budgets: Vec<Budget>,
    now: i64,
) -> Result<Vec<BudgetView>, StoreError> {
    let mut spends = vec![0.0; budgets.len()];
    for period in [Period::Day, Period::Month] {
        let (start, end) = period.bounds(now);
        let indices: Vec<usize> = (0..budgets.len())
            .filter(|&i| budgets.get(i).is_some_and(|b| b.period == period))
            .collect();
        if indices.is_empty() {
            continue;
        }
        let scopes = indices
            .iter()
            .filter_map(|&i| budgets.get(i).map(|b| b.scope.clone()))
            .collect();
        let sums = store.spend_usd(scopes, start, end).await?;
        for (i, spend) in indices.into_iter().zip(sums) {
            if let Some(slot) = spends.get_mut(i) {
                *slot = spend;
            }
        }
    }
    Ok(budgets
        .into_iter()
        .zip(spends)
        .map(|(budget, spend)| {
            let (start, end) = budget.period.bounds(now);
            // Floating sums carry noise in the last bits; 1e-10 USD is far
            // below a token's price.
            let spend_usd = (spend * 1e10).round() / 1e10;
            BudgetView {
                state: budget.state(spend_usd),
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
    let views = views_of(&*state.store, vec![budget], now_ms())
        .await
        .inspect_err(|e| state.count_store_error(e))?;
    views
        .into_iter()
        .next()
        .ok_or_else(|| AppError::Store(StoreError::internal("budget view went missing")))
}

fn parse_body(body: Result<Bytes, BytesRejection>) -> Result<Value, AppError> {
    let body = body?;
    serde_json::from_slice(&body)
        .map_err(|e| AppError::BadRequest(format!("body is not valid JSON: {e}")))
}

fn not_found(id: &str) -> AppError {
    AppError::NotFound(format!("no budget with id {id:?}"))
}

pub async fn create(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<BudgetView>), AppError> {
    let budget = validate_budget(&parse_body(body)?, None).map_err(AppError::BadRequest)?;
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
    Ok((StatusCode::CREATED, Json(view_of(&state, budget).await?)))
}

pub async fn list(State(state): State<AppState>) -> Result<Json<BudgetList>, AppError> {
    let budgets = state
        .store
        .list_budgets()
        .await
        .inspect_err(|e| state.count_store_error(e))?;
    let budgets = views_of(&*state.store, budgets, now_ms())
        .await
        .inspect_err(|e| state.count_store_error(e))?;
    Ok(Json(BudgetList { budgets }))
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

pub async fn get_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<BudgetView>, AppError> {
    let budget = existing(&state, &id).await?;
    Ok(Json(view_of(&state, budget).await?))
}

pub async fn replace(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<BudgetView>, AppError> {
    let budget = validate_budget(&parse_body(body)?, Some(&id)).map_err(AppError::BadRequest)?;
    let replaced = state
        .store
        .replace_budget(budget.clone())
        .await
        .inspect_err(|e| state.count_store_error(e))?;
    if !replaced {
        return Err(not_found(&id));
    }
    state.caps.budgets_changed();
    Ok(Json(view_of(&state, budget).await?))
}

/// Answers the budget as it was just before deletion.
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<BudgetView>, AppError> {
    let budget = existing(&state, &id).await?;
    let view = view_of(&state, budget).await?;
    let deleted = state
        .store
        .delete_budget(id.clone())
        .await
        .inspect_err(|e| state.count_store_error(e))?;
    if !deleted {
        return Err(not_found(&id));
    }
    state.caps.budgets_changed();
    Ok(Json(view))
}
