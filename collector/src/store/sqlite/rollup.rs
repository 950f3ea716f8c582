//! The hourly and daily rollup tables of the SQLite store: their integer
//! keys, the per-batch upsert and the range read.
//!
//! A rollup row is keyed by one integer, `bucket` = period number * 2^32 +
//! series id (see `schema.sql`). As the table's rowid that key makes
//! an upsert one integer seek plus an in-place overwrite, about half the
//! instructions of the former (period_ms, series_id) WITHOUT ROWID key, and a
//! time range is still one key range because the period is the high part.

use rusqlite::{params, Connection, Row};

use super::chunks::{self, Statements};

use crate::domain::aggregate::Sums;
use crate::domain::time::{DAY_MS, HOUR_MS};
use crate::store::StoreError;

/// Series ids must fit the low 32 bits of a bucket.
const SERIES_BITS: u32 = 32;
const SERIES_MASK: i64 = (1 << SERIES_BITS) - 1;

/// One rollup table: its name and the length of its periods.
#[derive(Clone, Copy)]
pub(super) struct Rollup {
    table: &'static str,
    period_ms: i64,
}

pub(super) const HOURLY: Rollup = Rollup {
    table: "usage_hourly",
    period_ms: HOUR_MS,
};

pub(super) const DAILY: Rollup = Rollup {
    table: "usage_daily",
    period_ms: DAY_MS,
};

/// Refuses a series id that would not fit a bucket key. Series ids are
/// assigned 1, 2, 3… so this only guards against a corrupted file.
pub(super) fn check_series_id(id: i64) -> Result<i64, StoreError> {
    if (1..=SERIES_MASK).contains(&id) {
        Ok(id)
    } else {
        Err(StoreError::invalid(format!(
            "series id {id} is outside 1..=2^32-1 and cannot key a rollup row"
        )))
    }
}

impl Rollup {
    /// The key of the row holding `ts_ms` for `series_id` (a checked id).
    /// `None` only for a time so far from 1970 that the key overflows.
    pub(super) fn bucket(self, ts_ms: i64, series_id: i64) -> Option<i64> {
        self.first_bucket(ts_ms)?.checked_add(series_id)
    }

    /// The smallest key of the period starting at or containing `ms`.
    fn first_bucket(self, ms: i64) -> Option<i64> {
        ms.div_euclid(self.period_ms).checked_mul(1 << SERIES_BITS)
    }

    /// (series id, period start in ms) of a key.
    pub(super) fn decode(self, bucket: i64) -> (i64, i64) {
        (
            bucket & SERIES_MASK,
            (bucket >> SERIES_BITS) * self.period_ms,
        )
    }

    /// Adds each `(bucket, sums)` to its row, creating missing rows, with
    /// one multi-row upsert per chunk (see `chunks.rs`).
    pub(super) fn upsert(
        self,
        conn: &Connection,
        mut rows: Vec<(i64, Sums)>,
    ) -> Result<(), StoreError> {
        // In key order, so consecutive upserts land on the same b-tree pages.
        rows.sort_unstable_by_key(|(bucket, _)| *bucket);
        let mut statements = Statements::new(conn);
        for (which, range) in chunks::cut(rows.len()) {
            let stmt = statements.get(which, |n| self.upsert_sql(n))?;
            for (i, (bucket, s)) in rows[range].iter().enumerate() {
                let base = i * 11;
                stmt.raw_bind_parameter(base + 1, bucket)?;
                stmt.raw_bind_parameter(base + 2, s.requests)?;
                stmt.raw_bind_parameter(base + 3, s.errors)?;
                stmt.raw_bind_parameter(base + 4, s.input_tokens)?;
                stmt.raw_bind_parameter(base + 5, s.cached_input_tokens)?;
                stmt.raw_bind_parameter(base + 6, s.cache_write_input_tokens)?;
                stmt.raw_bind_parameter(base + 7, s.output_tokens)?;
                stmt.raw_bind_parameter(base + 8, s.reasoning_tokens)?;
                stmt.raw_bind_parameter(base + 9, s.cost_usd)?;
                stmt.raw_bind_parameter(base + 10, s.unpriced_requests)?;
                stmt.raw_bind_parameter(base + 11, s.denied)?;
            }
            stmt.raw_execute()?;
        }
        Ok(())
    }

    fn upsert_sql(self, rows: usize) -> String {
        format!(
            "INSERT INTO {} (bucket, requests, errors, input_tokens, cached_input_tokens, \
             cache_write_input_tokens, output_tokens, reasoning_tokens, cost_usd, \
             unpriced_requests, denied) \
             VALUES {} \
             ON CONFLICT (bucket) DO UPDATE SET \
             requests = requests + excluded.requests, errors = errors + excluded.errors, \
             input_tokens = input_tokens + excluded.input_tokens, \
             cached_input_tokens = cached_input_tokens + excluded.cached_input_tokens, \
             cache_write_input_tokens = cache_write_input_tokens + excluded.cache_write_input_tokens, \
             output_tokens = output_tokens + excluded.output_tokens, \
             reasoning_tokens = reasoning_tokens + excluded.reasoning_tokens, \
             cost_usd = cost_usd + excluded.cost_usd, \
             unpriced_requests = unpriced_requests + excluded.unpriced_requests, \
             denied = denied + excluded.denied",
            self.table,
            chunks::values(rows, 11)
        )
    }

    /// Calls `each(series_id, period_start_ms, sums)` for every row of the
    /// periods in `[from_ms, to_ms)`, both period-aligned.
    pub(super) fn scan(
        self,
        conn: &Connection,
        from_ms: i64,
        to_ms: i64,
        mut each: impl FnMut(i64, i64, Sums),
    ) -> Result<(), StoreError> {
        let (Some(from), Some(to)) = (self.first_bucket(from_ms), self.first_bucket(to_ms)) else {
            return Err(StoreError::invalid("usage range out of bounds"));
        };
        let sql = format!(
            "SELECT bucket, requests, errors, input_tokens, cached_input_tokens, \
             cache_write_input_tokens, output_tokens, reasoning_tokens, cost_usd, \
             unpriced_requests, denied \
             FROM {} WHERE bucket >= ?1 AND bucket < ?2",
            self.table
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(params![from, to])?;
        while let Some(row) = rows.next()? {
            let (series_id, start_ms) = self.decode(row.get(0)?);
            each(series_id, start_ms, sums_at(row, 1)?);
        }
        Ok(())
    }
}

/// The ten counters of a row, starting at column `first`: the `Sums`
/// fields in order, `denied` last (the column added by schema version 4).
pub(super) fn sums_at(row: &Row<'_>, first: usize) -> Result<Sums, rusqlite::Error> {
    Ok(Sums {
        requests: row.get(first)?,
        errors: row.get(first + 1)?,
        input_tokens: row.get(first + 2)?,
        cached_input_tokens: row.get(first + 3)?,
        cache_write_input_tokens: row.get(first + 4)?,
        output_tokens: row.get(first + 5)?,
        reasoning_tokens: row.get(first + 6)?,
        cost_usd: row.get(first + 7)?,
        unpriced_requests: row.get(first + 8)?,
        denied: row.get(first + 9)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_order_by_period_then_series_and_decode_back() {
        let ts = 1_793_577_600_000 + 5 * HOUR_MS + 123; // 2026-11-01T05:00:00.123Z
        let a = HOURLY.bucket(ts, 7).expect("in range");
        let b = HOURLY.bucket(ts + HOUR_MS, 1).expect("in range");
        assert!(
            a < b,
            "a later hour sorts after every series of an earlier one"
        );
        assert_eq!(HOURLY.decode(a), (7, ts - 123));
        assert_eq!(
            DAILY.decode(DAILY.bucket(ts, 9).expect("in range")).1,
            1_793_577_600_000
        );
        // Before 1970 the key is negative and still decodes exactly.
        let early = HOURLY.bucket(-HOUR_MS - 1, 3).expect("in range");
        assert_eq!(HOURLY.decode(early), (3, -2 * HOUR_MS));
        assert_eq!(HOURLY.bucket(i64::MAX, 1), None);
    }

    #[test]
    fn series_ids_must_fit_32_bits() {
        assert_eq!(check_series_id(1), Ok(1));
        assert_eq!(check_series_id(SERIES_MASK), Ok(SERIES_MASK));
        assert!(check_series_id(0).is_err());
        assert!(check_series_id(SERIES_MASK + 1).is_err());
    }
}
