//! Leases of strict budgets in the PostgreSQL store (`domain/leases`). A
//! grant is one transaction that first locks the budget period's row
//! (`SELECT … FOR UPDATE` on `lease_periods`, created if absent): replicas
//! granting leases of the same budget at once take turns, each reading the
//! others' commitments after the previous grant committed, so they never
//! over-grant. Grants of different budgets do not wait for each other.

use deadpool_postgres::Client;

use crate::domain::leases::{HostLease, Lease, LeaseRequest};
use crate::store::StoreError;

pub async fn grant(client: &mut Client, req: &LeaseRequest) -> Result<Lease, StoreError> {
    let tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO lease_periods (budget_id, period_start, base_usd) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING",
        &[&req.budget_id, &req.period_start_ms, &req.spend_usd],
    )
    .await?;
    let base: f64 = tx
        .query_one(
            "SELECT base_usd FROM lease_periods WHERE budget_id = $1 AND period_start = $2 \
             FOR UPDATE",
            &[&req.budget_id, &req.period_start_ms],
        )
        .await?
        .try_get(0)?;
    let others: f64 = tx
        .query_one(
            "SELECT coalesce(sum(committed_usd), 0)::double precision FROM leases \
             WHERE budget_id = $1 AND period_start = $2 AND host <> $3",
            &[&req.budget_id, &req.period_start_ms, &req.host],
        )
        .await?
        .try_get(0)?;
    let previous = tx
        .query_opt(
            "SELECT seq, granted_usd, committed_usd, used_usd, burn_usd_per_s, updated_ms, \
             expires_ms FROM leases WHERE budget_id = $1 AND period_start = $2 AND host = $3",
            &[&req.budget_id, &req.period_start_ms, &req.host],
        )
        .await?
        .map(|r| lease_at(&r, 0))
        .transpose()?;
    let l = req.grant(base, others, previous);
    tx.execute(
        "INSERT INTO leases (budget_id, period_start, host, seq, granted_usd, committed_usd, \
         used_usd, burn_usd_per_s, updated_ms, expires_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (budget_id, period_start, host) DO UPDATE SET seq = excluded.seq, \
         granted_usd = excluded.granted_usd, committed_usd = excluded.committed_usd, \
         used_usd = excluded.used_usd, burn_usd_per_s = excluded.burn_usd_per_s, \
         updated_ms = excluded.updated_ms, expires_ms = excluded.expires_ms",
        &[
            &req.budget_id,
            &req.period_start_ms,
            &req.host,
            &l.seq,
            &l.granted_usd,
            &l.committed_usd,
            &l.used_usd,
            &l.burn_usd_per_s,
            &l.updated_ms,
            &l.expires_ms,
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(l)
}

pub async fn committed(
    client: &Client,
    budget_id: &str,
    period_start_ms: i64,
) -> Result<(f64, f64), StoreError> {
    let base: Option<f64> = client
        .query_opt(
            "SELECT base_usd FROM lease_periods WHERE budget_id = $1 AND period_start = $2",
            &[&budget_id, &period_start_ms],
        )
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
    let sum: f64 = client
        .query_one(
            "SELECT coalesce(sum(committed_usd), 0)::double precision FROM leases \
             WHERE budget_id = $1 AND period_start = $2",
            &[&budget_id, &period_start_ms],
        )
        .await?
        .try_get(0)?;
    Ok((base.unwrap_or(0.0), sum))
}

/// Every host's lease of one budget's period, by host.
pub async fn list(
    client: &Client,
    budget_id: &str,
    period_start_ms: i64,
) -> Result<Vec<HostLease>, StoreError> {
    let rows = client
        .query(
            "SELECT host, seq, granted_usd, committed_usd, used_usd, burn_usd_per_s, \
             updated_ms, expires_ms FROM leases WHERE budget_id = $1 AND period_start = $2 \
             ORDER BY host",
            &[&budget_id, &period_start_ms],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(HostLease {
                host: r.try_get(0)?,
                lease: lease_at(r, 1)?,
            })
        })
        .collect()
}

/// A lease from the columns `seq, granted_usd, committed_usd, used_usd,
/// burn_usd_per_s, updated_ms, expires_ms` starting at column `first`.
fn lease_at(r: &tokio_postgres::Row, first: usize) -> Result<Lease, StoreError> {
    Ok(Lease {
        seq: r.try_get(first)?,
        granted_usd: r.try_get(first + 1)?,
        committed_usd: r.try_get(first + 2)?,
        used_usd: r.try_get(first + 3)?,
        burn_usd_per_s: r.try_get(first + 4)?,
        updated_ms: r.try_get(first + 5)?,
        expires_ms: r.try_get(first + 6)?,
    })
}
