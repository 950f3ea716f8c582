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
            |r| {
                Ok(Lease {
                    seq: r.get(0)?,
                    granted_usd: r.get(1)?,
                    committed_usd: r.get(2)?,
                    used_usd: r.get(3)?,
                    burn_usd_per_s: r.get(4)?,
                    updated_ms: r.get(5)?,
                    expires_ms: r.get(6)?,
                })
            },
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
            lease: Lease {
                seq: r.get(1)?,
                granted_usd: r.get(2)?,
                committed_usd: r.get(3)?,
                used_usd: r.get(4)?,
                burn_usd_per_s: r.get(5)?,
                updated_ms: r.get(6)?,
                expires_ms: r.get(7)?,
            },
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}
