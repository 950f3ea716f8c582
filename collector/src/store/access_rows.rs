//! Rows of the access tables (tokens, audit log, overrides) as both stores
//! read and write them: text columns encoded and decoded once, here.

use serde_json::Value;

use crate::domain::access::{ApiToken, Role};
use crate::domain::audit::AuditEntry;
use crate::domain::budgets::Scope;
use crate::domain::overrides::{Approval, Override};
use crate::store::StoreError;

pub(crate) const TOKEN_COLUMNS: &str =
    "id, sha256, role, scope, label, created_at, expires_at, revoked_at, created_by";
pub(crate) const AUDIT_COLUMNS: &str = "seq, at, actor, action, target, before, after, request_id";
pub(crate) const OVERRIDE_COLUMNS: &str =
    "id, budget_id, amount_usd, expires_at, reason, requested_by, created_at";

pub(crate) use crate::domain::access::hex;

fn unhex32(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

pub(crate) fn role(text: &str) -> Result<Role, StoreError> {
    Role::parse(text).ok_or_else(|| StoreError::invalid(format!("stored role {text:?} is unknown")))
}

pub(crate) fn scope_json(scope: &Option<Scope>) -> Option<String> {
    scope.as_ref().map(crate::domain::record::map_to_json)
}

pub(crate) fn json_text(value: &Option<Value>) -> Option<String> {
    value.as_ref().map(Value::to_string)
}

fn json_of(text: Option<String>, what: &str) -> Result<Option<Value>, StoreError> {
    text.map(|t| {
        serde_json::from_str(&t)
            .map_err(|e| StoreError::invalid(format!("stored {what} is not JSON: {e}")))
    })
    .transpose()
}

/// A token row as read, before decoding.
pub(crate) struct TokenRow {
    pub id: String,
    pub sha256: String,
    pub role: String,
    pub scope: Option<String>,
    pub label: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub created_by: String,
}

impl TokenRow {
    pub(crate) fn decode(self) -> Result<ApiToken, StoreError> {
        let sha256 = unhex32(&self.sha256)
            .ok_or_else(|| StoreError::invalid(format!("token {} has a bad sha256", self.id)))?;
        let scope = self
            .scope
            .map(|s| {
                serde_json::from_str::<Scope>(&s)
                    .map_err(|e| StoreError::invalid(format!("token {} scope: {e}", self.id)))
            })
            .transpose()?;
        Ok(ApiToken {
            role: role(&self.role)?,
            id: self.id,
            sha256,
            scope,
            label: self.label,
            created_at: self.created_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
            created_by: self.created_by,
        })
    }
}

pub(crate) struct AuditRow {
    pub seq: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub before: Option<String>,
    pub after: Option<String>,
    pub request_id: String,
}

impl AuditRow {
    pub(crate) fn decode(self) -> Result<AuditEntry, StoreError> {
        Ok(AuditEntry {
            seq: self.seq,
            at: self.at,
            actor: self.actor,
            action: self.action,
            target: self.target,
            before: json_of(self.before, "audit before")?,
            after: json_of(self.after, "audit after")?,
            request_id: self.request_id,
        })
    }
}

/// Attaches approval rows `(override_id, actor, role, at)` to their overrides.
pub(crate) fn with_approvals(
    mut overrides: Vec<Override>,
    approvals: Vec<(String, String, String, i64)>,
) -> Result<Vec<Override>, StoreError> {
    for (id, actor, role_text, at) in approvals {
        if let Some(o) = overrides.iter_mut().find(|o| o.id == id) {
            o.approvals.push(Approval {
                actor,
                role: role(&role_text)?,
                at,
            });
        }
    }
    Ok(overrides)
}
