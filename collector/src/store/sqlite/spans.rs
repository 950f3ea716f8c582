//! Where each hour's raw records are (`record_spans`, see the schema): how a
//! usage query reads the partial edge hours of its range from `records`
//! without an index on `ts_ms`.
//!
//! A batch writes one row per hour its inserted records fall in: the
//! smallest and largest rowid it gave records of that hour. A reader takes
//! the spans of the hours it needs, merges those that (nearly) touch, and
//! scans each rowid range, keeping the rows whose `ts_ms` is in range.

use rusqlite::{params, Connection};

use crate::domain::aggregate::Sums;
use crate::domain::time::floor_hour;
use crate::store::StoreError;

use super::rollup::sums_at;

const INSERT_SPAN: &str =
    "INSERT INTO record_spans (hour_ms, first_rowid, last_rowid) VALUES (?1, ?2, ?3)";

const SELECT_SPANS: &str =
    "SELECT first_rowid, last_rowid FROM record_spans WHERE hour_ms >= ?1 AND hour_ms < ?2";

const SELECT_RAW: &str = "SELECT series_id, ts_ms, 1, (status >= 400 OR error IS NOT NULL), \
     input_tokens, cached_input_tokens, cache_write_input_tokens, output_tokens, \
     reasoning_tokens, coalesce(cost_usd, 0.0), (cost_usd IS NULL), \
     coalesce(error IN ('invalid_api_key', 'rate_limit_exceeded', 'budget_exceeded', \
     'caps_unavailable'), 0) \
     FROM records WHERE rowid >= ?1 AND rowid <= ?2 AND ts_ms >= ?3 AND ts_ms < ?4";

/// `SELECT_RAW` with the two record-only dimensions after the sums.
const SELECT_RAW_DETAILED: &str = "SELECT series_id, ts_ms, 1, \
     (status >= 400 OR error IS NOT NULL), input_tokens, cached_input_tokens, \
     cache_write_input_tokens, output_tokens, reasoning_tokens, coalesce(cost_usd, 0.0), \
     (cost_usd IS NULL), coalesce(error IN ('invalid_api_key', 'rate_limit_exceeded', \
     'budget_exceeded', 'caps_unavailable'), 0), requested_model, labels \
     FROM records WHERE rowid >= ?1 AND rowid <= ?2 AND ts_ms >= ?3 AND ts_ms < ?4";

/// Two spans this close (in rowids) are read as one range: scanning a few
/// rows of other hours costs less than another statement.
const MERGE_GAP: i64 = 4_096;

/// The spans of one batch: (hour_ms, first rowid, last rowid). A batch
/// touches one to a few hours, so a short list beats a map.
#[derive(Default)]
pub(super) struct BatchSpans(Vec<(i64, i64, i64)>);

impl BatchSpans {
    /// Notes that the record stored at `rowid` has its `ts_ms` in `hour_ms`.
    pub(super) fn add(&mut self, hour_ms: i64, rowid: i64) {
        match self
            .0
            .iter_mut()
            .rev()
            .find(|(hour, _, _)| *hour == hour_ms)
        {
            Some((_, first, last)) => {
                *first = (*first).min(rowid);
                *last = (*last).max(rowid);
            }
            None => self.0.push((hour_ms, rowid, rowid)),
        }
    }

    pub(super) fn write(self, conn: &Connection) -> Result<(), StoreError> {
        let mut insert = conn.prepare_cached(INSERT_SPAN)?;
        for (hour_ms, first, last) in self.0 {
            insert.execute(params![hour_ms, first, last])?;
        }
        Ok(())
    }
}

/// Calls `each(series_id, ts_ms, sums)` for every raw record in `[from, to)`.
pub(super) fn scan_raw(
    conn: &Connection,
    from: i64,
    to: i64,
    mut each: impl FnMut(i64, i64, Sums),
) -> Result<(), StoreError> {
    let mut spans = spans_of(conn, from, to)?;
    let mut stmt = conn.prepare_cached(SELECT_RAW)?;
    for (first, last) in merge(&mut spans) {
        let mut rows = stmt.query(params![first, last, from, to])?;
        while let Some(row) = rows.next()? {
            each(row.get(0)?, row.get(1)?, sums_at(row, 2)?);
        }
    }
    Ok(())
}

/// A raw record with the dimensions only records keep.
pub(super) struct Detailed {
    pub series_id: i64,
    pub ts_ms: i64,
    pub requested_model: Option<String>,
    /// Canonical JSON, as stored.
    pub labels: String,
    pub sums: Sums,
}

/// Calls `each` for every raw record in `[from, to)`, with its
/// `requested_model` and labels.
pub(super) fn scan_detailed(
    conn: &Connection,
    from: i64,
    to: i64,
    mut each: impl FnMut(Detailed),
) -> Result<(), StoreError> {
    let mut spans = spans_of(conn, from, to)?;
    let mut stmt = conn.prepare_cached(SELECT_RAW_DETAILED)?;
    for (first, last) in merge(&mut spans) {
        let mut rows = stmt.query(params![first, last, from, to])?;
        while let Some(row) = rows.next()? {
            each(Detailed {
                series_id: row.get(0)?,
                ts_ms: row.get(1)?,
                sums: sums_at(row, 2)?,
                requested_model: row.get(12)?,
                labels: row.get(13)?,
            });
        }
    }
    Ok(())
}

fn spans_of(conn: &Connection, from: i64, to: i64) -> Result<Vec<(i64, i64)>, StoreError> {
    Ok(conn
        .prepare_cached(SELECT_SPANS)?
        .query_map(params![floor_hour(from), to], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<Result<_, _>>()?)
}

/// Sorts `spans` and joins those that overlap or lie within `MERGE_GAP`.
fn merge(spans: &mut [(i64, i64)]) -> Vec<(i64, i64)> {
    spans.sort_unstable();
    let mut merged: Vec<(i64, i64)> = Vec::new();
    for &(first, last) in spans.iter() {
        match merged.last_mut() {
            Some((_, end)) if first <= end.saturating_add(MERGE_GAP) => *end = (*end).max(last),
            _ => merged.push((first, last)),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_keeps_one_span_per_hour() {
        let mut spans = BatchSpans::default();
        for (hour, rowid) in [(0, 5), (3_600_000, 6), (0, 7), (0, 4), (3_600_000, 9)] {
            spans.add(hour, rowid);
        }
        assert_eq!(spans.0, vec![(0, 4, 7), (3_600_000, 6, 9)]);
    }

    #[test]
    fn near_spans_merge_and_far_ones_stay_apart() {
        let far = 10 * MERGE_GAP;
        let mut spans = vec![
            (far, far + 10),
            (1, 10),
            (5, 20),
            (20 + MERGE_GAP, 30 + MERGE_GAP),
        ];
        assert_eq!(
            merge(&mut spans),
            vec![(1, 30 + MERGE_GAP), (far, far + 10)]
        );
        assert!(merge(&mut []).is_empty());
    }
}
