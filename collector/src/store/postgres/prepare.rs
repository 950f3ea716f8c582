//! The per-batch half of ingest, done by the caller's task before the batch
//! joins a group commit (so it runs in parallel across HTTP requests): sort by
//! stored id, drop in-batch duplicates, encode the COPY tuples and fold the
//! rollup partials.

use std::collections::BTreeMap;

// `bytes::Bytes` (cheap slices of one buffer), as axum re-exports it.
use axum::body::Bytes;

use super::copy_format::encode_tuple;
use super::stored_id::StoredId;
use crate::domain::aggregate::Sums;
use crate::domain::record::PricedRecord;
use crate::domain::time::{floor_hour, DAY_MS};

/// Additive rollup rows keyed by (bucket start ms, series id), in key order
/// (the order their row locks are taken in, the same on every replica).
pub type Rollup = BTreeMap<(i64, i64), Sums>;

/// One row to store: a record that is the first of its id in the batch.
#[derive(Debug)]
pub struct Row {
    pub id: StoredId,
    /// Index into `Prepared::records`.
    pub record: usize,
    /// Its tuple: `Prepared::tuples[start..end]`.
    pub start: usize,
    pub end: usize,
}

/// A batch ready to be written.
pub struct Prepared {
    pub records: Vec<PricedRecord>,
    pub series_ids: Vec<i64>,
    /// Sorted by id, distinct ids.
    pub rows: Vec<Row>,
    /// The COPY tuples of `rows`, in row order.
    pub tuples: Bytes,
    /// Rollup partials of every row.
    pub hourly: Rollup,
    pub daily: Rollup,
}

impl Prepared {
    /// `series_ids[i]` is the series of `records[i]`.
    pub fn new(records: Vec<PricedRecord>, series_ids: Vec<i64>) -> Self {
        let mut order: Vec<(StoredId, usize)> = records
            .iter()
            .enumerate()
            .map(|(i, p)| (StoredId::of(&p.record.id), i))
            .collect();
        // The index breaks ties, so the first record of a repeated id is the
        // one stored, as with `ON CONFLICT DO NOTHING` in arrival order.
        order.sort_unstable();
        order.dedup_by(|later, first| later.0 == first.0);

        // ~190 bytes per tuple for typical records.
        let mut tuples = Vec::with_capacity(order.len() * 200);
        let mut rows = Vec::with_capacity(order.len());
        let mut hourly = Rollup::new();
        let mut daily = Rollup::new();
        for (id, i) in order {
            let (Some(priced), Some(series_id)) = (records.get(i), series_ids.get(i)) else {
                continue;
            };
            let start = tuples.len();
            encode_tuple(&mut tuples, priced, &id, *series_id);
            rows.push(Row {
                id,
                record: i,
                start,
                end: tuples.len(),
            });
            add_to_rollups(&mut hourly, &mut daily, priced, *series_id);
        }
        Self {
            records,
            series_ids,
            rows,
            tuples: Bytes::from(tuples),
            hourly,
            daily,
        }
    }

    /// The rollup partials of the rows not marked in `skipped` (rows found
    /// stored already, or repeated in an earlier batch of the same group).
    pub fn rollups_without(&self, skipped: &[bool]) -> (Rollup, Rollup) {
        let mut hourly = Rollup::new();
        let mut daily = Rollup::new();
        for (row, skip) in self.rows.iter().zip(skipped) {
            if *skip {
                continue;
            }
            if let (Some(priced), Some(series_id)) = (
                self.records.get(row.record),
                self.series_ids.get(row.record),
            ) {
                add_to_rollups(&mut hourly, &mut daily, priced, *series_id);
            }
        }
        (hourly, daily)
    }
}

fn add_to_rollups(hourly: &mut Rollup, daily: &mut Rollup, priced: &PricedRecord, series_id: i64) {
    let sums = Sums::of_record(priced);
    let ts = priced.record.ts_ms;
    hourly
        .entry((floor_hour(ts), series_id))
        .or_default()
        .add(&sums);
    daily
        .entry((ts.div_euclid(DAY_MS) * DAY_MS, series_id))
        .or_default()
        .add(&sums);
}

/// Adds every partial of `from` into `into`.
pub fn merge_rollup(into: &mut Rollup, from: &Rollup) {
    for (key, sums) in from {
        into.entry(*key).or_default().add(sums);
    }
}
