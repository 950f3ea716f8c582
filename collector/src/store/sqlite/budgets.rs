//! The budget table of the SQLite store: plain functions over a connection,
//! called by `SqliteStore` (writes on the writer, reads on a reader).

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::domain::budgets::Budget;
use crate::domain::record::map_to_json;
use crate::store::rows::{BudgetRow, BUDGET_COLUMNS as COLUMNS};
use crate::store::StoreError;

/// `Ok(false)` when the id is taken.
pub(super) fn create(conn: &Connection, budget: &Budget) -> Result<bool, StoreError> {
    let inserted = conn.execute(
        "INSERT INTO budgets (id, scope, period, amount_usd, soft, hard) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO NOTHING",
        params![
            budget.id,
            map_to_json(&budget.scope),
            budget.period.as_str(),
            budget.amount_usd,
            budget.soft,
            budget.hard
        ],
    )?;
    Ok(inserted == 1)
}

/// `Ok(false)` when there is no budget with this id.
pub(super) fn replace(conn: &Connection, budget: &Budget) -> Result<bool, StoreError> {
    let updated = conn.execute(
        "UPDATE budgets SET scope = ?2, period = ?3, amount_usd = ?4, soft = ?5, hard = ?6 \
         WHERE id = ?1",
        params![
            budget.id,
            map_to_json(&budget.scope),
            budget.period.as_str(),
            budget.amount_usd,
            budget.soft,
            budget.hard
        ],
    )?;
    Ok(updated == 1)
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
    })
}
