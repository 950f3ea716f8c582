//! One group commit: the batches the writer took from its queue, stored in one
//! transaction.
//!
//! - The rows of every batch are merged in stored-id order (the same total
//!   order on every replica, so concurrent inserts of the same ids wait on
//!   each other in one order and never deadlock) and an id repeated in a
//!   later batch of the group is a duplicate of the first.
//! - They go in with one binary `COPY` and no `ON CONFLICT`: an insert with
//!   `ON CONFLICT DO NOTHING` costs ~1.7 times a COPY row (measured, 1M
//!   rows), and duplicates are rare (a filter retrying a batch whose answer
//!   it lost). When one is already stored
//!   the unique index makes the COPY fail; the transaction then starts again,
//!   first reading which of the group's ids are stored (ours to skip), until
//!   the COPY goes through. A duplicate being inserted by another replica at
//!   that moment makes ours wait for it: stored once, reported as duplicate
//!   by exactly one.
//! - The hourly and daily rollups get the partials of exactly the rows
//!   copied, as additive upserts in key order, in the same transaction; so
//!   several collectors on one database stay exact. One upsert per group
//!   instead of per batch is what keeps the hot rows of the current hour from
//!   serializing concurrent batches.

use std::collections::HashSet;

// `bytes::Bytes` (cheap slices of one buffer), as axum re-exports it.
use axum::body::Bytes;
use deadpool_postgres::{Client, Transaction};
use futures_util::SinkExt;
use tokio_postgres::error::SqlState;

use super::copy_format::{COPY_RECORDS, HEADER, TRAILER};
use super::prepare::{merge_rollup, Prepared, Rollup};
use super::stored_id::StoredId;
use crate::store::{BatchOutcome, StoreError};

/// Give up after this many attempts; each retry follows a duplicate that was
/// committed by another replica while we wrote, so it takes a storm of
/// replayed batches to get here.
const MAX_ATTEMPTS: usize = 8;

/// Which of the given ids are stored. `$1`: uuid ids as 32 hex digits,
/// `$2`: other ids. Answers ids in the `StoredId::of` text form.
const SELECT_STORED: &str = "SELECT replace(id::text, '-', '') FROM records \
     WHERE id = ANY($1::text[]::uuid[]) \
     UNION ALL SELECT id_text FROM records WHERE id_text = ANY($2::text[])";

/// `{table}`/`{bucket}` are fixed identifiers, never input.
const UPSERT_ROLLUP: &str = "INSERT INTO {table} AS r ({bucket}, series_id, requests, errors, \
     input_tokens, cached_input_tokens, cache_write_input_tokens, output_tokens, \
     reasoning_tokens, cost_usd, unpriced_requests, denied) \
     SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::int8[], $4::int8[], $5::int8[], \
     $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::float8[], $11::int8[], \
     $12::int8[]) \
     ON CONFLICT ({bucket}, series_id) DO UPDATE SET \
     requests = r.requests + EXCLUDED.requests, errors = r.errors + EXCLUDED.errors, \
     input_tokens = r.input_tokens + EXCLUDED.input_tokens, \
     cached_input_tokens = r.cached_input_tokens + EXCLUDED.cached_input_tokens, \
     cache_write_input_tokens = r.cache_write_input_tokens + EXCLUDED.cache_write_input_tokens, \
     output_tokens = r.output_tokens + EXCLUDED.output_tokens, \
     reasoning_tokens = r.reasoning_tokens + EXCLUDED.reasoning_tokens, \
     cost_usd = r.cost_usd + EXCLUDED.cost_usd, \
     unpriced_requests = r.unpriced_requests + EXCLUDED.unpriced_requests, \
     denied = r.denied + EXCLUDED.denied";

/// The rows of a group in stored-id order, and which of them are skipped.
struct Plan<'a> {
    group: &'a [&'a Prepared],
    /// (batch, row) in id order; equal ids adjacent, earlier batch first.
    order: Vec<(usize, usize)>,
    /// `skipped[batch][row]`: a duplicate, not to be written.
    skipped: Vec<Vec<bool>>,
}

impl<'a> Plan<'a> {
    fn new(group: &'a [&'a Prepared]) -> Self {
        let mut order: Vec<(usize, usize)> = group
            .iter()
            .enumerate()
            .flat_map(|(b, batch)| (0..batch.rows.len()).map(move |r| (b, r)))
            .collect();
        // Each batch is sorted already and consecutive batches rarely
        // overlap (ids start with their timestamp), so this is close to
        // linear; ties keep arrival order.
        order.sort_by(|x, y| {
            let id = |(b, r): (usize, usize)| &group[b].rows[r].id;
            id(*x).cmp(id(*y)).then(x.0.cmp(&y.0))
        });
        let mut skipped: Vec<Vec<bool>> = group.iter().map(|b| vec![false; b.rows.len()]).collect();
        let mut previous: Option<&StoredId> = None;
        for (b, r) in &order {
            let id = &group[*b].rows[*r].id;
            if previous == Some(id) {
                skipped[*b][*r] = true;
            }
            previous = Some(id);
        }
        Self {
            group,
            order,
            skipped,
        }
    }

    fn is_skipped(&self, b: usize, r: usize) -> bool {
        self.skipped
            .get(b)
            .and_then(|s| s.get(r))
            .copied()
            .unwrap_or(true)
    }

    /// The ids still to write, split as `SELECT_STORED` takes them.
    fn pending_ids(&self) -> (Vec<&'a str>, Vec<&'a str>) {
        let (mut hex, mut text) = (Vec::new(), Vec::new());
        for (b, r) in &self.order {
            if self.is_skipped(*b, *r) {
                continue;
            }
            let batch = self.group[*b];
            let row = &batch.rows[*r];
            let Some(priced) = batch.records.get(row.record) else {
                continue;
            };
            match row.id {
                StoredId::Uuid(_) => hex.push(priced.record.id.as_str()),
                StoredId::Text(_) => text.push(priced.record.id.as_str()),
            }
        }
        (hex, text)
    }

    fn skip_stored(&mut self, stored: &HashSet<StoredId>) {
        for (b, r) in &self.order {
            if stored.contains(&self.group[*b].rows[*r].id) {
                if let Some(flag) = self.skipped.get_mut(*b).and_then(|s| s.get_mut(*r)) {
                    *flag = true;
                }
            }
        }
    }

    /// The COPY stream: header, the tuples of the rows to write in id order
    /// (runs of one batch as one slice, no copying), trailer.
    fn copy_chunks(&self) -> (Vec<Bytes>, u64) {
        let mut chunks = vec![Bytes::from_static(HEADER)];
        let mut rows = 0u64;
        let mut run: Option<(usize, usize, usize)> = None;
        for (b, r) in &self.order {
            if self.is_skipped(*b, *r) {
                continue;
            }
            rows += 1;
            let row = &self.group[*b].rows[*r];
            match &mut run {
                Some((rb, _, end)) if *rb == *b && *end == row.start => *end = row.end,
                _ => {
                    if let Some((rb, start, end)) = run.take() {
                        chunks.push(self.group[rb].tuples.slice(start..end));
                    }
                    run = Some((*b, row.start, row.end));
                }
            }
        }
        if let Some((rb, start, end)) = run {
            chunks.push(self.group[rb].tuples.slice(start..end));
        }
        chunks.push(Bytes::from_static(TRAILER));
        (chunks, rows)
    }

    /// Rollup partials of the rows to write, every batch merged.
    fn rollups(&self) -> (Rollup, Rollup) {
        let mut hourly = Rollup::new();
        let mut daily = Rollup::new();
        for (batch, skipped) in self.group.iter().zip(&self.skipped) {
            if skipped.iter().any(|s| *s) {
                let (h, d) = batch.rollups_without(skipped);
                merge_rollup(&mut hourly, &h);
                merge_rollup(&mut daily, &d);
            } else {
                merge_rollup(&mut hourly, &batch.hourly);
                merge_rollup(&mut daily, &batch.daily);
            }
        }
        (hourly, daily)
    }

    fn outcomes(&self) -> Vec<BatchOutcome> {
        self.group
            .iter()
            .zip(&self.skipped)
            .map(|(batch, skipped)| {
                let mut outcome = BatchOutcome::default();
                for (row, skip) in batch.rows.iter().zip(skipped) {
                    if !*skip {
                        outcome.inserted += 1;
                        let unpriced = batch
                            .records
                            .get(row.record)
                            .is_some_and(|p| p.cost_usd.is_none());
                        outcome.unpriced_inserted += u64::from(unpriced);
                    }
                }
                outcome.duplicates = (batch.records.len() as u64).saturating_sub(outcome.inserted);
                outcome
            })
            .collect()
    }
}

/// Stores a group of batches in one transaction; one outcome per batch.
pub async fn write_group(
    client: &mut Client,
    group: &[&Prepared],
) -> Result<Vec<BatchOutcome>, StoreError> {
    let mut plan = Plan::new(group);
    for attempt in 0..MAX_ATTEMPTS {
        let tx = client.transaction().await?;
        if attempt > 0 {
            let stored = stored_ids(&tx, &plan).await?;
            plan.skip_stored(&stored);
        }
        match copy_rows(&tx, &plan).await {
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => continue,
            other => other?,
        }
        let (hourly, daily) = plan.rollups();
        upsert_rollup(&tx, "usage_hourly", "hour_ms", &hourly).await?;
        upsert_rollup(&tx, "usage_daily", "day_ms", &daily).await?;
        tx.commit().await?;
        return Ok(plan.outcomes());
    }
    Err(StoreError::transient(format!(
        "batch not stored: its ids kept colliding with concurrent inserts \
         ({MAX_ATTEMPTS} attempts)"
    )))
}

async fn stored_ids(
    tx: &Transaction<'_>,
    plan: &Plan<'_>,
) -> Result<HashSet<StoredId>, StoreError> {
    let (hex, text) = plan.pending_ids();
    let statement = tx.prepare_cached(SELECT_STORED).await?;
    let rows = tx.query(&statement, &[&hex, &text]).await?;
    rows.iter()
        .map(|row| Ok(StoredId::of(row.try_get::<_, &str>(0)?)))
        .collect()
}

/// Writes the rows of the plan not skipped; fails with the server's unique
/// violation when one of them is stored already.
async fn copy_rows(tx: &Transaction<'_>, plan: &Plan<'_>) -> Result<(), tokio_postgres::Error> {
    let (chunks, expected) = plan.copy_chunks();
    if expected == 0 {
        return Ok(());
    }
    let sink = tx.copy_in::<_, Bytes>(COPY_RECORDS).await?;
    let mut sink = std::pin::pin!(sink);
    for chunk in chunks {
        sink.feed(chunk).await?;
    }
    sink.as_mut().finish().await?;
    Ok(())
}

/// The rollup rows of a group as column arrays.
struct RollupColumns {
    bucket_ms: Vec<i64>,
    series_id: Vec<i64>,
    requests: Vec<i64>,
    errors: Vec<i64>,
    input: Vec<i64>,
    cached_input: Vec<i64>,
    cache_write_input: Vec<i64>,
    output: Vec<i64>,
    reasoning: Vec<i64>,
    cost_usd: Vec<f64>,
    unpriced: Vec<i64>,
    denied: Vec<i64>,
}

impl RollupColumns {
    fn of(sums: &Rollup) -> Self {
        let n = sums.len();
        let mut c = Self {
            bucket_ms: Vec::with_capacity(n),
            series_id: Vec::with_capacity(n),
            requests: Vec::with_capacity(n),
            errors: Vec::with_capacity(n),
            input: Vec::with_capacity(n),
            cached_input: Vec::with_capacity(n),
            cache_write_input: Vec::with_capacity(n),
            output: Vec::with_capacity(n),
            reasoning: Vec::with_capacity(n),
            cost_usd: Vec::with_capacity(n),
            unpriced: Vec::with_capacity(n),
            denied: Vec::with_capacity(n),
        };
        for ((bucket_ms, series_id), s) in sums {
            c.bucket_ms.push(*bucket_ms);
            c.series_id.push(*series_id);
            c.requests.push(s.requests);
            c.errors.push(s.errors);
            c.input.push(s.input_tokens);
            c.cached_input.push(s.cached_input_tokens);
            c.cache_write_input.push(s.cache_write_input_tokens);
            c.output.push(s.output_tokens);
            c.reasoning.push(s.reasoning_tokens);
            c.cost_usd.push(s.cost_usd);
            c.unpriced.push(s.unpriced_requests);
            c.denied.push(s.denied);
        }
        c
    }
}

/// One additive upsert for every (bucket, series) of the group, in key order.
async fn upsert_rollup(
    tx: &Transaction<'_>,
    table: &str,
    bucket: &str,
    sums: &Rollup,
) -> Result<(), StoreError> {
    if sums.is_empty() {
        return Ok(());
    }
    let c = RollupColumns::of(sums);
    let sql = UPSERT_ROLLUP
        .replace("{table}", table)
        .replace("{bucket}", bucket);
    let statement = tx.prepare_cached(&sql).await?;
    tx.execute(
        &statement,
        &[
            &c.bucket_ms,
            &c.series_id,
            &c.requests,
            &c.errors,
            &c.input,
            &c.cached_input,
            &c.cache_write_input,
            &c.output,
            &c.reasoning,
            &c.cost_usd,
            &c.unpriced,
            &c.denied,
        ],
    )
    .await?;
    Ok(())
}
