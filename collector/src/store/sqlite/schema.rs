//! The SQLite schema (`schema.sql`) and its version check.

use rusqlite::Connection;

use crate::store::StoreError;

const SCHEMA: &str = include_str!("schema.sql");

/// Upgrades of an existing file, append only: (version reached, SQL run
/// before `schema.sql`). A file at an older version runs every later step in
/// order, in one transaction, then `schema.sql` (`CREATE … IF NOT EXISTS`
/// adds the tables a step did not alter), so a feature that only adds tables
/// appends `(n, "")` and its tables to `schema.sql`. A file of a version not
/// in the chain is refused with a clear message rather than failing later on
/// its first insert.
const UPGRADES: &[(i64, &str)] = &[
    (4, MIGRATE_3_TO_4),
    // Virtual keys (CONTRACTS §8); tables only.
    (5, ""),
    // Access (CONTRACTS §9): tokens, audit log, overrides; tables only.
    (6, ""),
    // 7: retention (`retention_state`), a new table only.
    (7, ""),
    // 8: the ledger (GL accounts, closed months and their booked lines).
    (8, ""),
    // Alerts, webhooks and their outbox (CONTRACTS §10); tables only.
    (9, ""),
    // 10: per-budget alert tiers, the z-score of anomaly alerts.
    (10, MIGRATE_9_TO_10),
    // 11: strict budgets (SPEC §6): `budgets.enforce`, and the lease tables.
    (
        11,
        "ALTER TABLE budgets ADD COLUMN enforce TEXT NOT NULL DEFAULT 'flags';",
    ),
    // 12: reconciliation (SPEC §13): price changes, discounts, provider
    // usage exports; tables only.
    (12, ""),
];

/// The oldest version a file can be upgraded from.
const OLDEST_UPGRADABLE: i64 = 3;

/// The version this collector writes: the last step's.
pub(super) const SCHEMA_VERSION: i64 = UPGRADES[UPGRADES.len() - 1].0;

/// Version 3 → 4: the rollups count refused calls (`denied`). Existing rows
/// get the count of their stored records whose `error` is a refusal code
/// (0 for data written before the filter recorded refusals), read in one pass
/// over the records; the decoded views are recreated by `schema.sql`.
const MIGRATE_3_TO_4: &str = "
ALTER TABLE usage_hourly ADD COLUMN denied INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_daily ADD COLUMN denied INTEGER NOT NULL DEFAULT 0;
DROP VIEW IF EXISTS usage_hourly_rows;
DROP VIEW IF EXISTS usage_daily_rows;
CREATE TEMP TABLE denied_hours AS
    SELECT (ts_ms - ((ts_ms % 3600000) + 3600000) % 3600000) AS hour_ms, series_id,
           count(*) AS n
    FROM records
    WHERE error IN ('invalid_api_key', 'rate_limit_exceeded', 'budget_exceeded',
                    'caps_unavailable')
    GROUP BY 1, 2;
UPDATE usage_hourly SET denied = d.n FROM denied_hours AS d
    WHERE usage_hourly.bucket = (d.hour_ms / 3600000) * 4294967296 + d.series_id;
UPDATE usage_daily SET denied = d.n FROM (
        SELECT (hour_ms - ((hour_ms % 86400000) + 86400000) % 86400000) AS day_ms, series_id,
               sum(n) AS n
        FROM denied_hours GROUP BY 1, 2) AS d
    WHERE usage_daily.bucket = (d.day_ms / 86400000) * 4294967296 + d.series_id;
DROP TABLE denied_hours;
";

/// Version 9 → 10: `budgets.alerts` (the tiers as JSON; NULL reads as the
/// defaults) and `alerts.z_score` (anomaly alerts). A file older than 9 has
/// no `alerts` table yet when this runs (`schema.sql` runs after the steps),
/// so it is created here as version 9 had it, then altered.
const MIGRATE_9_TO_10: &str = "
ALTER TABLE budgets ADD COLUMN alerts TEXT;
CREATE TABLE IF NOT EXISTS alerts (
    id           TEXT PRIMARY KEY,
    budget_id    TEXT NOT NULL,
    level        TEXT NOT NULL,
    kind         TEXT NOT NULL,
    scope        TEXT NOT NULL,
    threshold    REAL NOT NULL,
    spend_usd    REAL NOT NULL,
    amount_usd   REAL NOT NULL,
    forecast_usd REAL NOT NULL,
    period_start INTEGER NOT NULL,
    at           INTEGER NOT NULL,
    acked_at     INTEGER,
    acked_by     TEXT,
    escalated_at INTEGER,
    UNIQUE (budget_id, level, period_start)
);
ALTER TABLE alerts ADD COLUMN z_score REAL;
";

/// Creates the tables of a new file, upgrades an older one step by step,
/// refuses a file of a version outside the chain.
pub(super) fn ensure(conn: &Connection, path: &str) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let has_tables: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'records')",
        [],
        |r| r.get(0),
    )?;
    if has_tables && (OLDEST_UPGRADABLE..SCHEMA_VERSION).contains(&version) {
        let tx = conn.unchecked_transaction()?;
        for (_, sql) in UPGRADES.iter().filter(|(to, _)| *to > version) {
            tx.execute_batch(sql)?;
        }
        tx.execute_batch(SCHEMA)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        tx.commit()?;
        return Ok(());
    }
    if has_tables && version != SCHEMA_VERSION {
        return Err(StoreError::invalid(format!(
            "{path} was written by schema version {version}, this collector uses {SCHEMA_VERSION}: \
             move the file away (or point AISPEND_DATABASE_URL elsewhere) and start again"
        )));
    }
    conn.execute_batch(SCHEMA)?;
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    #[test]
    fn a_file_of_another_schema_version_is_refused_with_advice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("old.db");
        let path = path.to_str().expect("utf-8 path");
        {
            let old = Connection::open(path).expect("open");
            old.execute_batch(
                "CREATE TABLE records (id TEXT PRIMARY KEY); PRAGMA user_version = 1;",
            )
            .expect("old schema");
        }
        let err = SqliteStore::open(path)
            .err()
            .expect("old schema must be refused");
        assert!(err.message().contains("schema version 1"), "{err}");
        assert!(err.message().contains("move the file away"), "{err}");
        // A fresh file gets the current version and opens again.
        let fresh = dir.path().join("fresh.db");
        let fresh = fresh.to_str().expect("utf-8 path");
        drop(SqliteStore::open(fresh).expect("fresh"));
        assert!(SqliteStore::open(fresh).is_ok());
    }
}
