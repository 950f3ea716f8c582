//! `GET /v1/usage` (SPEC §4).

use axum::extract::{RawQuery, State};
use axum::Json;

use crate::domain::aggregate::UsageReport;
use crate::domain::time::now_ms;
use crate::domain::usage_query::UsageQuery;
use crate::error::AppError;
use crate::AppState;

pub async fn get_usage(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<UsageReport>, AppError> {
    let query = UsageQuery::parse(raw.as_deref(), now_ms()).map_err(AppError::BadRequest)?;
    let report = state
        .store
        .usage(query)
        .await
        .inspect_err(|e| state.count_store_error(e))?;
    Ok(Json(report))
}
