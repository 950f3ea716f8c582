//! Versioned schema migrations, run at start-up by every replica.
//!
//! All of it happens in one transaction holding a transaction-scoped advisory
//! lock, so collectors starting at the same moment queue up: the first applies
//! what is missing, the others then find every version recorded and do nothing.

use std::collections::BTreeSet;

use deadpool_postgres::Client;

use crate::store::StoreError;

/// Advisory lock id for migrations ("aispend" in ASCII). Database-wide: stores
/// in different schemas of one database also take turns, which only costs a
/// few milliseconds at start-up.
const MIGRATION_LOCK: i64 = 0x0061_6973_7065_6e64;

/// (version, name, SQL). Append only: a shipped migration never changes.
pub(super) const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../../../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        "budgets",
        include_str!("../../../migrations/postgres/0002_budgets.sql"),
    ),
    (
        3,
        "narrow_records",
        include_str!("../../../migrations/postgres/0003_narrow_records.sql"),
    ),
    (
        4,
        "denied",
        include_str!("../../../migrations/postgres/0004_denied.sql"),
    ),
    (
        5,
        "keys",
        include_str!("../../../migrations/postgres/0005_keys.sql"),
    ),
    (
        6,
        "access",
        include_str!("../../../migrations/postgres/0006_access.sql"),
    ),
    (
        7,
        "retention",
        include_str!("../../../migrations/postgres/0007_retention.sql"),
    ),
    (
        8,
        "ledger",
        include_str!("../../../migrations/postgres/0008_ledger.sql"),
    ),
    (
        9,
        "alerts",
        include_str!("../../../migrations/postgres/0009_alerts.sql"),
    ),
    (
        10,
        "alert tiers and anomalies",
        include_str!("../../../migrations/postgres/0010_alert_tiers.sql"),
    ),
    (
        11,
        "strict_budgets",
        include_str!("../../../migrations/postgres/0011_strict_budgets.sql"),
    ),
    (
        12,
        "reconciliation",
        include_str!("../../../migrations/postgres/0012_reconciliation.sql"),
    ),
];

const CREATE_LEDGER: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (\
     version integer PRIMARY KEY, name text NOT NULL, \
     applied_at timestamptz NOT NULL DEFAULT now())";

/// Applies every migration not yet recorded; returns the versions applied now.
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>, StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(CREATE_LEDGER).await?;
    let applied: BTreeSet<i32> = tx
        .query("SELECT version FROM schema_migrations", &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let known = MIGRATIONS.last().map_or(0, |(v, _, _)| *v);
    if let Some(newer) = applied.iter().find(|v| **v > known) {
        return Err(StoreError::internal(format!(
            "database schema is at migration {newer}, newer than this collector \
             (knows up to {known}); upgrade the collector"
        )));
    }
    let mut ran = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        tx.batch_execute(sql).await.map_err(|e| {
            StoreError::from(e).context(|m| format!("migration {version} ({name}) failed: {m}"))
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await?;
        ran.push(*version);
    }
    tx.commit().await?;
    Ok(ran)
}
