//! Leases of strict budgets in the SQLite store (`domain/leases`). A grant
//! is one IMMEDIATE transaction on the writer: reads and the write of every
//! grant of the database are serialized, so two grants never both count
//! the same room.

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use crate::domain::leases::{HostLease, Lease, LeaseRequest};
use crate::store::StoreError;

pub(super) fn grant(conn: &Connection, req: &LeaseRequest) -> Result<Lease, StoreError> {
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT INTO lease_periods (budget_id, period_start, base_usd) VALUES (?1, ?2, ?3) \
         ON CONFLICT DO NOTHING",
        params![req.budget_id, req.period_start_ms, req.spend_usd],
    )?;
    let base: f64 = tx.query_row(
        "SELECT base_usd FROM lease_periods WHERE budget_id = ?1 AND period_start = ?2",
        params![req.budget_id, req.period_start_ms],
        |r| r.get(0),
    )?;
    let others: f64 = tx.query_row(
        "SELECT coalesce(sum(committed_usd), 0) FROM leases \
         WHERE budget_id = ?1 AND period_start = ?2 AND host <> ?3",
        params![req.budget_id, req.period_start_ms, req.host],
        |r| r.get(0),
    )?;
    let previous = tx
        .query_row(
            "SELECT seq, granted_usd, committed_usd, used_usd, burn_usd_per_s, updated_ms, \
             expires_ms FROM leases WHERE budget_id = ?1 AND period_start = ?2 AND host = ?3",
            params![req.budget_id, req.period_start_ms, req.host],
            |r| lease_at(r, 0),
        )
        .optional()?;
    let l = req.grant(base, others, previous);
    tx.execute(
        "INSERT INTO leases (budget_id, period_start, host, seq, granted_usd, committed_usd, \
         used_usd, burn_usd_per_s, updated_ms, expires_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
         ON CONFLICT (budget_id, period_start, host) DO UPDATE SET seq = excluded.seq, \
         granted_usd = excluded.granted_usd, committed_usd = excluded.committed_usd, \
         used_usd = excluded.used_usd, burn_usd_per_s = excluded.burn_usd_per_s, \
         updated_ms = excluded.updated_ms, expires_ms = excluded.expires_ms",
        params![
            req.budget_id,
            req.period_start_ms,
            req.host,
            l.seq,
            l.granted_usd,
            l.committed_usd,
            l.used_usd,
            l.burn_usd_per_s,
            l.updated_ms,
            l.expires_ms
        ],
    )?;
    tx.commit()?;
    Ok(l)
}

/// Σ committed and the base of one budget's period (for its answer and tests).
pub(super) fn committed(
    conn: &Connection,
    budget_id: &str,
    period_start_ms: i64,
) -> Result<(f64, f64), StoreError> {
    let base: Option<f64> = conn
        .query_row(
            "SELECT base_usd FROM lease_periods WHERE budget_id = ?1 AND period_start = ?2",
            params![budget_id, period_start_ms],
            |r| r.get(0),
        )
        .optional()?;
    let sum: f64 = conn.query_row(
        "SELECT coalesce(sum(committed_usd), 0) FROM leases \
         WHERE budget_id = ?1 AND period_start = ?2",
        params![budget_id, period_start_ms],
        |r| r.get(0),
    )?;
    Ok((base.unwrap_or(0.0), sum))
}

/// Every host's lease of one budget's period, by host.
pub(super) fn list(
    conn: &Connection,
    budget_id: &str,
    period_start_ms: i64,
) -> Result<Vec<HostLease>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT host, seq, granted_usd, committed_usd, used_usd, burn_usd_per_s, updated_ms, \
         expires_ms FROM leases WHERE budget_id = ?1 AND period_start = ?2 ORDER BY host",
    )?;
    let rows = stmt.query_map(params![budget_id, period_start_ms], |r| {
        Ok(HostLease {
            host: r.get(0)?,
            lease: lease_at(r, 1)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// A lease from the columns `seq, granted_usd, committed_usd, used_usd,
/// burn_usd_per_s, updated_ms, expires_ms` starting at column `first`.
fn lease_at(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Lease> {
    Ok(Lease {
        seq: r.get(first)?,
        granted_usd: r.get(first + 1)?,
        committed_usd: r.get(first + 2)?,
        used_usd: r.get(first + 3)?,
        burn_usd_per_s: r.get(first + 4)?,
        updated_ms: r.get(first + 5)?,
        expires_ms: r.get(first + 6)?,
    })
}
