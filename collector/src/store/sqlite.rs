//! The embedded SQLite store: one file, WAL, one writer connection, a few
//! reader connections, one transaction per batch.
//!
//! rusqlite is blocking, so every call runs in `spawn_blocking` and the async
//! runtime never waits on disk.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{params, Connection, OpenFlags, Row};

use super::{
    group_partials, plan_segments, BatchOutcome, Series, Source, Store, StoreError, StoreFuture,
};
use crate::domain::aggregate::{Sums, UsageReport};
use crate::domain::budgets::Budget;
use crate::domain::record::PricedRecord;
use crate::domain::time::DAY_MS;
use crate::domain::usage_query::UsageQuery;

#[path = "sqlite_budgets.rs"]
mod budgets;
#[path = "sqlite_ingest.rs"]
mod ingest;

const SCHEMA: &str = include_str!("sqlite_schema.sql");
/// Reader connections kept open between queries.
const MAX_IDLE_READERS: usize = 4;

const SELECT_ALL_SERIES: &str = "SELECT id, key_id, tags, model, provider, operation FROM series";

const SELECT_HOURLY: &str = "SELECT series_id, hour_ms, requests, errors, input_tokens, \
     cached_input_tokens, cache_write_input_tokens, output_tokens, reasoning_tokens, cost_usd, \
     unpriced_requests \
     FROM usage_hourly WHERE hour_ms >= ?1 AND hour_ms < ?2";

const SELECT_DAILY: &str = "SELECT series_id, day_ms, requests, errors, input_tokens, \
     cached_input_tokens, cache_write_input_tokens, output_tokens, reasoning_tokens, cost_usd, \
     unpriced_requests \
     FROM usage_daily WHERE day_ms >= ?1 AND day_ms < ?2";

const SELECT_RAW: &str = "SELECT series_id, ts_ms, 1, (status >= 400 OR error IS NOT NULL), \
     input_tokens, cached_input_tokens, cache_write_input_tokens, output_tokens, \
     reasoning_tokens, coalesce(cost_usd, 0.0), (cost_usd IS NULL) \
     FROM records WHERE ts_ms >= ?1 AND ts_ms < ?2";

/// The single writer connection and the series ids it has already resolved.
struct Writer {
    conn: Connection,
    series: HashMap<ingest::SeriesKey, i64>,
}

struct Inner {
    writer: Mutex<Writer>,
    readers: Mutex<Vec<Connection>>,
    path: String,
}
pub struct SqliteStore {
    inner: Arc<Inner>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and its directory.
    pub fn open(path: &str) -> Result<Self, StoreError> {
        if let Some(dir) = Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError(format!("cannot create directory {}: {e}", dir.display()))
            })?;
        }
        let writer = Connection::open(path)?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        // NORMAL in WAL mode: a crash loses at most the last transactions
        // since a checkpoint, never corrupts; far faster than FULL.
        writer.pragma_update(None, "synchronous", "NORMAL")?;
        // Ingest touches the id index at random; keep it in memory.
        writer.pragma_update(None, "cache_size", -262_144)?; // 256 MiB
                                                             // Checkpoint less often: fewer rewrites of the same hot index pages.
        writer.pragma_update(None, "wal_autocheckpoint", 16_384)?; // pages
        writer.busy_timeout(std::time::Duration::from_secs(5))?;
        ensure_schema(&writer, path)?;
        Ok(Self {
            inner: Arc::new(Inner {
                writer: Mutex::new(Writer {
                    conn: writer,
                    series: HashMap::new(),
                }),
                readers: Mutex::new(Vec::new()),
                path: path.to_owned(),
            }),
        })
    }

    /// Runs blocking SQLite work off the async runtime.
    fn blocking<T, F>(&self, work: F) -> StoreFuture<'_, T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || work(&inner))
                .await
                .map_err(|e| StoreError(format!("store task failed: {e}")))?
        })
    }
}

impl Inner {
    fn writer(&self) -> Result<MutexGuard<'_, Writer>, StoreError> {
        self.writer
            .lock()
            .map_err(|_| StoreError(String::from("writer connection poisoned")))
    }

    /// Borrows an idle reader connection (or opens one) for `work`.
    fn with_reader<T>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let idle = self.readers.lock().ok().and_then(|mut pool| pool.pop());
        let conn = match idle {
            Some(conn) => conn,
            None => {
                let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                let conn = Connection::open_with_flags(&self.path, flags)?;
                conn.busy_timeout(std::time::Duration::from_secs(5))?;
                conn
            }
        };
        let result = work(&conn);
        if let Ok(mut pool) = self.readers.lock() {
            if pool.len() < MAX_IDLE_READERS {
                pool.push(conn);
            }
        }
        result
    }
}

impl Store for SqliteStore {
    fn insert_batch(&self, records: Vec<PricedRecord>) -> StoreFuture<'_, BatchOutcome> {
        self.blocking(move |inner| {
            let mut writer = inner.writer()?;
            let result = ingest::insert_batch(&mut writer, &records);
            if result.is_err() {
                // Series ids resolved in a rolled-back transaction may not exist.
                writer.series.clear();
            }
            result
        })
    }

    fn usage(&self, query: UsageQuery) -> StoreFuture<'_, UsageReport> {
        self.blocking(move |inner| inner.with_reader(|conn| usage(conn, &query)))
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        self.blocking(|inner| {
            inner.with_reader(|conn| {
                conn.query_row("SELECT 1", [], |_| Ok(()))?;
                Ok(())
            })
        })
    }

    fn close(&self) -> StoreFuture<'_, ()> {
        self.blocking(|inner| {
            inner.readers.lock().map(|mut pool| pool.clear()).ok();
            // Fold the WAL back into the main file so the database is one
            // self-contained file after a clean shutdown.
            inner
                .writer()?
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            Ok(())
        })
    }

    fn create_budget(&self, budget: Budget) -> StoreFuture<'_, bool> {
        self.blocking(move |inner| budgets::create(&inner.writer()?.conn, &budget))
    }

    fn get_budget(&self, id: String) -> StoreFuture<'_, Option<Budget>> {
        self.blocking(move |inner| inner.with_reader(|conn| budgets::get(conn, &id)))
    }

    fn list_budgets(&self) -> StoreFuture<'_, Vec<Budget>> {
        self.blocking(|inner| inner.with_reader(budgets::list))
    }

    fn replace_budget(&self, budget: Budget) -> StoreFuture<'_, bool> {
        self.blocking(move |inner| budgets::replace(&inner.writer()?.conn, &budget))
    }

    fn delete_budget(&self, id: String) -> StoreFuture<'_, bool> {
        self.blocking(move |inner| budgets::delete(&inner.writer()?.conn, &id))
    }
}

fn load_series(conn: &Connection) -> Result<HashMap<i64, Series>, StoreError> {
    let mut stmt = conn.prepare_cached(SELECT_ALL_SERIES)?;
    let mut rows = stmt.query([])?;
    let mut all = HashMap::new();
    while let Some(row) = rows.next()? {
        let tags: String = row.get(2)?;
        let model: String = row.get(3)?;
        let series = Series {
            key_id: row.get(1)?,
            tags: serde_json::from_str(&tags)
                .map_err(|e| StoreError(format!("stored tags are not a JSON object: {e}")))?,
            model: (!model.is_empty()).then_some(model),
            provider: row.get(4)?,
            operation: row.get(5)?,
        };
        all.insert(row.get(0)?, series);
    }
    Ok(all)
}

/// Sums are first folded per (series, day) in integers, then each of those few
/// partials is grouped by the query's dimensions.
fn usage(conn: &Connection, query: &UsageQuery) -> Result<UsageReport, StoreError> {
    let mut partials: HashMap<(i64, i64), Sums> = HashMap::new();
    for (source, from, to) in plan_segments(query.from_ms, query.to_ms) {
        let sql = match source {
            Source::Raw => SELECT_RAW,
            Source::Hourly => SELECT_HOURLY,
            Source::Daily => SELECT_DAILY,
        };
        scan(conn, sql, from, to, &mut partials)?;
    }
    let series = load_series(conn)?;
    group_partials(query, &partials, &series)
}

/// Folds rows of `sql` (raw or rollup, same column layout) per (series, day).
fn scan(
    conn: &Connection,
    sql: &str,
    from: i64,
    to: i64,
    partials: &mut HashMap<(i64, i64), Sums>,
) -> Result<(), StoreError> {
    if from >= to {
        return Ok(());
    }
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params![from, to])?;
    while let Some(row) = rows.next()? {
        let series_id: i64 = row.get(0)?;
        let ms: i64 = row.get(1)?;
        partials
            .entry((series_id, ms.div_euclid(DAY_MS)))
            .or_default()
            .add(&sums_of(row)?);
    }
    Ok(())
}

fn sums_of(row: &Row<'_>) -> Result<Sums, rusqlite::Error> {
    Ok(Sums {
        requests: row.get(2)?,
        errors: row.get(3)?,
        input_tokens: row.get(4)?,
        cached_input_tokens: row.get(5)?,
        cache_write_input_tokens: row.get(6)?,
        output_tokens: row.get(7)?,
        reasoning_tokens: row.get(8)?,
        cost_usd: row.get(9)?,
        unpriced_requests: row.get(10)?,
    })
}

/// Bumped whenever `sqlite_schema.sql` changes incompatibly. A file written by
/// another schema version is refused with a clear message rather than failing
/// later on its first insert (`CREATE TABLE IF NOT EXISTS` would keep old tables).
const SCHEMA_VERSION: i64 = 2;

fn ensure_schema(conn: &Connection, path: &str) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let has_tables: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'records')",
        [],
        |r| r.get(0),
    )?;
    if has_tables && version != SCHEMA_VERSION {
        return Err(StoreError(format!(
            "{path} was written by schema version {version}, this collector uses {SCHEMA_VERSION}: \
             move the file away (or point AISPEND_DATABASE_URL elsewhere) and start again"
        )));
    }
    conn.execute_batch(SCHEMA)?;
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    Ok(())
}

#[cfg(test)]
mod schema_version_tests {
    use super::*;

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
        assert!(err.0.contains("schema version 1"), "{err}");
        assert!(err.0.contains("move the file away"), "{err}");
        // A fresh file gets the current version and opens again.
        let fresh = dir.path().join("fresh.db");
        let fresh = fresh.to_str().expect("utf-8 path");
        drop(SqliteStore::open(fresh).expect("fresh"));
        assert!(SqliteStore::open(fresh).is_ok());
    }
}
