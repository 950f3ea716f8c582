//! Retention (`AISPEND_RETENTION_DAYS`): a background task deletes raw
//! records older than N days, in small batches, every few minutes. The
//! hourly and daily rollups keep every record, so `/v1/usage` over whole
//! hours, budgets and exports stay exact; a query that needs deleted raw
//! records is refused by the store (`StoreErrorKind::BeyondRetention`, 400).
//!
//! Time comes in as a value (`pass(…, now_ms, …)`), so tests never sleep.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::domain::time::{floor_hour, now_ms, DAY_MS};
use crate::state::AppState;
use crate::store::{Store, StoreError};

/// Records deleted per store transaction: short enough that ingest waits at
/// most a few milliseconds behind one (SQLite has one writer).
pub const BATCH: u32 = 2_000;

/// How often the task looks for records past the horizon.
pub const PERIOD: Duration = Duration::from_secs(300);

/// The horizon ingest checks, shared with the task (`i64::MIN`: none).
#[derive(Debug)]
pub struct RetentionHorizon(AtomicI64);

impl Default for RetentionHorizon {
    fn default() -> Self {
        Self(AtomicI64::new(i64::MIN))
    }
}

impl RetentionHorizon {
    pub fn horizon(&self) -> Option<i64> {
        let ms = self.0.load(Ordering::Relaxed);
        (ms != i64::MIN).then_some(ms)
    }

    /// Moves forward only.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_max(ms, Ordering::Relaxed);
    }
}

/// Records before this are deleted: `days` before `now_ms`, on the hour (so
/// whole hours go, and the hours kept are whole).
pub fn horizon_at(now_ms: i64, days: u32) -> i64 {
    floor_hour(now_ms.saturating_sub(i64::from(days) * DAY_MS))
}

/// One pass at `now_ms`: the horizon moves (ingest refuses older records
/// from now on), then batches of `batch` records are deleted until none is
/// left, yielding between batches. Returns how many were deleted.
pub async fn pass(
    store: &dyn Store,
    shared: &RetentionHorizon,
    now_ms: i64,
    days: u32,
    batch: u32,
) -> Result<u64, StoreError> {
    let horizon = horizon_at(now_ms, days);
    shared.advance(horizon);
    let mut deleted = 0;
    loop {
        let purged = store.purge_records(horizon, batch).await?;
        deleted += purged.deleted;
        if !purged.more {
            return Ok(deleted);
        }
        tokio::task::yield_now().await;
    }
}

/// Starts the background task: a pass now, then every `PERIOD`. A failed
/// pass is logged and tried again at the next period.
pub fn spawn(state: &AppState, days: u32) -> tokio::task::JoinHandle<()> {
    let store: Arc<dyn Store> = Arc::clone(&state.store);
    let shared = Arc::clone(&state.retention);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match pass(&*store, &shared, now_ms(), days, BATCH).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, days, "retention: deleted old raw records"),
                Err(e) => tracing::warn!(error = %e, "retention pass failed; retrying later"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::pricing::PriceTable;
    use crate::domain::time::parse_rfc3339_ms;
    use crate::state::Tokens;

    fn t(s: &str) -> i64 {
        parse_rfc3339_ms(s).unwrap_or(i64::MIN)
    }

    #[test]
    fn the_horizon_is_on_the_hour_n_days_back() {
        assert_eq!(
            horizon_at(t("2026-12-04T09:41:12Z"), 30),
            t("2026-11-04T09:00:00Z")
        );
        let shared = RetentionHorizon::default();
        assert_eq!(shared.horizon(), None);
        shared.advance(10);
        shared.advance(5);
        assert_eq!(shared.horizon(), Some(10), "never moves back");
    }

    /// Through the service: a pass at an injected "now" deletes what is
    /// older than N days, and ingest then refuses records that old.
    #[tokio::test]
    async fn a_pass_deletes_old_records_and_ingest_refuses_them_after() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("r.db").display());
        let store = crate::store::open(&url).expect("open");
        let state = AppState::new(
            store.clone(),
            PriceTable::embedded().expect("prices"),
            Tokens::default(),
        );
        let record = |id: &str, ts: &str| {
            format!(
                r#"{{"id":"{id}","ts":"{ts}","gateway":"envoy","key_id":"k","provider":"openai","operation":"chat","model":"gpt-4o","status":200,"input_tokens":1,"cached_input_tokens":0,"cache_write_input_tokens":0,"output_tokens":2,"reasoning_tokens":0,"tags":{{"team":"search"}}}}"#
            )
        };
        let body = format!(
            r#"{{"records":[{},{},{}]}}"#,
            record("old-1", "2026-10-01T10:00:00Z"),
            record("old-2", "2026-10-20T10:00:00Z"),
            record("new-1", "2026-11-30T10:00:00Z"),
        );
        let answer = crate::service::ingest::ingest(&state, body.as_bytes())
            .await
            .expect("ingest");
        assert_eq!(answer.accepted, 3, "{:?}", answer.rejected);

        let now = t("2026-12-04T09:41:12Z");
        let deleted = pass(&*store, &state.retention, now, 30, 1)
            .await
            .expect("pass");
        assert_eq!(deleted, 2);
        assert_eq!(state.retention.horizon(), Some(t("2026-11-04T09:00:00Z")));
        assert_eq!(
            store.retention_horizon().await.expect("horizon"),
            Some(t("2026-11-04T09:00:00Z"))
        );
        // A retried old record is refused (it would be counted twice).
        let again = format!(
            r#"{{"records":[{},{}]}}"#,
            record("old-1", "2026-10-01T10:00:00Z"),
            record("new-2", "2026-12-01T10:00:00Z"),
        );
        let answer = crate::service::ingest::ingest(&state, again.as_bytes())
            .await
            .expect("ingest");
        assert_eq!(answer.accepted, 1);
        assert_eq!(answer.rejected.len(), 1);
        assert_eq!(answer.rejected[0].index, 0);
        assert!(
            answer.rejected[0]
                .error
                .contains("retention horizon 2026-11-04T09:00:00"),
            "{}",
            answer.rejected[0].error
        );
    }
}
