//! The budget API (CONTRACTS §6): `POST /v1/budgets`, `GET /v1/budgets`,
//! `GET|PUT|DELETE /v1/budgets/{id}`, `GET /v1/budgets/{id}/leases`, translated
//! to `service::budgets`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Extension;
use axum::Json;

use crate::error::AppError;
use crate::http::parse_body;
use crate::service::access::RequestContext;
use crate::service::budgets::{self, BudgetLeases, BudgetList, BudgetView};
use crate::state::AppState;

pub async fn create(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<BudgetView>), AppError> {
    let view = budgets::create(&state, &ctx, &parse_body(body)?).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

pub async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
) -> Result<Json<BudgetList>, AppError> {
    Ok(Json(budgets::list(&state, &ctx).await?))
}

pub async fn get_one(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> Result<Json<BudgetView>, AppError> {
    Ok(Json(budgets::get(&state, &ctx, &id).await?))
}

pub async fn replace(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<BudgetView>, AppError> {
    Ok(Json(
        budgets::replace(&state, &ctx, &id, &parse_body(body)?).await?,
    ))
}

/// Answers the budget as it was just before deletion.
pub async fn delete(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> Result<Json<BudgetView>, AppError> {
    Ok(Json(budgets::delete(&state, &ctx, &id).await?))
}

/// Where a strict budget's cap is held: the gateway hosts' leases.
pub async fn leases(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> Result<Json<BudgetLeases>, AppError> {
    Ok(Json(budgets::leases(&state, &ctx, &id).await?))
}
