//! Retention over SQLite: the horizon in `retention_state`, and old records
//! deleted span by span (`record_spans`), a few thousand per transaction on
//! the writer connection, so ingest waits at most one short transaction.

use rusqlite::{params, Connection, OptionalExtension};

use crate::domain::time::HOUR_MS;
use crate::store::{Purged, StoreError};

const ADVANCE: &str = "INSERT INTO retention_state (id, records_before_ms) VALUES (1, ?1) \
     ON CONFLICT (id) DO UPDATE SET \
     records_before_ms = max(records_before_ms, excluded.records_before_ms)";

const SELECT_HORIZON: &str = "SELECT records_before_ms FROM retention_state WHERE id = 1";

/// Spans of hours wholly before the horizon, oldest first.
const SELECT_OLD_SPANS: &str = "SELECT hour_ms, first_rowid, last_rowid FROM record_spans \
     WHERE hour_ms <= ?1 ORDER BY hour_ms, first_rowid LIMIT 64";

const DELETE_RANGE: &str = "DELETE FROM records WHERE rowid >= ?1 AND rowid <= ?2 AND ts_ms < ?3";

const DELETE_SPAN: &str = "DELETE FROM record_spans WHERE hour_ms = ?1 AND first_rowid = ?2";

pub(super) fn horizon(conn: &Connection) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached(SELECT_HORIZON)?
        .query_row([], |row| row.get(0))
        .optional()?)
}

/// One short transaction: the horizon first, then spans until about `limit`
/// records are gone.
pub(super) fn purge(conn: &Connection, before_ms: i64, limit: u32) -> Result<Purged, StoreError> {
    let tx = conn.unchecked_transaction()?;
    tx.prepare_cached(ADVANCE)?.execute(params![before_ms])?;
    let horizon = horizon(&tx)?.unwrap_or(before_ms);
    let spans: Vec<(i64, i64, i64)> = tx
        .prepare_cached(SELECT_OLD_SPANS)?
        .query_map(params![horizon - HOUR_MS], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut purged = Purged::default();
    let mut done_spans = 0;
    {
        let mut delete_range = tx.prepare_cached(DELETE_RANGE)?;
        let mut delete_span = tx.prepare_cached(DELETE_SPAN)?;
        for (hour_ms, first, last) in &spans {
            if purged.deleted >= u64::from(limit) {
                break;
            }
            purged.deleted += delete_range.execute(params![first, last, horizon])? as u64;
            delete_span.execute(params![hour_ms, first])?;
            done_spans += 1;
        }
    }
    tx.commit()?;
    purged.more = done_spans < spans.len() || spans.len() == 64;
    Ok(purged)
}
