//! The alert API (CONTRACTS §10): `GET /v1/alerts`,
//! `POST /v1/alerts/{id}/ack`, `GET /v1/forecast`, translated to
//! `service::alerts`.

use axum::extract::{Path, RawQuery, State};
use axum::{Extension, Json};
use serde_json::Value;

use crate::domain::alerts::AlertView;
use crate::error::AppError;
use crate::service::access::RequestContext;
use crate::service::alerts::{self, AlertList};
use crate::state::AppState;

pub async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    RawQuery(raw): RawQuery,
) -> Result<Json<AlertList>, AppError> {
    Ok(Json(alerts::list(&state, &ctx, raw.as_deref()).await?))
}

pub async fn ack(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> Result<Json<AlertView>, AppError> {
    Ok(Json(alerts::ack(&state, &ctx, &id).await?))
}

pub async fn forecast(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, AppError> {
    Ok(Json(alerts::forecast(&state, &ctx, raw.as_deref()).await?))
}
