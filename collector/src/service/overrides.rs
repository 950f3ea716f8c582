//! Hard-cap overrides (CONTRACTS §9): request, approve (two-person rule),
//! list. The rule itself is `domain::overrides`; an active override raises
//! its budget's hard threshold in every budget answer and in `/v1/caps`
//! (`service::budgets::views_of`), and ends by itself at `expires_at`.

use serde::Serialize;
use serde_json::Value;

use crate::domain::overrides::{validate_new_override, Override, OverrideState, Refusal};
use crate::error::AppError;
use crate::service::access::{random_hex, RequestContext};
use crate::service::audit;
use crate::state::AppState;

/// An override as the API answers it: with its state now.
#[derive(Debug, Serialize)]
pub struct OverrideView {
    #[serde(flatten)]
    pub o: Override,
    pub state: OverrideState,
}

#[derive(Debug, Serialize)]
pub struct OverrideList {
    pub overrides: Vec<OverrideView>,
}

fn view(o: Override, now: i64) -> OverrideView {
    OverrideView {
        state: o.state(now),
        o,
    }
}

/// `POST /v1/overrides`: a pending override of an existing budget.
pub async fn request(
    state: &AppState,
    ctx: &RequestContext,
    body: &Value,
) -> Result<OverrideView, AppError> {
    let now = state.now();
    let new = validate_new_override(body, now).map_err(AppError::BadRequest)?;
    let budget = state
        .store
        .get_budget(new.budget_id.clone())
        .await
        .inspect_err(|e| state.count_store_error(e))?;
    if budget.is_none() {
        return Err(AppError::NotFound(format!(
            "no budget with id {:?}",
            new.budget_id
        )));
    }
    let o = Override {
        id: format!("ovr_{}", random_hex(8)?),
        budget_id: new.budget_id,
        amount_usd: new.amount_usd,
        expires_at: new.expires_at,
        reason: new.reason,
        requested_by: ctx.principal.actor.clone(),
        created_at: now,
        approvals: Vec::new(),
    };
    state
        .store
        .create_override(o.clone())
        .await
        .inspect_err(|e| state.count_store_error(e))?;
    let answer = view(o, now);
    audit::record(
        state,
        ctx,
        "override.request",
        &format!("override:{}", answer.o.id),
        None,
        serde_json::to_value(&answer).ok(),
    )
    .await?;
    Ok(answer)
}

async fn find(state: &AppState, id: &str) -> Result<Override, AppError> {
    state
        .store
        .list_overrides()
        .await
        .inspect_err(|e| state.count_store_error(e))?
        .into_iter()
        .find(|o| o.id == id)
        .ok_or_else(|| AppError::NotFound(format!("no override with id {id:?}")))
}

/// `POST /v1/overrides/{id}/approve`: adds the caller's approval; the
/// override is active once a finance and an admin token (neither the
/// requester's) approved it.
pub async fn approve(
    state: &AppState,
    ctx: &RequestContext,
    id: &str,
) -> Result<OverrideView, AppError> {
    let now = state.now();
    let before = find(state, id).await?;
    let approval = before
        .approval_by(&ctx.principal, now)
        .map_err(|refusal| match refusal {
            Refusal::SelfApproval => AppError::SelfApproval,
            Refusal::Role => AppError::Forbidden,
            Refusal::Conflict(m) => AppError::Conflict(m),
        })?;
    let added = state
        .store
        .add_override_approval(id.to_owned(), approval)
        .await
        .inspect_err(|e| state.count_store_error(e))?;
    if !added {
        return Err(AppError::Conflict(format!(
            "override {id} was approved by this token or this role meanwhile"
        )));
    }
    let after = find(state, id).await?;
    let before_view = view(before, now);
    let answer = view(after, now);
    // Caps and budget answers change at once when it became active.
    state.caps.budgets_changed();
    audit::record(
        state,
        ctx,
        "override.approve",
        &format!("override:{id}"),
        serde_json::to_value(&before_view).ok(),
        serde_json::to_value(&answer).ok(),
    )
    .await?;
    Ok(answer)
}

/// `GET /v1/overrides`: every override with its state now, newest first.
pub async fn list(state: &AppState) -> Result<OverrideList, AppError> {
    let now = state.now();
    let overrides = state
        .store
        .list_overrides()
        .await
        .inspect_err(|e| state.count_store_error(e))?;
    Ok(OverrideList {
        overrides: overrides.into_iter().map(|o| view(o, now)).collect(),
    })
}
