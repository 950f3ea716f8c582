//! Prices in time (SPEC §13), translated to `service::prices`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::Value;

use crate::error::AppError;
use crate::http::parse_body;
use crate::service::access::RequestContext;
use crate::service::prices;
use crate::state::AppState;

pub async fn list(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, AppError> {
    Ok(Json(prices::list(&state, raw.as_deref()).await?))
}

pub async fn change(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let out = prices::change(&state, &ctx, &parse_body(body)?).await?;
    Ok((StatusCode::CREATED, Json(out)))
}

pub async fn recompute(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, AppError> {
    Ok(Json(prices::recompute(&state, &ctx, raw.as_deref()).await?))
}
