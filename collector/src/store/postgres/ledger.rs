//! GL accounts and closed months (SPEC §11) in PostgreSQL (same rules as
//! SQLite's `ledger.rs`).

use deadpool_postgres::Client;
use tokio_postgres::Row;

use crate::domain::finops::chargeback::{ChargebackLine, ClosedMonth, GlAccount, LineSums};
use crate::store::StoreError;

/// Sets a cost center's account; whether it was new.
pub async fn put_gl_account(client: &Client, a: &GlAccount) -> Result<bool, StoreError> {
    // `xmax = 0` only on a row this statement inserted.
    let row = client
        .query_one(
            "INSERT INTO gl_accounts (cost_center, gl_account, updated_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (cost_center) DO UPDATE SET gl_account = excluded.gl_account, \
             updated_ms = excluded.updated_ms RETURNING (xmax = 0)",
            &[&a.cost_center, &a.gl_account, &a.updated_ms],
        )
        .await?;
    Ok(row.get(0))
}

pub async fn gl_accounts(client: &Client) -> Result<Vec<GlAccount>, StoreError> {
    let rows = client
        .query(
            "SELECT cost_center, gl_account, updated_ms FROM gl_accounts ORDER BY cost_center",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| GlAccount {
            cost_center: r.get(0),
            gl_account: r.get(1),
            updated_ms: r.get(2),
        })
        .collect())
}

/// Books `lines` for `month` in one transaction; `Ok(false)`: already closed.
pub async fn close_month(
    client: &mut Client,
    month: &ClosedMonth,
    lines: &[ChargebackLine],
) -> Result<bool, StoreError> {
    let tx = client.transaction().await?;
    let inserted = tx
        .execute(
            "INSERT INTO closed_months (month, closed_ms) VALUES ($1, $2) \
             ON CONFLICT (month) DO NOTHING",
            &[&month.month, &month.closed_ms],
        )
        .await?;
    if inserted == 0 {
        return Ok(false);
    }
    let stmt = tx
        .prepare(
            "INSERT INTO closed_month_lines (month, usage_month, cost_center, gl_account, team, \
             project, requests, input_tokens, output_tokens, cost_usd) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .await?;
    for l in lines {
        let usage_month = l.adjusts.clone().unwrap_or_else(|| month.month.clone());
        tx.execute(
            &stmt,
            &[
                &month.month,
                &usage_month,
                &l.key.0,
                &l.gl_account,
                &l.key.1,
                &l.key.2,
                &l.sums.requests,
                &l.sums.input_tokens,
                &l.sums.output_tokens,
                &l.sums.cost_usd,
            ],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(true)
}

pub async fn closed_months(client: &Client) -> Result<Vec<ClosedMonth>, StoreError> {
    let rows = client
        .query(
            "SELECT month, closed_ms FROM closed_months ORDER BY month",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ClosedMonth {
            month: r.get(0),
            closed_ms: r.get(1),
        })
        .collect())
}

fn booked_line(r: &Row) -> ChargebackLine {
    let month: String = r.get(0);
    let usage_month: String = r.get(1);
    ChargebackLine {
        adjusts: (usage_month != month).then_some(usage_month),
        month,
        key: (r.get(2), r.get(4), r.get(5)),
        gl_account: r.get(3),
        sums: LineSums {
            requests: r.get(6),
            input_tokens: r.get(7),
            output_tokens: r.get(8),
            cost_usd: r.get(9),
        },
    }
}

/// Every booked line of every closed month, by month then insertion order.
pub async fn booked_lines(client: &Client) -> Result<Vec<ChargebackLine>, StoreError> {
    let rows = client
        .query(
            "SELECT month, usage_month, cost_center, gl_account, team, project, requests, \
             input_tokens, output_tokens, cost_usd FROM closed_month_lines \
             ORDER BY month, line_id",
            &[],
        )
        .await?;
    Ok(rows.iter().map(booked_line).collect())
}
