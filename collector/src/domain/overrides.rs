//! Hard-cap overrides (CONTRACTS §9), the two-person rule: requested by
//! finance or admin, active once approved by one `finance` and one `admin`
//! token, both other than the requester's, and only until `expires_at`.
//! While active, the budget's hard threshold is raised by `amount_usd`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::access::{future_time, Principal, Role};
use super::budgets::is_budget_id;
use super::time::format_rfc3339_ms;

/// One approval of an override.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Approval {
    pub actor: String,
    pub role: Role,
    #[serde(serialize_with = "ser_ms")]
    pub at: i64,
}

/// An override as stored, with its approvals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Override {
    pub id: String,
    pub budget_id: String,
    pub amount_usd: f64,
    #[serde(serialize_with = "ser_ms")]
    pub expires_at: i64,
    pub reason: String,
    pub requested_by: String,
    #[serde(serialize_with = "ser_ms")]
    pub created_at: i64,
    pub approvals: Vec<Approval>,
}

fn ser_ms<S: serde::Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_rfc3339_ms(*ms))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OverrideState {
    /// Waiting for its approvals (and not yet expired).
    Pending,
    /// Approved by finance and admin, before `expires_at`.
    Active,
    /// `expires_at` passed (approved or not).
    Expired,
}

/// Why an approval is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The requester approving their own request (403 `self_approval`).
    SelfApproval,
    /// The caller may not approve (no finance or admin role).
    Role,
    /// Approving twice, a role already approved, an expired override (409).
    Conflict(String),
}

impl Override {
    pub fn approved_by(&self, role: Role) -> bool {
        self.approvals.iter().any(|a| a.role == role)
    }

    pub fn state(&self, now_ms: i64) -> OverrideState {
        if now_ms >= self.expires_at {
            OverrideState::Expired
        } else if self.approved_by(Role::Finance) && self.approved_by(Role::Admin) {
            OverrideState::Active
        } else {
            OverrideState::Pending
        }
    }

    /// The approval `by` would add now, or why not. A caller holding both
    /// roles (only `anonymous` in insecure mode) fills the missing one.
    pub fn approval_by(&self, by: &Principal, now_ms: i64) -> Result<Approval, Refusal> {
        if by.actor == self.requested_by {
            return Err(Refusal::SelfApproval);
        }
        if self.state(now_ms) == OverrideState::Expired {
            return Err(Refusal::Conflict(format!(
                "override {} expired at {}",
                self.id,
                format_rfc3339_ms(self.expires_at)
            )));
        }
        if self.approvals.iter().any(|a| a.actor == by.actor) {
            return Err(Refusal::Conflict(format!(
                "{} already approved override {}; a second approver is needed",
                by.actor, self.id
            )));
        }
        let role = [Role::Finance, Role::Admin]
            .into_iter()
            .filter(|r| by.has(*r))
            .find(|r| !self.approved_by(*r));
        match role {
            Some(role) => Ok(Approval {
                actor: by.actor.clone(),
                role,
                at: now_ms,
            }),
            None if by.has(Role::Finance) || by.has(Role::Admin) => {
                let missing = if self.approved_by(Role::Finance) {
                    "admin"
                } else {
                    "finance"
                };
                Err(Refusal::Conflict(format!(
                    "override {} already has the approval of your role; it needs one by a \
                     {missing} token",
                    self.id
                )))
            }
            None => Err(Refusal::Role),
        }
    }
}

/// The extra hard-threshold amount per budget from the overrides active now.
pub fn active_extras(overrides: &[Override], now_ms: i64) -> BTreeMap<String, f64> {
    let mut extras = BTreeMap::new();
    for o in overrides
        .iter()
        .filter(|o| o.state(now_ms) == OverrideState::Active)
    {
        *extras.entry(o.budget_id.clone()).or_insert(0.0) += o.amount_usd;
    }
    extras
}

/// A validated `POST /v1/overrides` body.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOverride {
    pub budget_id: String,
    pub amount_usd: f64,
    pub expires_at: i64,
    pub reason: String,
}

const MAX_REASON_LEN: usize = 2000;

/// Validates `{"budget_id","amount_usd","expires_at","reason"}`.
pub fn validate_new_override(body: &Value, now_ms: i64) -> Result<NewOverride, String> {
    let obj = body
        .as_object()
        .ok_or_else(|| String::from("body must be a JSON object"))?;
    if let Some(unknown) = obj.keys().find(|k| {
        !matches!(
            k.as_str(),
            "budget_id" | "amount_usd" | "expires_at" | "reason"
        )
    }) {
        return Err(format!(
            "unknown field {unknown:?}: use budget_id, amount_usd, expires_at, reason"
        ));
    }
    let budget_id = obj
        .get("budget_id")
        .and_then(Value::as_str)
        .filter(|id| is_budget_id(id))
        .ok_or_else(|| String::from("field `budget_id`: expected a budget id"))?
        .to_owned();
    let amount_usd = obj
        .get("amount_usd")
        .and_then(Value::as_f64)
        .filter(|a| a.is_finite() && *a > 0.0)
        .ok_or_else(|| String::from("field `amount_usd`: expected a number above 0"))?;
    let expires_at = future_time(obj, "expires_at", now_ms, true)?.unwrap_or(now_ms);
    let reason = obj
        .get("reason")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|r| !r.is_empty() && r.len() <= MAX_REASON_LEN)
        .ok_or_else(|| format!("field `reason`: expected a string of 1 to {MAX_REASON_LEN} bytes"))?
        .to_owned();
    Ok(NewOverride {
        budget_id,
        amount_usd,
        expires_at,
        reason,
    })
}

#[cfg(test)]
mod tests;
