//! The access tables of the SQLite store (CONTRACTS §9): API tokens, the
//! audit log (INSERT and SELECT only), overrides and their approvals.

use rusqlite::{params, Connection, Row};

use crate::domain::access::ApiToken;
use crate::domain::audit::{AuditEntry, AuditQuery};
use crate::domain::overrides::{Approval, Override};
use crate::store::access_rows::{
    hex, json_text, scope_json, with_approvals, AuditRow, TokenRow, AUDIT_COLUMNS,
    OVERRIDE_COLUMNS, TOKEN_COLUMNS,
};
use crate::store::StoreError;

pub(super) fn create_token(conn: &Connection, t: &ApiToken) -> Result<bool, StoreError> {
    let changed = conn.execute(
        "INSERT INTO api_tokens (id, sha256, role, scope, label, created_at, expires_at, \
         revoked_at, created_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
         ON CONFLICT DO NOTHING",
        params![
            t.id,
            hex(&t.sha256),
            t.role.as_str(),
            scope_json(&t.scope),
            t.label,
            t.created_at,
            t.expires_at,
            t.revoked_at,
            t.created_by
        ],
    )?;
    Ok(changed == 1)
}

pub(super) fn list_tokens(conn: &Connection) -> Result<Vec<ApiToken>, StoreError> {
    let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, id");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt
        .query_map([], |r: &Row<'_>| {
            Ok(TokenRow {
                id: r.get(0)?,
                sha256: r.get(1)?,
                role: r.get(2)?,
                scope: r.get(3)?,
                label: r.get(4)?,
                created_at: r.get(5)?,
                expires_at: r.get(6)?,
                revoked_at: r.get(7)?,
                created_by: r.get(8)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter().map(TokenRow::decode).collect()
}

pub(super) fn revoke_token(conn: &Connection, id: &str, at: i64) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE api_tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        params![id, at],
    )? == 1)
}

pub(super) fn append_audit(conn: &Connection, e: &AuditEntry) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO audit_log (at, actor, action, target, before, after, request_id) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        e.at,
        e.actor,
        e.action,
        e.target,
        json_text(&e.before),
        json_text(&e.after),
        e.request_id
    ])?;
    Ok(())
}

pub(super) fn list_audit(conn: &Connection, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
    let sql = format!(
        "SELECT {AUDIT_COLUMNS} FROM audit_log \
         WHERE (?1 IS NULL OR actor = ?1) AND (?2 IS NULL OR action = ?2) \
         AND (?3 IS NULL OR target = ?3) AND (?4 IS NULL OR at >= ?4) \
         AND (?5 IS NULL OR at < ?5) AND (?6 IS NULL OR seq < ?6) \
         ORDER BY seq DESC LIMIT ?7"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt
        .query_map(
            params![q.actor, q.action, q.target, q.from_ms, q.to_ms, q.before, q.limit],
            |r: &Row<'_>| {
                Ok(AuditRow {
                    seq: r.get(0)?,
                    at: r.get(1)?,
                    actor: r.get(2)?,
                    action: r.get(3)?,
                    target: r.get(4)?,
                    before: r.get(5)?,
                    after: r.get(6)?,
                    request_id: r.get(7)?,
                })
            },
        )?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter().map(AuditRow::decode).collect()
}

pub(super) fn create_override(conn: &Connection, o: &Override) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO overrides (id, budget_id, amount_usd, expires_at, reason, requested_by, \
         created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            o.id,
            o.budget_id,
            o.amount_usd,
            o.expires_at,
            o.reason,
            o.requested_by,
            o.created_at
        ],
    )?;
    Ok(())
}

pub(super) fn list_overrides(conn: &Connection) -> Result<Vec<Override>, StoreError> {
    let sql = format!("SELECT {OVERRIDE_COLUMNS} FROM overrides ORDER BY created_at DESC, id");
    let overrides = conn
        .prepare_cached(&sql)?
        .query_map([], |r: &Row<'_>| {
            Ok(Override {
                id: r.get(0)?,
                budget_id: r.get(1)?,
                amount_usd: r.get(2)?,
                expires_at: r.get(3)?,
                reason: r.get(4)?,
                requested_by: r.get(5)?,
                created_at: r.get(6)?,
                approvals: Vec::new(),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let approvals = conn
        .prepare_cached(
            "SELECT override_id, actor, role, at FROM override_approvals ORDER BY at, actor",
        )?
        .query_map([], |r: &Row<'_>| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    with_approvals(overrides, approvals)
}

pub(super) fn add_override_approval(
    conn: &Connection,
    id: &str,
    a: &Approval,
) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "INSERT INTO override_approvals (override_id, actor, role, at) \
         SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM overrides WHERE id = ?1) \
         ON CONFLICT DO NOTHING",
        params![id, a.actor, a.role.as_str(), a.at],
    )? == 1)
}
