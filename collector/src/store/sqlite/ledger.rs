//! GL accounts and closed months (SPEC §11) in SQLite: plain functions over
//! a connection, called by `SqliteStore` (writes on the writer, reads on a
//! reader).

use rusqlite::{params, Connection};

use crate::domain::finops::chargeback::{ChargebackLine, ClosedMonth, GlAccount, LineSums};
use crate::store::StoreError;

/// Sets a cost center's account; whether it was new.
pub(super) fn put_gl_account(conn: &Connection, a: &GlAccount) -> Result<bool, StoreError> {
    let tx = conn.unchecked_transaction()?;
    let existed: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM gl_accounts WHERE cost_center = ?1)",
        params![a.cost_center],
        |r| r.get(0),
    )?;
    tx.execute(
        "INSERT INTO gl_accounts (cost_center, gl_account, updated_ms) VALUES (?1, ?2, ?3) \
         ON CONFLICT (cost_center) DO UPDATE SET gl_account = excluded.gl_account, \
         updated_ms = excluded.updated_ms",
        params![a.cost_center, a.gl_account, a.updated_ms],
    )?;
    tx.commit()?;
    Ok(!existed)
}

pub(super) fn gl_accounts(conn: &Connection) -> Result<Vec<GlAccount>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT cost_center, gl_account, updated_ms FROM gl_accounts ORDER BY cost_center",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok(GlAccount {
                cost_center: r.get(0)?,
                gl_account: r.get(1)?,
                updated_ms: r.get(2)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Books `lines` for `month` in one transaction; `Ok(false)`: the month was
/// already closed (nothing changed).
pub(super) fn close_month(
    conn: &Connection,
    month: &ClosedMonth,
    lines: &[ChargebackLine],
) -> Result<bool, StoreError> {
    let tx = conn.unchecked_transaction()?;
    let inserted = tx.execute(
        "INSERT INTO closed_months (month, closed_ms) VALUES (?1, ?2) \
         ON CONFLICT (month) DO NOTHING",
        params![month.month, month.closed_ms],
    )?;
    if inserted == 0 {
        return Ok(false);
    }
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO closed_month_lines (month, usage_month, cost_center, gl_account, team, \
             project, requests, input_tokens, output_tokens, cost_usd) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        for l in lines {
            stmt.execute(params![
                month.month,
                l.adjusts.as_deref().unwrap_or(&month.month),
                l.key.0,
                l.gl_account,
                l.key.1,
                l.key.2,
                l.sums.requests,
                l.sums.input_tokens,
                l.sums.output_tokens,
                l.sums.cost_usd
            ])?;
        }
    }
    tx.commit()?;
    Ok(true)
}

pub(super) fn closed_months(conn: &Connection) -> Result<Vec<ClosedMonth>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT month, closed_ms FROM closed_months ORDER BY month")?;
    let rows = stmt
        .query_map([], |r| {
            Ok(ClosedMonth {
                month: r.get(0)?,
                closed_ms: r.get(1)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Every booked line of every closed month, by month then insertion order.
pub(super) fn booked_lines(conn: &Connection) -> Result<Vec<ChargebackLine>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT month, usage_month, cost_center, gl_account, team, project, requests, \
         input_tokens, output_tokens, cost_usd FROM closed_month_lines ORDER BY month, rowid",
    )?;
    let rows = stmt
        .query_map([], |r| {
            let month: String = r.get(0)?;
            let usage_month: String = r.get(1)?;
            Ok(ChargebackLine {
                adjusts: (usage_month != month).then_some(usage_month),
                month,
                key: (r.get(2)?, r.get(4)?, r.get(5)?),
                gl_account: r.get(3)?,
                sums: LineSums {
                    requests: r.get(6)?,
                    input_tokens: r.get(7)?,
                    output_tokens: r.get(8)?,
                    cost_usd: r.get(9)?,
                },
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}
