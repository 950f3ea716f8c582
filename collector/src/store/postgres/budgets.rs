//! The budget table of the PostgreSQL store (same rules as SQLite's).
//! Spend comes from the trait's default `spend_usd` (one usage query).

use tokio_postgres::{Client, Row};

use crate::domain::budgets::Budget;
use crate::domain::record::map_to_json;
use crate::store::rows::{budget_alerts_json, BudgetRow, BUDGET_COLUMNS as COLUMNS};
use crate::store::StoreError;

/// `Ok(false)` when the id is taken.
pub async fn create(client: &Client, b: &Budget) -> Result<bool, StoreError> {
    write(
        client,
        "INSERT INTO budgets (id, scope, period, amount_usd, soft, hard, alerts, enforce) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
        b,
    )
    .await
}

/// `Ok(false)` when there is no budget with this id.
pub async fn replace(client: &Client, b: &Budget) -> Result<bool, StoreError> {
    write(
        client,
        "UPDATE budgets SET scope = $2, period = $3, amount_usd = $4, soft = $5, hard = $6, \
         alerts = $7, enforce = $8 WHERE id = $1",
        b,
    )
    .await
}

/// Runs `sql` with the budget's columns as $1..$7; whether one row changed.
async fn write(client: &Client, sql: &str, b: &Budget) -> Result<bool, StoreError> {
    let changed = client
        .execute(
            sql,
            &[
                &b.id,
                &map_to_json(&b.scope),
                &b.period.as_str(),
                &b.amount_usd,
                &b.soft,
                &b.hard,
                &budget_alerts_json(b),
                &b.enforce.as_str(),
            ],
        )
        .await?;
    Ok(changed == 1)
}

pub async fn delete(client: &Client, id: &str) -> Result<bool, StoreError> {
    Ok(client
        .execute("DELETE FROM budgets WHERE id = $1", &[&id])
        .await?
        == 1)
}

pub async fn get(client: &Client, id: &str) -> Result<Option<Budget>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM budgets WHERE id = $1");
    client
        .query_opt(&sql, &[&id])
        .await?
        .map(|row| decode(&row))
        .transpose()
}

pub async fn list(client: &Client) -> Result<Vec<Budget>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM budgets ORDER BY id");
    client.query(&sql, &[]).await?.iter().map(decode).collect()
}

fn decode(row: &Row) -> Result<Budget, StoreError> {
    BudgetRow {
        id: row.try_get(0)?,
        scope: row.try_get(1)?,
        period: row.try_get(2)?,
        amount_usd: row.try_get(3)?,
        soft: row.try_get(4)?,
        hard: row.try_get(5)?,
        alerts: row.try_get(6)?,
        enforce: row.try_get(7)?,
    }
    .decode()
}
