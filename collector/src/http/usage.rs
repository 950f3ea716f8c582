//! `GET /v1/usage` (CONTRACTS §4).

use axum::extract::{RawQuery, State};
use axum::Json;

use crate::domain::aggregate::UsageReport;
use crate::error::AppError;
use crate::service::usage;
use crate::state::AppState;

pub async fn get_usage(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<UsageReport>, AppError> {
    Ok(Json(usage::report(&state, raw.as_deref()).await?))
}
