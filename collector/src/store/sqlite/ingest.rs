//! The SQLite ingest path: one transaction per batch. Records are inserted
//! with `ON CONFLICT (id) DO NOTHING`, and only the rows actually inserted
//! feed the rollups, folded in Rust first so that each rollup row is written
//! once per batch.
//!
//! Per batch: resolve each record's series (`series.rs`), insert the
//! record rows 16 per statement (`records.rs`), upsert the hourly
//! rollup and, for days already sealed, the daily one (`rollup.rs`),
//! note where each hour's records went (`spans.rs`) and seal the days
//! the batch has left behind (`seal.rs`).
//!
//! Cost, callgrind instructions per record inside `insert_blocking` on the
//! collector bench's data (30,000 records at the 1M-record run's density):
//! 33,800 before this layout; 15,600 after, of which binding the 19 values
//! of a record row is ~4,100, the record and id-index b-tree inserts ~2,500,
//! the hourly upserts ~2,200 and the series lookup ~1,700.

use super::records::{self, RecordRow};
use super::spans::BatchSpans;
use super::{rollup, seal, Writer};
use crate::domain::aggregate::Sums;
use crate::domain::record::PricedRecord;
use crate::domain::time::floor_hour;
use crate::store::hash::FastMap;
use crate::store::rows::SeriesRef;
use crate::store::{BatchOutcome, StoreError};

/// Stores a batch in one transaction; see the module comment.
pub(super) fn insert_batch(
    writer: &mut Writer,
    records: &[PricedRecord],
) -> Result<BatchOutcome, StoreError> {
    let Writer { conn, series } = writer;
    let tx = conn.transaction()?;
    let mut outcome = BatchOutcome::default();
    let mut hourly: FastMap<i64, Sums> = FastMap::default();
    let mut daily: FastMap<i64, Sums> = FastMap::default();
    let mut spans = BatchSpans::default();
    let mut oldest_ts_ms = None;
    // Records of days before this one also go to the daily rollup.
    let sealed_before = seal::sealed_before(&tx)?.unwrap_or(i64::MIN);
    {
        let rows = records
            .iter()
            .map(|priced| {
                Ok(RecordRow {
                    priced,
                    series_id: series.id(&tx, &SeriesRef::of(&priced.record))?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let mut bad_ts = None;
        records::insert(&tx, &rows, |index, rowid| {
            let RecordRow { priced, series_id } = rows[index];
            let r = &priced.record;
            outcome.inserted += 1;
            outcome.unpriced_inserted += u64::from(priced.cost_usd.is_none());
            spans.add(floor_hour(r.ts_ms), rowid);
            oldest_ts_ms = Some(oldest_ts_ms.map_or(r.ts_ms, |t: i64| t.min(r.ts_ms)));
            let sums = Sums::of_record(priced);
            match rollup::HOURLY.bucket(r.ts_ms, series_id) {
                Some(hour) => hourly.entry(hour).or_default().add(&sums),
                None => bad_ts = Some(r.ts_ms),
            }
            if r.ts_ms < sealed_before {
                match rollup::DAILY.bucket(r.ts_ms, series_id) {
                    Some(day) => daily.entry(day).or_default().add(&sums),
                    None => bad_ts = Some(r.ts_ms),
                }
            }
        })?;
        if let Some(ts_ms) = bad_ts {
            return Err(StoreError::invalid(format!(
                "record ts {ts_ms} out of range"
            )));
        }
        outcome.duplicates = records.len() as u64 - outcome.inserted;
        // One upsert per distinct (period, series) of the batch, not per record.
        rollup::HOURLY.upsert(&tx, hourly.into_iter().collect())?;
        rollup::DAILY.upsert(&tx, daily.into_iter().collect())?;
        spans.write(&tx)?;
        if let Some(oldest) = oldest_ts_ms {
            seal::advance(
                &tx,
                (sealed_before != i64::MIN).then_some(sealed_before),
                oldest,
            )?;
        }
    }
    tx.commit()?;
    Ok(outcome)
}
