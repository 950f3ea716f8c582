//! Reconciliation with the provider's bill (SPEC §13), translated to
//! `service::reconcile`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::Value;

use crate::domain::reconcile::report::Reconciliation;
use crate::error::AppError;
use crate::service::access::RequestContext;
use crate::service::reconcile;
use crate::state::AppState;

/// Providers' exports may be large: a month of hourly buckets per model.
pub const MAX_IMPORT_BYTES: usize = 32 * 1024 * 1024;

pub async fn import(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    RawQuery(raw): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let body = body.map_err(|e| AppError::Rejected(e.status(), e.body_text()))?;
    let out = reconcile::import(&state, &ctx, raw.as_deref(), &body).await?;
    Ok((StatusCode::OK, Json(out)))
}

pub async fn report(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Reconciliation>, AppError> {
    Ok(Json(
        reconcile::reconciliation(&state, &ctx, raw.as_deref()).await?,
    ))
}
