//! Sealed days: the daily rollup holds exactly the days before
//! `rollup_state.daily_before_ms` (see the schema). Ingest adds a record to
//! the daily rollup only when its day is already sealed; sealing a day sums
//! its hourly rows into daily rows once. Readers answer sealed days from the
//! daily rollup and later whole days from the hourly one.
//!
//! Exact at every commit: a day is either sealed (its daily rows are the sum
//! of its hourly rows, kept so by ingest) or not (no daily rows). Sealing
//! never changes a day that is already sealed, so a reader that saw an older
//! boundary still reads each day from one complete source.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};

use crate::domain::aggregate::Sums;
use crate::domain::time::{DAY_MS, HOUR_MS};
use crate::store::StoreError;

use super::rollup::{DAILY, HOURLY};

const SELECT_SEALED: &str = "SELECT daily_before_ms FROM rollup_state WHERE id = 1";

const UPDATE_SEALED: &str = "INSERT INTO rollup_state (id, daily_before_ms) VALUES (1, ?1) \
     ON CONFLICT (id) DO UPDATE SET daily_before_ms = excluded.daily_before_ms";

/// Days stay unsealed until the batches' oldest records are this far into a
/// later day, so that records arriving a little late (clock skew, retries)
/// rarely cost a daily upsert.
const GRACE_MS: i64 = HOUR_MS;

/// Days before the returned ms (a day start) are sealed; `None`: none is.
pub(super) fn sealed_before(conn: &Connection) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached(SELECT_SEALED)?
        .query_row([], |row| row.get(0))
        .optional()?)
}

/// Seals every day that ended at least `GRACE_MS` before `oldest_ts_ms` (the
/// oldest record of the batch just written), in the caller's transaction.
pub(super) fn advance(
    conn: &Connection,
    sealed: Option<i64>,
    oldest_ts_ms: i64,
) -> Result<(), StoreError> {
    let until = oldest_ts_ms.saturating_sub(GRACE_MS).div_euclid(DAY_MS) * DAY_MS;
    let from = match sealed {
        Some(from) => from,
        None => match first_hourly_day(conn)? {
            Some(day) => day,
            None => return Ok(()),
        },
    };
    if until <= from {
        return Ok(());
    }
    let mut days: HashMap<i64, Sums> = HashMap::new();
    let mut overflow = false;
    HOURLY.scan(conn, from, until, |series_id, hour_ms, sums| {
        match DAILY.bucket(hour_ms, series_id) {
            Some(bucket) => days.entry(bucket).or_default().add(&sums),
            None => overflow = true,
        }
    })?;
    if overflow {
        return Err(StoreError::invalid("hourly row out of range"));
    }
    DAILY.upsert(conn, days.into_iter().collect())?;
    conn.prepare_cached(UPDATE_SEALED)?
        .execute(params![until])?;
    Ok(())
}

/// The start of the day of the oldest hourly row, if any.
fn first_hourly_day(conn: &Connection) -> Result<Option<i64>, StoreError> {
    let first: Option<i64> =
        conn.query_row("SELECT min(bucket) FROM usage_hourly", [], |row| row.get(0))?;
    Ok(first.map(|bucket| HOURLY.decode(bucket).1.div_euclid(DAY_MS) * DAY_MS))
}
