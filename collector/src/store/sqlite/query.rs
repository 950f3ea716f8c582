//! `GET /v1/usage` over SQLite: the raw/hourly/daily plan of `store::plan`,
//! read in one snapshot; sealed days come from the daily rollup.

use std::collections::HashMap;

use rusqlite::Connection;

use super::{retention, rollup, seal, spans};
use crate::domain::aggregate::{Sums, UsageReport};
use crate::domain::time::HOUR_MS;
use crate::domain::usage_query::UsageQuery;
use crate::store::{
    check_retention, group_partials, group_record_partials, period_start, plan_segments, RecordKey,
    Series, Source, StoreError,
};

const SELECT_ALL_SERIES: &str = "SELECT id, key_id, tags, model, provider, operation FROM series";

fn load_series(conn: &Connection) -> Result<HashMap<i64, Series>, StoreError> {
    let mut stmt = conn.prepare_cached(SELECT_ALL_SERIES)?;
    let mut rows = stmt.query([])?;
    let mut all = HashMap::new();
    while let Some(row) = rows.next()? {
        let tags: String = row.get(2)?;
        let series = Series::decode(row.get(1)?, &tags, row.get(3)?, row.get(4)?, row.get(5)?)?;
        all.insert(row.get(0)?, series);
    }
    Ok(all)
}

/// Sums are first folded per (series, period) in integers, then each of those
/// few partials is grouped by the query's dimensions. A query on
/// `requested_model` or labels reads its whole range from raw records.
pub(super) fn usage(conn: &Connection, query: &UsageQuery) -> Result<UsageReport, StoreError> {
    let period = query.period_ms();
    // One snapshot for every statement of the answer.
    let snapshot = conn.unchecked_transaction()?;
    // Retention commits its horizon before deleting: checked in the same
    // snapshot as the records read.
    check_retention(query, retention::horizon(&snapshot)?)?;
    if query.needs_records() {
        let mut partials: HashMap<RecordKey, Sums> = HashMap::new();
        spans::scan_detailed(&snapshot, query.from_ms, query.to_ms, |r| {
            let key = (
                r.series_id,
                period_start(period, r.ts_ms),
                r.requested_model,
                r.labels,
            );
            partials.entry(key).or_default().add(&r.sums);
        })?;
        let series = load_series(&snapshot)?;
        drop(snapshot);
        return group_record_partials(query, &partials, &series);
    }
    let mut partials: HashMap<(i64, i64), Sums> = HashMap::new();
    let mut fold = |series_id: i64, ms: i64, sums: Sums| {
        partials
            .entry((series_id, period_start(period, ms)))
            .or_default()
            .add(&sums);
    };
    let sealed_before = seal::sealed_before(&snapshot)?.unwrap_or(i64::MIN);
    for (source, from, to) in plan_segments(query.from_ms, query.to_ms) {
        match source {
            Source::Raw => spans::scan_raw(&snapshot, from, to, &mut fold)?,
            Source::Hourly => rollup::HOURLY.scan(&snapshot, from, to, &mut fold)?,
            // Hours are not in the daily rollup.
            Source::Daily if period == Some(HOUR_MS) => {
                rollup::HOURLY.scan(&snapshot, from, to, &mut fold)?;
            }
            Source::Daily => {
                // Sealed days from the daily rollup, the rest from the hourly.
                let split = sealed_before.max(from).min(to);
                if from < split {
                    rollup::DAILY.scan(&snapshot, from, split, &mut fold)?;
                }
                if split < to {
                    rollup::HOURLY.scan(&snapshot, split, to, &mut fold)?;
                }
            }
        }
    }
    let series = load_series(&snapshot)?;
    drop(snapshot); // read-only: ending it is enough
    group_partials(query, &partials, &series)
}

/// Tag names live in the series rows (one per distinct set of dimensions,
/// far fewer than records).
const SELECT_TAG_KEYS: &str =
    "SELECT DISTINCT j.key FROM series, json_each(series.tags) AS j ORDER BY 1";

pub(super) fn tag_keys(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(SELECT_TAG_KEYS)?;
    let keys = stmt
        .query_map([], |row| row.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(keys)
}
