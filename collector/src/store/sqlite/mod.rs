//! The embedded SQLite store: one file, WAL, one writer connection, a few
//! reader connections, one transaction per batch.
//!
//! rusqlite is blocking, so every call runs in `spawn_blocking` and the async
//! runtime never waits on disk.
//!
//! Mirrors `store/postgres/`: `ingest.rs` (one batch: `series.rs`,
//! `records.rs`, `rollup.rs`, `spans.rs`, `seal.rs`), `query.rs` (usage),
//! `budgets.rs`, `retention.rs` (old raw records deleted), `schema.rs` (+ `schema.sql`) and `tests/` for what only
//! SQLite does; the behaviour every store shares is tested in `store/tests.rs`.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OpenFlags};

use super::{
    BatchOutcome, KeyWrite, Pricer, PricesAdded, Purged, Repriced, SaveKeys, Store, StoreError,
    StoreFuture,
};
use crate::domain::access::ApiToken;
use crate::domain::aggregate::UsageReport;
use crate::domain::alerts::Alert;
use crate::domain::audit::{AuditEntry, AuditQuery};
use crate::domain::budgets::Budget;
use crate::domain::finops::chargeback::{ChargebackLine, ClosedMonth, GlAccount};
use crate::domain::keys::Key;
use crate::domain::leases::{HostLease, Lease, LeaseRequest};
use crate::domain::overrides::{Approval, Override};
use crate::domain::pricing::book::PriceChanges;
use crate::domain::reconcile::import::{Import, ProviderLine};
use crate::domain::record::PricedRecord;
use crate::domain::usage_query::UsageQuery;
use crate::domain::webhooks::{Attempt, Delivery, Webhook};

mod access;
mod alerts;
mod budgets;
mod chunks;
mod ingest;
mod keys;
mod leases;
mod ledger;
mod prices;
mod query;
mod records;
mod retention;
mod rollup;
mod schema;
mod seal;
mod series;
mod spans;
#[cfg(test)]
mod tests;

/// Reader connections kept open between queries.
const MAX_IDLE_READERS: usize = 4;

/// The single writer connection and the series ids it has already resolved.
struct Writer {
    conn: Connection,
    series: series::SeriesCache,
}

/// What the store's blocking tasks share.
struct Inner {
    writer: Mutex<Writer>,
    readers: Mutex<Vec<Connection>>,
    path: String,
}

/// The SQLite `Store`: cheap to clone-share behind `Arc<dyn Store>`.
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
                StoreError::internal(format!("cannot create directory {}: {e}", dir.display()))
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
        schema::ensure(&writer, path)?;
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
                .map_err(|e| StoreError::internal(format!("store task failed: {e}")))?
        })
    }
}

impl Inner {
    fn writer(&self) -> Result<MutexGuard<'_, Writer>, StoreError> {
        self.writer
            .lock()
            .map_err(|_| StoreError::internal("writer connection poisoned"))
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
                .map_err(|_| StoreError::internal("store task failed"))?
        })
    }

    fn usage(&self, query: UsageQuery) -> StoreFuture<'_, UsageReport> {
        self.blocking(move |inner| inner.with_reader(|conn| query::usage(conn, &query)))
    }

    fn tag_keys(&self) -> StoreFuture<'_, Vec<String>> {
        self.blocking(|inner| inner.with_reader(query::tag_keys))
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        self.blocking(|inner| {
            inner.with_reader(|conn| {
                conn.query_row("SELECT 1", [], |_| Ok(()))?;
                Ok(())
            })
        })
    }

    fn purge_records(&self, before_ms: i64, limit: u32) -> StoreFuture<'_, Purged> {
        self.blocking(move |inner| retention::purge(&inner.writer()?.conn, before_ms, limit))
    }

    fn retention_horizon(&self) -> StoreFuture<'_, Option<i64>> {
        self.blocking(|inner| inner.with_reader(retention::horizon))
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

    fn create_token(&self, token: ApiToken) -> StoreFuture<'_, bool> {
        self.blocking(move |inner| access::create_token(&inner.writer()?.conn, &token))
    }

    fn list_tokens(&self) -> StoreFuture<'_, Vec<ApiToken>> {
        self.blocking(|inner| inner.with_reader(access::list_tokens))
    }

    fn revoke_token(&self, id: String, at_ms: i64) -> StoreFuture<'_, bool> {
        self.blocking(move |inner| access::revoke_token(&inner.writer()?.conn, &id, at_ms))
    }

    fn append_audit(&self, entry: AuditEntry) -> StoreFuture<'_, ()> {
        self.blocking(move |inner| access::append_audit(&inner.writer()?.conn, &entry))
    }

    fn list_audit(&self, query: AuditQuery) -> StoreFuture<'_, Vec<AuditEntry>> {
        self.blocking(move |inner| inner.with_reader(|conn| access::list_audit(conn, &query)))
    }

    fn create_override(&self, o: Override) -> StoreFuture<'_, ()> {
        self.blocking(move |inner| access::create_override(&inner.writer()?.conn, &o))
    }

    fn list_overrides(&self) -> StoreFuture<'_, Vec<Override>> {
        self.blocking(|inner| inner.with_reader(access::list_overrides))
    }

    fn add_override_approval(&self, id: String, approval: Approval) -> StoreFuture<'_, bool> {
        self.blocking(move |inner| {
            access::add_override_approval(&inner.writer()?.conn, &id, &approval)
        })
    }

    fn insert_alert(&self, alert: Alert, event: String) -> StoreFuture<'_, bool> {
        self.blocking(move |inner| alerts::insert_alert(&inner.writer()?.conn, &alert, &event))
    }

    fn escalate_alert(
        &self,
        id: String,
        event_id: String,
        event: String,
        at_ms: i64,
    ) -> StoreFuture<'_, bool> {
        self.blocking(move |inner| {
            alerts::escalate_alert(&inner.writer()?.conn, &id, &event_id, &event, at_ms)
        })
    }

    fn get_alert(&self, id: String) -> StoreFuture<'_, Option<Alert>> {
        self.blocking(move |inner| inner.with_reader(|conn| alerts::get_alert(conn, &id)))
    }

    fn list_alerts(&self) -> StoreFuture<'_, Vec<Alert>> {
        self.blocking(|inner| inner.with_reader(alerts::list_alerts))
    }

    fn ack_alert(&self, id: String, actor: String, at_ms: i64) -> StoreFuture<'_, bool> {
        self.blocking(move |inner| alerts::ack_alert(&inner.writer()?.conn, &id, &actor, at_ms))
    }

    fn create_webhook(&self, webhook: Webhook) -> StoreFuture<'_, bool> {
        self.blocking(move |inner| alerts::create_webhook(&inner.writer()?.conn, &webhook))
    }

    fn list_webhooks(&self) -> StoreFuture<'_, Vec<Webhook>> {
        self.blocking(|inner| inner.with_reader(alerts::list_webhooks))
    }

    fn delete_webhook(&self, id: String) -> StoreFuture<'_, bool> {
        self.blocking(move |inner| alerts::delete_webhook(&inner.writer()?.conn, &id))
    }

    fn claim_deliveries(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: i64,
    ) -> StoreFuture<'_, Vec<Delivery>> {
        self.blocking(move |inner| {
            alerts::claim_deliveries(&inner.writer()?.conn, now_ms, lease_until_ms, limit)
        })
    }

    fn finish_delivery(
        &self,
        id: i64,
        attempt: Attempt,
        retry_at_ms: Option<i64>,
    ) -> StoreFuture<'_, ()> {
        self.blocking(move |inner| {
            alerts::finish_delivery(&inner.writer()?.conn, id, &attempt, retry_at_ms)
        })
    }

    fn list_deliveries(&self, webhook_id: String, limit: i64) -> StoreFuture<'_, Vec<Delivery>> {
        self.blocking(move |inner| {
            inner.with_reader(|conn| alerts::list_deliveries(conn, &webhook_id, limit))
        })
    }

    fn outbox_depth(&self) -> StoreFuture<'_, i64> {
        self.blocking(|inner| inner.with_reader(alerts::outbox_depth))
    }

    fn grant_lease(&self, req: LeaseRequest) -> StoreFuture<'_, Lease> {
        self.blocking(move |inner| leases::grant(&inner.writer()?.conn, &req))
    }

    fn lease_totals(&self, budget_id: String, period_start_ms: i64) -> StoreFuture<'_, (f64, f64)> {
        self.blocking(move |inner| {
            inner.with_reader(|conn| leases::committed(conn, &budget_id, period_start_ms))
        })
    }

    fn list_leases(
        &self,
        budget_id: String,
        period_start_ms: i64,
    ) -> StoreFuture<'_, Vec<HostLease>> {
        self.blocking(move |inner| {
            inner.with_reader(|conn| leases::list(conn, &budget_id, period_start_ms))
        })
    }

    fn save_keys(&self, writes: Vec<KeyWrite>) -> StoreFuture<'_, SaveKeys> {
        self.blocking(move |inner| keys::save(&inner.writer()?.conn, &writes))
    }

    fn get_key(&self, key_id: String) -> StoreFuture<'_, Option<Key>> {
        self.blocking(move |inner| inner.with_reader(|conn| keys::get(conn, &key_id)))
    }

    fn list_keys(&self) -> StoreFuture<'_, Vec<Key>> {
        self.blocking(|inner| inner.with_reader(keys::list))
    }

    fn keys_revision(&self) -> StoreFuture<'_, i64> {
        self.blocking(|inner| inner.with_reader(keys::revision))
    }

    fn put_gl_account(&self, account: GlAccount) -> StoreFuture<'_, bool> {
        self.blocking(move |inner| ledger::put_gl_account(&inner.writer()?.conn, &account))
    }

    fn gl_accounts(&self) -> StoreFuture<'_, Vec<GlAccount>> {
        self.blocking(|inner| inner.with_reader(ledger::gl_accounts))
    }

    fn replace_provider_usage(&self, import: Import) -> StoreFuture<'_, (u64, u64)> {
        self.blocking(move |inner| prices::replace_provider_usage(&inner.writer()?.conn, &import))
    }

    fn provider_usage(&self, from_ms: i64, to_ms: i64) -> StoreFuture<'_, Vec<ProviderLine>> {
        self.blocking(move |inner| {
            inner.with_reader(|conn| prices::provider_usage(conn, from_ms, to_ms))
        })
    }

    fn add_prices(&self, changes: PriceChanges, now_ms: i64) -> StoreFuture<'_, PricesAdded> {
        self.blocking(move |inner| prices::add(&inner.writer()?.conn, &changes, now_ms))
    }

    fn price_history(&self) -> StoreFuture<'_, PriceChanges> {
        self.blocking(|inner| inner.with_reader(prices::history))
    }

    fn reprice(
        &self,
        from_ms: i64,
        to_ms: i64,
        price: Pricer,
        version: String,
    ) -> StoreFuture<'_, Repriced> {
        self.blocking(move |inner| {
            prices::reprice(&inner.writer()?.conn, from_ms, to_ms, &price, &version)
        })
    }

    fn close_month(&self, month: ClosedMonth, lines: Vec<ChargebackLine>) -> StoreFuture<'_, bool> {
        self.blocking(move |inner| ledger::close_month(&inner.writer()?.conn, &month, &lines))
    }

    fn closed_months(&self) -> StoreFuture<'_, Vec<ClosedMonth>> {
        self.blocking(|inner| inner.with_reader(ledger::closed_months))
    }

    fn booked_lines(&self) -> StoreFuture<'_, Vec<ChargebackLine>> {
        self.blocking(|inner| inner.with_reader(ledger::booked_lines))
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
