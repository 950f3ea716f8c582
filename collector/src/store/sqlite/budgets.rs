//! The budget table of the SQLite store: plain functions over a connection,
//! called by `SqliteStore` (writes on the writer, reads on a reader).

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::domain::budgets::Budget;
use crate::domain::record::map_to_json;
use crate::store::rows::{budget_alerts_json, BudgetRow, BUDGET_COLUMNS as COLUMNS};
use crate::store::StoreError;

/// `Ok(false)` when the id is taken.
pub(super) fn create(conn: &Connection, budget: &Budget) -> Result<bool, StoreError> {
    write(
        conn,
        "INSERT INTO budgets (id, scope, period, amount_usd, soft, hard, alerts, enforce) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (id) DO NOTHING",
        budget,
    )
}

/// `Ok(false)` when there is no budget with this id.
pub(super) fn replace(conn: &Connection, budget: &Budget) -> Result<bool, StoreError> {
    write(
        conn,
        "UPDATE budgets SET scope = ?2, period = ?3, amount_usd = ?4, soft = ?5, hard = ?6, \
         alerts = ?7, enforce = ?8 WHERE id = ?1",
        budget,
    )
}

/// Runs `sql` with the budget's columns as ?1..?7; whether one row changed.
fn write(conn: &Connection, sql: &str, budget: &Budget) -> Result<bool, StoreError> {
    let changed = conn.execute(
        sql,
        params![
            budget.id,
            map_to_json(&budget.scope),
            budget.period.as_str(),
            budget.amount_usd,
            budget.soft,
            budget.hard,
            budget_alerts_json(budget),
            budget.enforce.as_str()
        ],
    )?;
    Ok(changed == 1)
}

pub(super) fn delete(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    Ok(conn.execute("DELETE FROM budgets WHERE id = ?1", params![id])? == 1)
}

pub(super) fn get(conn: &Connection, id: &str) -> Result<Option<Budget>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM budgets WHERE id = ?1");
    let row = conn
        .prepare_cached(&sql)?
        .query_row(params![id], raw_budget)
        .optional()?;
    row.map(BudgetRow::decode).transpose()
}

pub(super) fn list(conn: &Connection) -> Result<Vec<Budget>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM budgets ORDER BY id");
    let mut stmt = conn.prepare_cached(&sql)?;
    let raws = stmt
        .query_map([], raw_budget)?
        .collect::<Result<Vec<_>, _>>()?;
    raws.into_iter().map(BudgetRow::decode).collect()
}

fn raw_budget(row: &Row<'_>) -> Result<BudgetRow, rusqlite::Error> {
    Ok(BudgetRow {
        id: row.get(0)?,
        scope: row.get(1)?,
        period: row.get(2)?,
        amount_usd: row.get(3)?,
        soft: row.get(4)?,
        hard: row.get(5)?,
        alerts: row.get(6)?,
        enforce: row.get(7)?,
    })
}
