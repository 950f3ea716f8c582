//! The audit log (CONTRACTS §9): `record` is the one line every write adds
//! after it changed something; `page` answers `GET /v1/audit`. Entries are
//! only ever appended: no API edits or deletes one.

use serde_json::Value;

use crate::domain::audit::{AuditEntry, AuditPage, AuditQuery};
use crate::error::AppError;
use crate::service::access::RequestContext;
use crate::state::AppState;

/// Appends `{at, actor, action, target, before, after, request_id}`; the
/// actor is the caller's token id or `bootstrap:<role>`, never a secret.
/// Called after the write succeeded; if the append fails the caller
/// answers the store error (the change itself stays: see README, "Security").
pub async fn record(
    state: &AppState,
    ctx: &RequestContext,
    action: &str,
    target: &str,
    before: Option<Value>,
    after: Option<Value>,
) -> Result<(), AppError> {
    let entry = AuditEntry {
        seq: 0,
        at: state.now(),
        actor: ctx.principal.actor.clone(),
        action: action.to_owned(),
        target: target.to_owned(),
        before,
        after,
        request_id: ctx.request_id.clone(),
    };
    state.store.append_audit(entry).await.map_err(|e| {
        state.count_store_error(&e);
        tracing::error!(error = %e, action, target, "audit entry not stored");
        AppError::Store(e)
    })
}

/// A page of entries for a raw `GET /v1/audit` query, newest first.
pub async fn page(
    state: &AppState,
    raw_query: Option<&str>,
) -> Result<(AuditPage, bool), AppError> {
    let query = AuditQuery::parse(raw_query).map_err(AppError::BadRequest)?;
    let csv = query.csv;
    let limit = query.limit;
    let entries = state
        .store
        .list_audit(query)
        .await
        .inspect_err(|e| state.count_store_error(e))?;
    Ok((AuditPage::new(entries, limit), csv))
}
