//! Usage reports (CONTRACTS §4) and the store's liveness.

use crate::domain::access::scope_filters;
use crate::domain::aggregate::UsageReport;
use crate::domain::usage_query::{unknown_dim_message, Format, QueryError, UsageQuery};
use crate::error::AppError;
use crate::service::access::RequestContext;
use crate::state::AppState;

/// The format a `GET /v1/usage` query asks for with `format=` (400 when it
/// names another); `None`: the caller decides (the `Accept` header).
pub fn format_of(raw_query: Option<&str>) -> Result<Option<Format>, AppError> {
    Format::of_query(raw_query).map_err(AppError::InvalidParameter)
}

/// The report for a raw `GET /v1/usage` query string (400 when it is bad).
/// For a scoped viewer the query is narrowed to its scope: a filter outside
/// it is 403 `out_of_scope`; a query without such a filter answers the
/// scope only (never the whole fleet).
pub async fn report(
    state: &AppState,
    ctx: &RequestContext,
    raw_query: Option<&str>,
) -> Result<UsageReport, AppError> {
    let query = match UsageQuery::parse(raw_query, state.now()) {
        Ok(query) => query,
        Err(QueryError::Invalid(message)) => return Err(AppError::BadRequest(message)),
        Err(QueryError::UnknownParameter(message)) => {
            return Err(AppError::InvalidParameter(message))
        }
        Err(QueryError::UnknownDim { param, name }) => {
            let tags = tag_keys(state).await?;
            return Err(AppError::InvalidParameter(unknown_dim_message(
                &param, &name, &tags,
            )));
        }
    };
    // An operator tag is valid once a stored record carries it: a typo such
    // as `teams` would otherwise answer a `null` group or nothing at all.
    if query.dims().any(|(_, d)| d.operator_tag().is_some()) {
        let tags = tag_keys(state).await?;
        for (param, dim) in query.dims() {
            if let Some(tag) = dim.operator_tag() {
                if tags.binary_search_by(|t| t.as_str().cmp(tag)).is_err() {
                    return Err(AppError::InvalidParameter(unknown_dim_message(
                        &param, tag, &tags,
                    )));
                }
            }
        }
    }
    let mut query = query;
    if let Some(scope) = &ctx.principal.scope {
        query.filters = scope_filters(scope, std::mem::take(&mut query.filters))
            .map_err(|e| AppError::OutOfScope(e.0))?;
    }
    query.required_tags = state.required_tags.to_vec();
    let report = state
        .store
        .usage(query)
        .await
        .inspect_err(|e| state.count_store_error(e))?;
    Ok(report)
}

async fn tag_keys(state: &AppState) -> Result<Vec<String>, AppError> {
    let mut tags = state
        .store
        .tag_keys()
        .await
        .inspect_err(|e| state.count_store_error(e))?;
    tags.sort_unstable();
    Ok(tags)
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
