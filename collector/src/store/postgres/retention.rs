//! Retention over PostgreSQL: the horizon in `retention_state` (shared by
//! every replica), and old records deleted a few thousand per statement.
//!
//! Records whose id starts with their time (`ts_in_id`) are found through
//! the unique index on `id` (`id < id_floor(horizon)`), the others through
//! the partial index on `ts_ms` that holds only them (migration 3); rows are
//! deleted by `ctid`, so each statement is index scans plus a TID scan and
//! holds its row locks for milliseconds. Ingest (COPY of new rows) does not
//! wait on it.

use deadpool_postgres::Client;

use super::stored_id::id_floor;
use crate::store::{Purged, StoreError};

const ADVANCE: &str = "INSERT INTO retention_state (id, records_before_ms) VALUES (1, $1) \
     ON CONFLICT (id) DO UPDATE SET \
     records_before_ms = greatest(retention_state.records_before_ms, excluded.records_before_ms) \
     RETURNING records_before_ms";

const SELECT_HORIZON: &str = "SELECT records_before_ms FROM retention_state WHERE id = 1";

const DELETE_OLD: &str = "DELETE FROM records WHERE ctid = ANY(ARRAY(\
     (SELECT ctid FROM records WHERE ts_in_id AND id < $1::text::uuid LIMIT $3) \
     UNION ALL \
     (SELECT ctid FROM records WHERE NOT ts_in_id AND ts_ms < $2 LIMIT $3)))";

pub async fn horizon(client: &Client) -> Result<Option<i64>, StoreError> {
    let statement = client.prepare_cached(SELECT_HORIZON).await?;
    Ok(client
        .query_opt(&statement, &[])
        .await?
        .map(|row| row.try_get(0))
        .transpose()?)
}

/// The horizon (its own statement, committed first), then one delete of up
/// to `limit` records of each kind.
pub async fn purge(client: &Client, before_ms: i64, limit: u32) -> Result<Purged, StoreError> {
    let advance = client.prepare_cached(ADVANCE).await?;
    let horizon: i64 = client
        .query_one(&advance, &[&before_ms])
        .await?
        .try_get(0)?;
    let delete = client.prepare_cached(DELETE_OLD).await?;
    let limit = i64::from(limit.max(1));
    let deleted = client
        .execute(&delete, &[&id_floor(horizon), &horizon, &limit])
        .await?;
    Ok(Purged {
        deleted,
        // Each kind was cut at `limit`: fewer than that of both means done.
        more: deleted >= u64::try_from(limit).unwrap_or(u64::MAX),
    })
}
