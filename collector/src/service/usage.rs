//! Usage reports (CONTRACTS §4) and the store's liveness.

use crate::domain::aggregate::UsageReport;
use crate::domain::time::now_ms;
use crate::domain::usage_query::{Format, UsageQuery};
use crate::error::AppError;
use crate::state::AppState;

/// The format a `GET /v1/usage` query asks for with `format=` (400 when it
/// names another); `None`: the caller decides (the `Accept` header).
pub fn format_of(raw_query: Option<&str>) -> Result<Option<Format>, AppError> {
    Format::of_query(raw_query).map_err(AppError::InvalidParameter)
}

/// The report for a raw `GET /v1/usage` query string (400 when it is bad).
pub async fn report(state: &AppState, raw_query: Option<&str>) -> Result<UsageReport, AppError> {
    let query = UsageQuery::parse(raw_query, now_ms()).map_err(AppError::BadRequest)?;
    let report = state
        .store
        .usage(query)
        .await
        .inspect_err(|e| state.count_store_error(e))?;
    Ok(report)
}

/// Whether the store answers a trivial round trip now.
pub async fn store_answers(state: &AppState) -> bool {
    match state.store.ping().await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "health check: the store does not answer");
            state.count_store_error(&e);
            false
        }
    }
}
