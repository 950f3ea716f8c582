//! The embedded SQLite store: one file, WAL, one writer connection, a few
//! reader connections, one transaction per batch.
//!
//! rusqlite is blocking, so every call runs in `spawn_blocking` and the async
//! runtime never waits on disk.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OpenFlags};

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
#[path = "sqlite_chunks.rs"]
mod chunks;
#[path = "sqlite_ingest.rs"]
mod ingest;
#[path = "sqlite_records.rs"]
mod records;
#[path = "sqlite_rollup.rs"]
mod rollup;
#[path = "sqlite_seal.rs"]
mod seal;
#[path = "sqlite_series.rs"]
mod series;
#[path = "sqlite_spans.rs"]
mod spans;

const SCHEMA: &str = include_str!("sqlite_schema.sql");
/// Reader connections kept open between queries.
const MAX_IDLE_READERS: usize = 4;

const SELECT_ALL_SERIES: &str = "SELECT id, key_id, tags, model, provider, operation FROM series";

/// The single writer connection and the series ids it has already resolved.
struct Writer {
    conn: Connection,
    series: series::SeriesCache,
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
        // The b-tree pages ingest touches (tails of the record table and
        // id index, the current hours' rollup rows) stay in memory.
        writer.pragma_update(None, "cache_size", -262_144)?; // 256 MiB
                                                             // Checkpoint less often: fewer rewrites of the same hot pages.
        writer.pragma_update(None, "wal_autocheckpoint", 16_384)?; // pages
                                                                   // The bundled SQLite enforces foreign keys by default; every series
                                                                   // id the writer stores was resolved from `series` in the same
                                                                   // transaction, so the lookup per row and per rollup row (~2,000
                                                                   // instructions per record) would only cost time.
        writer.pragma_update(None, "foreign_keys", false)?;
        // Room for every statement ingest prepares (5 chunk sizes for each of
        // records, hourly and daily rows among them), so none is evicted and
        // prepared again per batch.
        writer.set_prepared_statement_cache_capacity(32);
        writer.busy_timeout(std::time::Duration::from_secs(5))?;
        ensure_schema(&writer, path)?;
        Ok(Self {
            inner: Arc::new(Inner {
                writer: Mutex::new(Writer {
                    conn: writer,
                    series: series::SeriesCache::default(),
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
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let (answer, answered) = tokio::sync::oneshot::channel();
            tokio::task::spawn_blocking(move || {
                let result = insert_blocking(&inner, &records);
                // Answer before freeing the batch: freeing its ~25
                // allocations per record costs ~4,200 instructions per
                // record (measured), which the caller need not wait for. A
                // caller that went away is no error here.
                answer.send(result).ok();
                drop(records);
            });
            answered
                .await
                .map_err(|_| StoreError(String::from("store task failed")))?
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

/// The blocking part of an ingest up to its answer. Never inlined so that a
/// profiler can count exactly this (e.g. callgrind
/// `--toggle-collect='*sqlite::insert_blocking'`); one call per batch.
#[inline(never)]
fn insert_blocking(inner: &Inner, records: &[PricedRecord]) -> Result<BatchOutcome, StoreError> {
    let mut writer = inner.writer()?;
    let result = ingest::insert_batch(&mut writer, records);
    if result.is_err() {
        // Series ids resolved in a rolled-back transaction may not exist.
        writer.series.clear();
    }
    result
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
    let mut fold = |series_id: i64, ms: i64, sums: Sums| {
        partials
            .entry((series_id, ms.div_euclid(DAY_MS)))
            .or_default()
            .add(&sums);
    };
    // One snapshot for every statement of the answer.
    let snapshot = conn.unchecked_transaction()?;
    let sealed_before = seal::sealed_before(&snapshot)?.unwrap_or(i64::MIN);
    for (source, from, to) in plan_segments(query.from_ms, query.to_ms) {
        match source {
            Source::Raw => spans::scan_raw(&snapshot, from, to, &mut fold)?,
            Source::Hourly => rollup::HOURLY.scan(&snapshot, from, to, &mut fold)?,
            Source::Daily => {
                // Sealed days from the daily rollup, the rest from the hourly.
                let split = sealed_before.max(from).min(to);
                if from < split {
                    rollup::DAILY.scan(&snapshot, from, split, &mut fold)?;
                }
                if split < to {
                    rollup::HOURLY.scan(&snapshot, split, to, &mut fold)?;
                }
            }
        }
    }
    let series = load_series(&snapshot)?;
    drop(snapshot); // read-only: ending it is enough
    group_partials(query, &partials, &series)
}

/// Bumped whenever `sqlite_schema.sql` changes incompatibly. A file written by
/// another schema version is refused with a clear message rather than failing
/// later on its first insert (`CREATE TABLE IF NOT EXISTS` would keep old tables).
const SCHEMA_VERSION: i64 = 3;

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
