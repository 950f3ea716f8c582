//! The PostgreSQL store, for several collector replicas on one database.
//!
//! - `connect` runs the versioned migrations (`postgres/migrate.rs`) before
//!   serving, safely when several replicas start at once.
//! - `insert_batch` prepares its batch (series ids, binary COPY tuples,
//!   rollup partials: `postgres/prepare.rs`) and hands it to a group commit
//!   (`postgres/writer.rs`) that stores every queued batch in one
//!   transaction, idempotent on record id across replicas, rollups fed only
//!   by rows actually inserted (`postgres/ingest.rs`).
//! - `usage` follows the same raw/hourly/daily plan as SQLite
//!   (`postgres/query.rs`).
//! - `tests/`: what only PostgreSQL does (concurrent migrations, two
//!   replicas, group commit); `test_schema.rs` gives tests and benches a
//!   throw-away schema. The behaviour every store shares is tested in
//!   `store/tests.rs`.
//!
//! Connections: a deadpool pool of tokio-postgres clients, over TLS (rustls)
//! as the URL's `sslmode`, `sslrootcert`, `sslcert` and `sslkey` say, with
//! libpq's meanings (`postgres/tls.rs`). A schema
//! other than `public` is chosen with the URL's `options`, e.g.
//! `postgres://aispend@db/aispend?options=-c%20search_path%3Daispend`.

mod access;
mod alerts;
mod budgets;
mod copy_format;
mod ingest;
mod keys;
mod leases;
mod ledger;
mod migrate;
mod prepare;
mod prices;
mod query;
mod retention;
mod series;
mod stored_id;
#[doc(hidden)]
pub mod test_schema;
#[cfg(test)]
mod tests;
mod tls;
mod writer;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::{Config, NoTls};

use super::{
    check_retention, BatchOutcome, KeyWrite, Pricer, PricesAdded, Purged, Repriced, SaveKeys,
    Store, StoreError, StoreFuture,
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
use prepare::Prepared;
use series::SeriesCache;
use writer::Writer;

/// Connections per collector. The ingest writer holds one per group commit;
/// queries, budget calls and new-series lookups one each for a few
/// milliseconds; more than a handful only adds contention in PostgreSQL.
const POOL_SIZE: usize = 16;

pub struct PostgresStore {
    pool: Pool,
    series: SeriesCache,
    writer: Writer,
}

/// `host:port/dbname` of a config, for messages (never the password).
pub fn describe(config: &Config) -> String {
    use tokio_postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => String::from("localhost"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("{host}:{port}/{db}")
}

impl PostgresStore {
    /// Connects, checks the database answers and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let (config, tls_settings) = tls::parse_url(url)?;
        let target = describe(&config);
        let manager_config = || ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match tls::connector(&tls_settings)? {
            tls::Connector::Plain => Manager::from_config(config, NoTls, manager_config()),
            tls::Connector::Rustls(tls) => Manager::from_config(config, tls, manager_config()),
        };
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(Duration::from_secs(10)))
            .wait_timeout(Some(Duration::from_secs(30)))
            .build()
            .map_err(|e| StoreError::internal(format!("cannot build PostgreSQL pool: {e}")))?;
        let mut client = pool.get().await.map_err(|e| {
            StoreError::from(e)
                .context(|m| format!("cannot connect to PostgreSQL at {target}: {m}"))
        })?;
        migrate::migrate(&mut client).await?;
        drop(client);
        Ok(Self {
            writer: Writer::start(&pool),
            pool,
            series: SeriesCache::default(),
        })
    }
}

impl Store for PostgresStore {
    fn insert_batch(&self, records: Vec<PricedRecord>) -> StoreFuture<'_, BatchOutcome> {
        Box::pin(async move {
            if records.is_empty() {
                return Ok(BatchOutcome::default());
            }
            let _in_flight = self.writer.enter();
            let mut ids = self.series.cached(&records);
            if ids.iter().any(Option::is_none) {
                let client = self.pool.get().await?;
                self.series
                    .resolve_missing(&client, &records, &mut ids)
                    .await?;
            }
            let series_ids = ids
                .into_iter()
                .map(|id| id.ok_or_else(|| StoreError::internal("unresolved series")))
                .collect::<Result<Vec<i64>, _>>()?;
            self.writer.write(Prepared::new(records, series_ids)).await
        })
    }

    fn usage(&self, query: UsageQuery) -> StoreFuture<'_, UsageReport> {
        Box::pin(async move {
            let client = self.pool.get().await?;
            check_retention(&query, retention::horizon(&client).await?)?;
            let report = query::usage(&client, &query).await?;
            // Retention commits its horizon before deleting anything: if it
            // still allows the range after the reads, none of them missed a
            // record (the statements ran in their own snapshots).
            check_retention(&query, retention::horizon(&client).await?)?;
            Ok(report)
        })
    }

    fn purge_records(&self, before_ms: i64, limit: u32) -> StoreFuture<'_, Purged> {
        Box::pin(async move { retention::purge(&self.pool.get().await?, before_ms, limit).await })
    }

    fn retention_horizon(&self) -> StoreFuture<'_, Option<i64>> {
        Box::pin(async move { retention::horizon(&self.pool.get().await?).await })
    }

    fn tag_keys(&self) -> StoreFuture<'_, Vec<String>> {
        Box::pin(async move { query::tag_keys(&self.pool.get().await?).await })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let client = self.pool.get().await?;
            client.simple_query("SELECT 1").await?;
            Ok(())
        })
    }

    fn create_budget(&self, budget: Budget) -> StoreFuture<'_, bool> {
        Box::pin(async move { budgets::create(&*self.pool.get().await?, &budget).await })
    }

    fn get_budget(&self, id: String) -> StoreFuture<'_, Option<Budget>> {
        Box::pin(async move { budgets::get(&*self.pool.get().await?, &id).await })
    }

    fn list_budgets(&self) -> StoreFuture<'_, Vec<Budget>> {
        Box::pin(async move { budgets::list(&*self.pool.get().await?).await })
    }

    fn replace_budget(&self, budget: Budget) -> StoreFuture<'_, bool> {
        Box::pin(async move { budgets::replace(&*self.pool.get().await?, &budget).await })
    }

    fn delete_budget(&self, id: String) -> StoreFuture<'_, bool> {
        Box::pin(async move { budgets::delete(&*self.pool.get().await?, &id).await })
    }

    fn create_token(&self, token: ApiToken) -> StoreFuture<'_, bool> {
        Box::pin(async move { access::create_token(&*self.pool.get().await?, &token).await })
    }

    fn list_tokens(&self) -> StoreFuture<'_, Vec<ApiToken>> {
        Box::pin(async move { access::list_tokens(&*self.pool.get().await?).await })
    }

    fn revoke_token(&self, id: String, at_ms: i64) -> StoreFuture<'_, bool> {
        Box::pin(async move { access::revoke_token(&*self.pool.get().await?, &id, at_ms).await })
    }

    fn append_audit(&self, entry: AuditEntry) -> StoreFuture<'_, ()> {
        Box::pin(async move { access::append_audit(&*self.pool.get().await?, &entry).await })
    }

    fn list_audit(&self, query: AuditQuery) -> StoreFuture<'_, Vec<AuditEntry>> {
        Box::pin(async move { access::list_audit(&*self.pool.get().await?, &query).await })
    }

    fn create_override(&self, o: Override) -> StoreFuture<'_, ()> {
        Box::pin(async move { access::create_override(&*self.pool.get().await?, &o).await })
    }

    fn list_overrides(&self) -> StoreFuture<'_, Vec<Override>> {
        Box::pin(async move { access::list_overrides(&*self.pool.get().await?).await })
    }

    fn add_override_approval(&self, id: String, approval: Approval) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            access::add_override_approval(&*self.pool.get().await?, &id, &approval).await
        })
    }

    fn insert_alert(&self, alert: Alert, event: String) -> StoreFuture<'_, bool> {
        Box::pin(
            async move { alerts::insert_alert(&mut self.pool.get().await?, &alert, &event).await },
        )
    }

    fn escalate_alert(
        &self,
        id: String,
        event_id: String,
        event: String,
        at_ms: i64,
    ) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            alerts::escalate_alert(&mut self.pool.get().await?, &id, &event_id, &event, at_ms).await
        })
    }

    fn get_alert(&self, id: String) -> StoreFuture<'_, Option<Alert>> {
        Box::pin(async move { alerts::get_alert(&self.pool.get().await?, &id).await })
    }

    fn list_alerts(&self) -> StoreFuture<'_, Vec<Alert>> {
        Box::pin(async move { alerts::list_alerts(&self.pool.get().await?).await })
    }

    fn ack_alert(&self, id: String, actor: String, at_ms: i64) -> StoreFuture<'_, bool> {
        Box::pin(
            async move { alerts::ack_alert(&self.pool.get().await?, &id, &actor, at_ms).await },
        )
    }

    fn create_webhook(&self, webhook: Webhook) -> StoreFuture<'_, bool> {
        Box::pin(async move { alerts::create_webhook(&self.pool.get().await?, &webhook).await })
    }

    fn list_webhooks(&self) -> StoreFuture<'_, Vec<Webhook>> {
        Box::pin(async move { alerts::list_webhooks(&**self.pool.get().await?).await })
    }

    fn delete_webhook(&self, id: String) -> StoreFuture<'_, bool> {
        Box::pin(async move { alerts::delete_webhook(&mut self.pool.get().await?, &id).await })
    }

    fn claim_deliveries(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: i64,
    ) -> StoreFuture<'_, Vec<Delivery>> {
        Box::pin(async move {
            alerts::claim_deliveries(&self.pool.get().await?, now_ms, lease_until_ms, limit).await
        })
    }

    fn finish_delivery(
        &self,
        id: i64,
        attempt: Attempt,
        retry_at_ms: Option<i64>,
    ) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            alerts::finish_delivery(&self.pool.get().await?, id, &attempt, retry_at_ms).await
        })
    }

    fn list_deliveries(&self, webhook_id: String, limit: i64) -> StoreFuture<'_, Vec<Delivery>> {
        Box::pin(async move {
            alerts::list_deliveries(&self.pool.get().await?, &webhook_id, limit).await
        })
    }

    fn outbox_depth(&self) -> StoreFuture<'_, i64> {
        Box::pin(async move { alerts::outbox_depth(&self.pool.get().await?).await })
    }

    fn grant_lease(&self, req: LeaseRequest) -> StoreFuture<'_, Lease> {
        Box::pin(async move { leases::grant(&mut self.pool.get().await?, &req).await })
    }

    fn lease_totals(&self, budget_id: String, period_start_ms: i64) -> StoreFuture<'_, (f64, f64)> {
        Box::pin(async move {
            leases::committed(&self.pool.get().await?, &budget_id, period_start_ms).await
        })
    }

    fn list_leases(
        &self,
        budget_id: String,
        period_start_ms: i64,
    ) -> StoreFuture<'_, Vec<HostLease>> {
        Box::pin(
            async move { leases::list(&self.pool.get().await?, &budget_id, period_start_ms).await },
        )
    }

    fn save_keys(&self, writes: Vec<KeyWrite>) -> StoreFuture<'_, SaveKeys> {
        Box::pin(async move { keys::save(&mut self.pool.get().await?, &writes).await })
    }

    fn get_key(&self, key_id: String) -> StoreFuture<'_, Option<Key>> {
        Box::pin(async move { keys::get(&*self.pool.get().await?, &key_id).await })
    }

    fn list_keys(&self) -> StoreFuture<'_, Vec<Key>> {
        Box::pin(async move { keys::list(&mut self.pool.get().await?).await })
    }

    fn keys_revision(&self) -> StoreFuture<'_, i64> {
        Box::pin(async move { keys::revision(&*self.pool.get().await?).await })
    }

    fn replace_provider_usage(&self, import: Import) -> StoreFuture<'_, (u64, u64)> {
        Box::pin(async move {
            prices::replace_provider_usage(&mut self.pool.get().await?, &import).await
        })
    }

    fn provider_usage(&self, from_ms: i64, to_ms: i64) -> StoreFuture<'_, Vec<ProviderLine>> {
        Box::pin(
            async move { prices::provider_usage(&self.pool.get().await?, from_ms, to_ms).await },
        )
    }

    fn add_prices(&self, changes: PriceChanges, now_ms: i64) -> StoreFuture<'_, PricesAdded> {
        Box::pin(async move { prices::add(&mut self.pool.get().await?, &changes, now_ms).await })
    }

    fn price_history(&self) -> StoreFuture<'_, PriceChanges> {
        Box::pin(async move { prices::history(&self.pool.get().await?).await })
    }

    fn reprice(
        &self,
        from_ms: i64,
        to_ms: i64,
        price: Pricer,
        version: String,
    ) -> StoreFuture<'_, Repriced> {
        Box::pin(async move {
            prices::reprice(
                &mut self.pool.get().await?,
                from_ms,
                to_ms,
                &price,
                &version,
            )
            .await
        })
    }

    fn put_gl_account(&self, account: GlAccount) -> StoreFuture<'_, bool> {
        Box::pin(async move { ledger::put_gl_account(&self.pool.get().await?, &account).await })
    }

    fn gl_accounts(&self) -> StoreFuture<'_, Vec<GlAccount>> {
        Box::pin(async move { ledger::gl_accounts(&self.pool.get().await?).await })
    }

    fn close_month(&self, month: ClosedMonth, lines: Vec<ChargebackLine>) -> StoreFuture<'_, bool> {
        Box::pin(
            async move { ledger::close_month(&mut self.pool.get().await?, &month, &lines).await },
        )
    }

    fn closed_months(&self) -> StoreFuture<'_, Vec<ClosedMonth>> {
        Box::pin(async move { ledger::closed_months(&self.pool.get().await?).await })
    }

    fn booked_lines(&self) -> StoreFuture<'_, Vec<ChargebackLine>> {
        Box::pin(async move { ledger::booked_lines(&self.pool.get().await?).await })
    }

    fn close(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            // Batches already queued are stored (and answered) first.
            self.writer.close().await;
            self.pool.close();
            Ok(())
        })
    }
}
