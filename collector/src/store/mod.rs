//! Storage behind one trait: SQLite (embedded, the default) and PostgreSQL
//! (several collector replicas on one database), in mirror folders.
//!
//! Contract every implementation keeps (checked by the shared suite in
//! `tests.rs`):
//! - `insert_batch` is one transaction; a record whose `id` is already stored
//!   is a duplicate and changes nothing, not even the hourly rollup — the
//!   rollup is fed only by rows actually inserted, in the same transaction,
//!   so several collectors on one database stay exact.
//! - `usage` is exact for any `[from, to)`: `plan_segments` (`plan.rs`)
//!   splits the range into whole days (daily rollup), whole hours (hourly
//!   rollup) and partial edge hours (raw records).
//!
//! What both backends write or decode the same way (record ids, series keys
//! and their id cache, budget and series rows, the fast hasher) is written
//! once, in `rows.rs` and `hash.rs`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::domain::access::ApiToken;
use crate::domain::aggregate::UsageReport;
use crate::domain::alerts::Alert;
use crate::domain::audit::{AuditEntry, AuditQuery};
use crate::domain::budgets::{Budget, Scope};
use crate::domain::finops::chargeback::{ChargebackLine, ClosedMonth, GlAccount};
use crate::domain::keys::Key;
use crate::domain::leases::{HostLease, Lease, LeaseRequest};
use crate::domain::overrides::{Approval, Override};
use crate::domain::pricing::book::PriceChanges;
use crate::domain::reconcile::import::{Import, ProviderLine};
use crate::domain::record::{PricedRecord, UsageRecord};
use crate::domain::usage_query::{Dim, UsageQuery};
use crate::domain::webhooks::{Attempt, Delivery, Webhook};

mod access_rows;
mod alert_rows;
mod error;
mod hash;
pub mod keys;
mod plan;
pub mod postgres;
mod rows;
pub mod sqlite;

pub use error::{StoreError, StoreErrorKind};
pub use keys::{Expect, KeyWrite, SaveKeys};
pub use plan::{check_retention, plan_segments, raw_reads_from, Source};
pub(crate) use plan::{group_partials, group_record_partials, period_start, RecordKey};
pub(crate) use rows::{hex16, Series};

#[cfg(test)]
mod tests;

/// What the store did with one batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub inserted: u64,
    pub duplicates: u64,
    /// Inserted records without a price (unknown model).
    pub unpriced_inserted: u64,
}

/// What one `add_prices` call did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PricesAdded {
    pub added: u64,
    pub unchanged: u64,
    /// The entries whose key is stored with other values (nothing stored).
    pub conflicts: Vec<String>,
}

/// Prices one record when repricing (the cost after discount, or `None`).
pub type Pricer = Arc<dyn Fn(&UsageRecord) -> Option<f64> + Send + Sync>;

/// What one `reprice` did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Repriced {
    pub records: u64,
    pub cost_before_usd: f64,
    pub cost_after_usd: f64,
}

/// What one `purge_records` call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Raw records deleted.
    pub deleted: u64,
    /// Whether records older than the horizon may remain (call again).
    pub more: bool,
}

/// Boxed future so that `Store` stays object-safe (`Arc<dyn Store>`).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

pub trait Store: Send + Sync + 'static {
    /// Stores a batch atomically, skipping ids already stored.
    fn insert_batch(&self, records: Vec<PricedRecord>) -> StoreFuture<'_, BatchOutcome>;

    /// Answers a usage query.
    fn usage(&self, query: UsageQuery) -> StoreFuture<'_, UsageReport>;

    /// Every tag name on a stored record, sorted (the operator tags a usage
    /// query may group or filter by, plus the canonical ones in use).
    fn tag_keys(&self) -> StoreFuture<'_, Vec<String>>;

    /// Cheap round trip proving the database answers.
    fn ping(&self) -> StoreFuture<'_, ()>;

    // ---- Retention (`AISPEND_RETENTION_DAYS`): raw records go, rollups stay.

    /// Moves the retention horizon to `before_ms` (never back) and deletes,
    /// in one short transaction, up to about `limit` raw records older than
    /// the horizon. The horizon is committed before any record goes, and
    /// `usage` refuses (`StoreErrorKind::BeyondRetention`) a query needing
    /// raw records before it, so no answer is ever silently smaller.
    fn purge_records(&self, before_ms: i64, limit: u32) -> StoreFuture<'_, Purged>;

    /// The retention horizon: raw records before it may have been deleted;
    /// `None` when retention never ran on this database.
    fn retention_horizon(&self) -> StoreFuture<'_, Option<i64>>;

    /// Flushes and releases what can be released before the process exits.
    fn close(&self) -> StoreFuture<'_, ()>;

    // ---- Budgets (CONTRACTS §6). Budgets are stored as given; spend is not
    // stored with them but computed from the usage rollups on demand.

    /// Stores a new budget. `Ok(false)`: a budget with this id already
    /// exists (nothing changed; the API answers 409).
    fn create_budget(&self, budget: Budget) -> StoreFuture<'_, bool>;

    /// The budget with this id, if any.
    fn get_budget(&self, id: String) -> StoreFuture<'_, Option<Budget>>;

    /// Every budget, sorted by id.
    fn list_budgets(&self) -> StoreFuture<'_, Vec<Budget>>;

    /// Replaces the budget with `budget.id` wholesale. `Ok(false)`: no such
    /// budget (nothing stored; the API answers 404).
    fn replace_budget(&self, budget: Budget) -> StoreFuture<'_, bool>;

    /// Deletes the budget. `Ok(false)`: no such budget.
    fn delete_budget(&self, id: String) -> StoreFuture<'_, bool>;

    // ---- Access (CONTRACTS §9): API tokens, the audit log, overrides.
    // Methods in `sqlite/access.rs` and `postgres/access.rs`.

    /// Stores a new token. `Ok(false)`: its id or hash is taken.
    fn create_token(&self, token: ApiToken) -> StoreFuture<'_, bool>;

    /// Every token (revoked and expired ones too), oldest first.
    fn list_tokens(&self) -> StoreFuture<'_, Vec<ApiToken>>;

    /// Marks a live token revoked at `at_ms`. `Ok(false)`: no such token,
    /// or already revoked (nothing changed).
    fn revoke_token(&self, id: String, at_ms: i64) -> StoreFuture<'_, bool>;

    /// Appends one entry (its `seq` is assigned by the store). The only
    /// statement the collector runs on the audit table besides SELECT.
    fn append_audit(&self, entry: AuditEntry) -> StoreFuture<'_, ()>;

    /// Entries passing `query`'s filters, newest (highest `seq`) first, at
    /// most `query.limit`.
    fn list_audit(&self, query: AuditQuery) -> StoreFuture<'_, Vec<AuditEntry>>;

    /// Stores a new override (its `approvals` must be empty).
    fn create_override(&self, o: Override) -> StoreFuture<'_, ()>;

    /// Every override with its approvals (in approval order), newest first.
    fn list_overrides(&self) -> StoreFuture<'_, Vec<Override>>;

    /// Adds an approval. `Ok(false)`: this actor or this role already
    /// approved (nothing changed), so two replicas racing cannot both count.
    fn add_override_approval(&self, id: String, approval: Approval) -> StoreFuture<'_, bool>;
    // ---- Virtual keys (CONTRACTS §8; `keys.rs`). Plain keys are never
    // stored: a key's secrets are kept as sha256 hex.

    /// Writes every key wholesale (its row and its set of secrets) in ONE
    /// transaction, and bumps `keys_revision`. When a write's `expect` does
    /// not hold (an id taken, a key changed or gone since it was read),
    /// nothing at all is stored and the answer names that key.
    fn save_keys(&self, writes: Vec<KeyWrite>) -> StoreFuture<'_, SaveKeys>;

    /// The key with this id and its valid secrets, if any.
    fn get_key(&self, key_id: String) -> StoreFuture<'_, Option<Key>>;

    /// Every key (revoked ones too), sorted by id.
    fn list_keys(&self) -> StoreFuture<'_, Vec<Key>>;

    /// A counter bumped by every `save_keys`, shared by every replica of one
    /// database: equal values mean no key changed in between (0: never).
    fn keys_revision(&self) -> StoreFuture<'_, i64>;

    // ---- Ledger (SPEC §11): GL accounts and closed months. Chargeback
    // amounts are not stored except the lines booked when a month is closed.

    /// Sets a cost center's GL account. `Ok(true)`: it had none before.
    fn put_gl_account(&self, account: GlAccount) -> StoreFuture<'_, bool>;

    /// Every GL account, sorted by cost center.
    fn gl_accounts(&self) -> StoreFuture<'_, Vec<GlAccount>>;

    /// Closes `month`, booking `lines` (its usage lines and the adjustments
    /// it carries for earlier closed months) in one transaction.
    /// `Ok(false)`: the month was already closed (nothing changed).
    fn close_month(&self, month: ClosedMonth, lines: Vec<ChargebackLine>) -> StoreFuture<'_, bool>;

    /// The closed months, oldest first.
    fn closed_months(&self) -> StoreFuture<'_, Vec<ClosedMonth>>;

    /// Every line booked by every closed month (by month).
    fn booked_lines(&self) -> StoreFuture<'_, Vec<ChargebackLine>>;

    // ---- Alerts and webhooks (CONTRACTS §10; `sqlite/alerts.rs`,
    // `postgres/alerts.rs`). The database keeps one alert per (budget,
    // level, period_start) and one outbox row per (event id, webhook), so
    // any number of replicas may evaluate at once: the first insert wins,
    // the others change nothing and enqueue nothing.

    /// Stores `alert` unless its (budget, level, period) exists and, in the
    /// same transaction, enqueues `event` (JSON text) under the alert's id
    /// for every webhook subscribed to `spend.alert`, due at `alert.at`.
    /// `Ok(false)`: it existed; nothing changed.
    fn insert_alert(&self, alert: Alert, event: String) -> StoreFuture<'_, bool>;

    /// Marks an open, not yet escalated alert escalated at `at_ms` and, in
    /// the same transaction, enqueues `event` under `event_id` for every
    /// alert webhook. `Ok(false)`: acknowledged, escalated already or gone.
    fn escalate_alert(
        &self,
        id: String,
        event_id: String,
        event: String,
        at_ms: i64,
    ) -> StoreFuture<'_, bool>;

    fn get_alert(&self, id: String) -> StoreFuture<'_, Option<Alert>>;

    /// Every alert, newest first.
    fn list_alerts(&self) -> StoreFuture<'_, Vec<Alert>>;

    /// Acknowledges an open alert. `Ok(false)`: acknowledged already or gone.
    fn ack_alert(&self, id: String, actor: String, at_ms: i64) -> StoreFuture<'_, bool>;

    /// Stores a new webhook. `Ok(false)`: its id is taken.
    fn create_webhook(&self, webhook: Webhook) -> StoreFuture<'_, bool>;

    /// Every webhook, oldest first.
    fn list_webhooks(&self) -> StoreFuture<'_, Vec<Webhook>>;

    /// Deletes the webhook and its undelivered outbox rows. `Ok(false)`: no such webhook.
    fn delete_webhook(&self, id: String) -> StoreFuture<'_, bool>;

    /// Claims up to `limit` pending deliveries due at `now_ms` (oldest
    /// first) by moving their `next_attempt_at` to `lease_until_ms`, so
    /// another worker (another replica) skips them meanwhile.
    fn claim_deliveries(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: i64,
    ) -> StoreFuture<'_, Vec<Delivery>>;

    /// Records one attempt: delivered, or pending again at
    /// `retry_at_ms`, or `failed` when `retry_at_ms` is `None`.
    fn finish_delivery(
        &self,
        id: i64,
        attempt: Attempt,
        retry_at_ms: Option<i64>,
    ) -> StoreFuture<'_, ()>;

    /// The newest `limit` deliveries of one webhook, newest first.
    fn list_deliveries(&self, webhook_id: String, limit: i64) -> StoreFuture<'_, Vec<Delivery>>;

    /// How many deliveries are pending (the outbox depth).
    fn outbox_depth(&self) -> StoreFuture<'_, i64>;

    // ---- Leases of strict budgets (SPEC §6; `domain/leases`,
    // `sqlite/leases.rs`, `postgres/leases.rs`).

    /// Grants `req.host` its next lease of one strict budget, in ONE
    /// transaction that serializes every grant of that budget and period
    /// (SQLite: an IMMEDIATE transaction on the one writer; PostgreSQL: a
    /// row lock on the period's `lease_periods` row). The period's base is
    /// `req.spend_usd` if this is its first lease. Keeps
    /// `base + Σ committed <= cap` (see `domain::leases`).
    fn grant_lease(&self, req: LeaseRequest) -> StoreFuture<'_, Lease>;

    /// (base, Σ committed) of one budget's period; (0, 0) before any lease.
    fn lease_totals(&self, budget_id: String, period_start_ms: i64) -> StoreFuture<'_, (f64, f64)>;

    /// Every host's lease of one budget's period, by host.
    fn list_leases(
        &self,
        budget_id: String,
        period_start_ms: i64,
    ) -> StoreFuture<'_, Vec<HostLease>>;

    // ---- Prices in time (SPEC §13; `sqlite/prices.rs`, `postgres/prices.rs`).

    /// Stores price changes and discounts, in one transaction. An entry
    /// equal to a stored one (same provider, model and `effective_from`, same
    /// values) is unchanged; one with the same key and other values is a
    /// conflict and then nothing at all is stored (history is never edited).
    fn add_prices(&self, changes: PriceChanges, now_ms: i64) -> StoreFuture<'_, PricesAdded>;

    /// Every stored price change and discount.
    fn price_history(&self) -> StoreFuture<'_, PriceChanges>;

    /// Reprices every record with `ts` in `[from_ms, to_ms)` (whole hours)
    /// with `price`, sets their `price_version` to `version`, and rebuilds
    /// the cost columns of the hourly and daily rollups of those hours from
    /// the records, in one transaction.
    fn reprice(
        &self,
        from_ms: i64,
        to_ms: i64,
        price: Pricer,
        version: String,
    ) -> StoreFuture<'_, Repriced>;

    // ---- Provider usage exports (SPEC §13; in the same files).

    /// Replaces, in one transaction, the lines of `import.source` whose
    /// start is in `[import.from_ms, import.to_ms)` with `import.lines`:
    /// the same export twice changes nothing, an overlapping one replaces
    /// the overlap. Answers (lines deleted, lines inserted).
    fn replace_provider_usage(&self, import: Import) -> StoreFuture<'_, (u64, u64)>;

    /// Every provider line whose start is in `[from_ms, to_ms)`.
    fn provider_usage(&self, from_ms: i64, to_ms: i64) -> StoreFuture<'_, Vec<ProviderLine>>;

    /// Spend in USD over `[from_ms, to_ms)` for each scope, in order: the sum
    /// of `cost_usd` of records whose tags (or `key_id`) match every pair of
    /// the scope; unpriced records add 0.
    ///
    /// The default answers every scope with ONE `usage` query grouped by the
    /// union of the scopes' keys (so it reads the rollups, stays exact for
    /// any range, and costs the same for 1 or 100 budgets). A backend only
    /// overrides it for speed; it must give the same numbers.
    fn spend_usd(&self, scopes: Vec<Scope>, from_ms: i64, to_ms: i64) -> StoreFuture<'_, Vec<f64>> {
        Box::pin(async move {
            if scopes.is_empty() {
                return Ok(Vec::new());
            }
            let query = spend_query(&scopes, from_ms, to_ms);
            let report = self.usage(query).await?;
            Ok(spend_per_scope(&scopes, &report))
        })
    }
}

/// The usage query behind `spend_usd`: grouped by every key any scope uses.
fn spend_query(scopes: &[Scope], from_ms: i64, to_ms: i64) -> UsageQuery {
    let mut keys: Vec<&str> = scopes
        .iter()
        .flat_map(|s| s.keys().map(String::as_str))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let group_by = keys
        .into_iter()
        .map(|k| match k {
            crate::domain::budgets::KEY_ID => Dim::KeyId,
            tag => Dim::Tag(tag.to_owned()),
        })
        .collect();
    UsageQuery {
        from_ms,
        to_ms,
        group_by,
        filters: Vec::new(),
        required_tags: Vec::new(),
    }
}

/// Sums, per scope, the cost of the report rows whose values match the scope.
fn spend_per_scope(scopes: &[Scope], report: &UsageReport) -> Vec<f64> {
    scopes
        .iter()
        .map(|scope| {
            report
                .rows
                .iter()
                .filter(|row| {
                    scope.iter().all(|(key, wanted)| {
                        report
                            .group_by
                            .iter()
                            .zip(&row.dims)
                            .any(|(name, value)| name == key && value.as_deref() == Some(wanted))
                    })
                })
                .map(|row| row.sums.cost_usd)
                .sum()
        })
        .collect()
}

/// Opens the store named by a database URL (`sqlite://path`, `sqlite:path`).
pub fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        return Ok(Arc::new(sqlite::SqliteStore::open(path)?));
    }
    if is_postgres_url(url) {
        return Err(StoreError::invalid(String::from(
            "a PostgreSQL store is opened with store::connect (it connects and migrates)",
        )));
    }
    Err(StoreError::invalid(format!(
        "unsupported database URL {url:?}: expected sqlite://<path>"
    )))
}

fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Opens the store named by any database URL: `postgres://…` /
/// `postgresql://…` (connects and runs migrations) or SQLite as in `open`.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if is_postgres_url(url) {
        return Ok(Arc::new(postgres::PostgresStore::connect(url).await?));
    }
    open(url)
}

/// The database URL without its password, for logs.
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest.get(..authority_end).and_then(|a| a.rsplit_once('@')) {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            let path = rest.get(authority_end..).unwrap_or_default();
            format!("{scheme}://{user}@{host}{path}")
        }
        None => url.to_owned(),
    }
}
