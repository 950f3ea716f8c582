//! Storage behind one trait: SQLite now (embedded default), PostgreSQL next.
//!
//! Contract every implementation keeps (checked by the shared suite in
//! `tests.rs`):
//! - `insert_batch` is one transaction; a record whose `id` is already stored
//!   is a duplicate and changes nothing, not even the hourly rollup — the
//!   rollup is fed only by rows actually inserted, in the same transaction,
//!   so several collectors on one database stay exact.
//! - `usage` is exact for any `[from, to)`: `plan_segments` splits the range
//!   into whole days (daily rollup), whole hours (hourly rollup) and partial
//!   edge hours (raw records).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use std::collections::{BTreeMap, HashMap};

use crate::domain::aggregate::{Aggregator, Slice, Sums, UsageReport};
use crate::domain::budgets::{Budget, Scope};
use crate::domain::record::PricedRecord;
use crate::domain::time::{ceil_hour, floor_hour, DAY_MS};
use crate::domain::usage_query::{Dim, UsageQuery};

pub mod postgres;
pub mod sqlite;

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

/// A storage failure; the message is logged, never shown to clients in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "store error: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError(e.to_string())
    }
}

/// Boxed future so that `Store` stays object-safe (`Arc<dyn Store>`).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

pub trait Store: Send + Sync + 'static {
    /// Stores a batch atomically, skipping ids already stored.
    fn insert_batch(&self, records: Vec<PricedRecord>) -> StoreFuture<'_, BatchOutcome>;

    /// Answers a usage query.
    fn usage(&self, query: UsageQuery) -> StoreFuture<'_, UsageReport>;

    /// Cheap round trip proving the database answers.
    fn ping(&self) -> StoreFuture<'_, ()>;

    /// Flushes and releases what can be released before the process exits.
    fn close(&self) -> StoreFuture<'_, ()>;

    // ---- Budgets (SPEC §6). Budgets are stored as given; spend is not
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
        return Err(StoreError(String::from(
            "a PostgreSQL store is opened with store::connect (it connects and migrates)",
        )));
    }
    Err(StoreError(format!(
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

/// Where one part of a usage range is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Raw,
    Hourly,
    Daily,
}

/// Splits `[from, to)` into non-empty, adjacent segments, each answered
/// exactly by one source: raw records for partial hours, the hourly rollup
/// for whole hours, the daily rollup for whole UTC days.
/// The grouping dimensions of one series (one distinct key_id, tags, model,
/// provider, operation), as both stores keep them, decoded for the aggregator.
pub(crate) struct Series {
    pub key_id: String,
    pub tags: BTreeMap<String, String>,
    pub model: Option<String>,
    pub provider: String,
    pub operation: String,
}

/// Both stores first fold their scans into integer sums per (series id, day);
/// this groups those few partials by the query's dimensions.
/// The 16 bytes of exactly 32 lowercase hex digits (the filter's record ids),
/// else `None`. Uppercase is left to the text form so that two different ids
/// never map to one stored value. Both stores keep such ids as 16 bytes.
pub(crate) fn hex16(text: &str) -> Option<[u8; 16]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    let digits = text.as_bytes();
    if digits.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        let [high, low] = pair else { return None };
        *byte = (nibble(*high)? << 4) | nibble(*low)?;
    }
    Some(bytes)
}

pub(crate) fn group_partials(
    query: &UsageQuery,
    partials: &HashMap<(i64, i64), Sums>,
    series: &HashMap<i64, Series>,
) -> Result<UsageReport, StoreError> {
    let mut aggregator = Aggregator::new(query);
    for ((series_id, day), sums) in partials {
        let Some(s) = series.get(series_id) else {
            return Err(StoreError(format!(
                "usage references unknown series {series_id}"
            )));
        };
        let slice = Slice {
            hour_ms: day * DAY_MS,
            key_id: &s.key_id,
            tags: &s.tags,
            model: s.model.as_deref(),
            provider: &s.provider,
            operation: &s.operation,
        };
        aggregator.add(&slice, sums);
    }
    Ok(aggregator.finish())
}

pub fn plan_segments(from: i64, to: i64) -> Vec<(Source, i64, i64)> {
    let (h0, h1) = (ceil_hour(from), floor_hour(to));
    let segments = if h0 >= h1 {
        vec![(Source::Raw, from, to)]
    } else {
        let d0 = h0.div_euclid(DAY_MS) * DAY_MS
            + if h0.rem_euclid(DAY_MS) == 0 {
                0
            } else {
                DAY_MS
            };
        let d1 = h1.div_euclid(DAY_MS) * DAY_MS;
        if d0 < d1 {
            vec![
                (Source::Raw, from, h0),
                (Source::Hourly, h0, d0),
                (Source::Daily, d0, d1),
                (Source::Hourly, d1, h1),
                (Source::Raw, h1, to),
            ]
        } else {
            vec![
                (Source::Raw, from, h0),
                (Source::Hourly, h0, h1),
                (Source::Raw, h1, to),
            ]
        }
    };
    segments.into_iter().filter(|(_, a, b)| a < b).collect()
}

#[cfg(test)]
mod plan_tests {
    use super::*;
    use crate::domain::time::parse_rfc3339_ms;

    fn t(s: &str) -> i64 {
        parse_rfc3339_ms(s).unwrap_or(i64::MIN)
    }

    #[test]
    fn month_with_ragged_edges_uses_every_source_once() {
        let plan = plan_segments(t("2026-11-01T05:30:00Z"), t("2026-11-30T17:23:45Z"));
        assert_eq!(
            plan,
            vec![
                (
                    Source::Raw,
                    t("2026-11-01T05:30:00Z"),
                    t("2026-11-01T06:00:00Z")
                ),
                (
                    Source::Hourly,
                    t("2026-11-01T06:00:00Z"),
                    t("2026-11-02T00:00:00Z")
                ),
                (
                    Source::Daily,
                    t("2026-11-02T00:00:00Z"),
                    t("2026-11-30T00:00:00Z")
                ),
                (
                    Source::Hourly,
                    t("2026-11-30T00:00:00Z"),
                    t("2026-11-30T17:00:00Z")
                ),
                (
                    Source::Raw,
                    t("2026-11-30T17:00:00Z"),
                    t("2026-11-30T17:23:45Z")
                ),
            ]
        );
    }

    #[test]
    fn aligned_and_short_ranges() {
        let (a, b) = (t("2026-11-01T00:00:00Z"), t("2026-12-01T00:00:00Z"));
        assert_eq!(plan_segments(a, b), vec![(Source::Daily, a, b)]);
        let (a, b) = (t("2026-11-01T10:10:00Z"), t("2026-11-01T10:50:00Z"));
        assert_eq!(plan_segments(a, b), vec![(Source::Raw, a, b)]);
        let (a, b) = (t("2026-11-01T10:00:00Z"), t("2026-11-01T13:00:00Z"));
        assert_eq!(plan_segments(a, b), vec![(Source::Hourly, a, b)]);
        assert!(plan_segments(a, a).is_empty());
    }
}
