//! The access tables of the PostgreSQL store (same rules as SQLite's). The
//! audit table is only INSERTed into and SELECTed from, so the collector's
//! database role needs no UPDATE or DELETE on it (README, "Security").

use tokio_postgres::{Client, Row};

use crate::domain::access::ApiToken;
use crate::domain::audit::{AuditEntry, AuditQuery};
use crate::domain::overrides::{Approval, Override};
use crate::store::access_rows::{
    hex, json_text, scope_json, with_approvals, AuditRow, TokenRow, AUDIT_COLUMNS,
    OVERRIDE_COLUMNS, TOKEN_COLUMNS,
};
use crate::store::StoreError;

pub async fn create_token(client: &Client, t: &ApiToken) -> Result<bool, StoreError> {
    let changed = client
        .execute(
            "INSERT INTO api_tokens (id, sha256, role, scope, label, created_at, expires_at, \
             revoked_at, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT DO NOTHING",
            &[
                &t.id,
                &hex(&t.sha256),
                &t.role.as_str(),
                &scope_json(&t.scope),
                &t.label,
                &t.created_at,
                &t.expires_at,
                &t.revoked_at,
                &t.created_by,
            ],
        )
        .await?;
    Ok(changed == 1)
}

pub async fn list_tokens(client: &Client) -> Result<Vec<ApiToken>, StoreError> {
    let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, id");
    let decode = |r: &Row| -> Result<ApiToken, StoreError> {
        TokenRow {
            id: r.try_get(0)?,
            sha256: r.try_get(1)?,
            role: r.try_get(2)?,
            scope: r.try_get(3)?,
            label: r.try_get(4)?,
            created_at: r.try_get(5)?,
            expires_at: r.try_get(6)?,
            revoked_at: r.try_get(7)?,
            created_by: r.try_get(8)?,
        }
        .decode()
    };
    client.query(&sql, &[]).await?.iter().map(decode).collect()
}

pub async fn revoke_token(client: &Client, id: &str, at: i64) -> Result<bool, StoreError> {
    Ok(client
        .execute(
            "UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
            &[&id, &at],
        )
        .await?
        == 1)
}

pub async fn append_audit(client: &Client, e: &AuditEntry) -> Result<(), StoreError> {
    client
        .execute(
            "INSERT INTO audit_log (at, actor, action, target, before, after, request_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &e.at,
                &e.actor,
                &e.action,
                &e.target,
                &json_text(&e.before),
                &json_text(&e.after),
                &e.request_id,
            ],
        )
        .await?;
    Ok(())
}

pub async fn list_audit(client: &Client, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
    let sql = format!(
        "SELECT {AUDIT_COLUMNS} FROM audit_log \
         WHERE ($1::text IS NULL OR actor = $1) AND ($2::text IS NULL OR action = $2) \
         AND ($3::text IS NULL OR target = $3) AND ($4::bigint IS NULL OR at >= $4) \
         AND ($5::bigint IS NULL OR at < $5) AND ($6::bigint IS NULL OR seq < $6) \
         ORDER BY seq DESC LIMIT $7"
    );
    let limit = i64::from(q.limit);
    let rows = client
        .query(
            &sql,
            &[
                &q.actor, &q.action, &q.target, &q.from_ms, &q.to_ms, &q.before, &limit,
            ],
        )
        .await?;
    rows.iter()
        .map(|r| {
            AuditRow {
                seq: r.try_get(0)?,
                at: r.try_get(1)?,
                actor: r.try_get(2)?,
                action: r.try_get(3)?,
                target: r.try_get(4)?,
                before: r.try_get(5)?,
                after: r.try_get(6)?,
                request_id: r.try_get(7)?,
            }
            .decode()
        })
        .collect()
}

pub async fn create_override(client: &Client, o: &Override) -> Result<(), StoreError> {
    client
        .execute(
            "INSERT INTO overrides (id, budget_id, amount_usd, expires_at, reason, \
             requested_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &o.id,
                &o.budget_id,
                &o.amount_usd,
                &o.expires_at,
                &o.reason,
                &o.requested_by,
                &o.created_at,
            ],
        )
        .await?;
    Ok(())
}

pub async fn list_overrides(client: &Client) -> Result<Vec<Override>, StoreError> {
    let sql = format!("SELECT {OVERRIDE_COLUMNS} FROM overrides ORDER BY created_at DESC, id");
    let overrides = client
        .query(&sql, &[])
        .await?
        .iter()
        .map(|r| -> Result<Override, StoreError> {
            Ok(Override {
                id: r.try_get(0)?,
                budget_id: r.try_get(1)?,
                amount_usd: r.try_get(2)?,
                expires_at: r.try_get(3)?,
                reason: r.try_get(4)?,
                requested_by: r.try_get(5)?,
                created_at: r.try_get(6)?,
                approvals: Vec::new(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let approvals = client
        .query(
            "SELECT override_id, actor, role, at FROM override_approvals ORDER BY at, actor",
            &[],
        )
        .await?
        .iter()
        .map(|r| -> Result<_, StoreError> {
            Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?))
        })
        .collect::<Result<Vec<_>, _>>()?;
    with_approvals(overrides, approvals)
}

pub async fn add_override_approval(
    client: &Client,
    id: &str,
    a: &Approval,
) -> Result<bool, StoreError> {
    Ok(client
        .execute(
            "INSERT INTO override_approvals (override_id, actor, role, at) \
             SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM overrides WHERE id = $1) \
             ON CONFLICT DO NOTHING",
            &[&id, &a.actor, &a.role.as_str(), &a.at],
        )
        .await?
        == 1)
}
