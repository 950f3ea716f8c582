//! Idempotent batched ingest.
//!
//! One transaction per batch: the records go in with one `UNNEST` insert
//! (`ON CONFLICT (id) DO NOTHING RETURNING …`), and the hourly and daily
//! rollups are fed from exactly the rows that insert returned, with additive
//! upserts. A record another replica already stored is never returned, so it
//! never reaches a rollup: several collectors on one database stay exact.
//!
//! Deadlocks between replicas are avoided by taking row locks in one global
//! order: records sorted by id, then hourly rows sorted by key, then daily.

use std::collections::BTreeMap;

use deadpool_postgres::{Client, Transaction};

use super::series::SeriesCache;
use crate::domain::aggregate::Sums;
use crate::domain::record::{map_to_json, PricedRecord};
use crate::domain::time::{floor_hour, DAY_MS};
use crate::store::{BatchOutcome, StoreError};

const INSERT_RECORDS: &str = "INSERT INTO records (id, ts_ms, duration_ms, ttft_ms, gateway, \
     key_id, auth, tags, labels, provider, operation, model, requested_model, stream, status, \
     error, input_tokens, cached_input_tokens, cache_write_input_tokens, output_tokens, \
     reasoning_tokens, cost_usd, price_version, series_id) \
     SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::text[], \
     $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], \
     $13::text[], $14::bool[], $15::int4[], $16::text[], $17::int8[], $18::int8[], $19::int8[], \
     $20::int8[], $21::int8[], $22::float8[], $23::text[], $24::int8[]) \
     ON CONFLICT (id) DO NOTHING \
     RETURNING ts_ms, series_id, (status >= 400 OR error IS NOT NULL)::int4::int8, input_tokens, \
     cached_input_tokens, cache_write_input_tokens, output_tokens, reasoning_tokens, cost_usd";

/// `{table}`/`{bucket}` are fixed identifiers, never input.
const UPSERT_ROLLUP: &str = "INSERT INTO {table} AS r ({bucket}, series_id, requests, errors, \
     input_tokens, cached_input_tokens, cache_write_input_tokens, output_tokens, \
     reasoning_tokens, cost_usd, unpriced_requests) \
     SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::int8[], $4::int8[], $5::int8[], \
     $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::float8[], $11::int8[]) \
     ON CONFLICT ({bucket}, series_id) DO UPDATE SET \
     requests = r.requests + EXCLUDED.requests, errors = r.errors + EXCLUDED.errors, \
     input_tokens = r.input_tokens + EXCLUDED.input_tokens, \
     cached_input_tokens = r.cached_input_tokens + EXCLUDED.cached_input_tokens, \
     cache_write_input_tokens = r.cache_write_input_tokens + EXCLUDED.cache_write_input_tokens, \
     output_tokens = r.output_tokens + EXCLUDED.output_tokens, \
     reasoning_tokens = r.reasoning_tokens + EXCLUDED.reasoning_tokens, \
     cost_usd = r.cost_usd + EXCLUDED.cost_usd, \
     unpriced_requests = r.unpriced_requests + EXCLUDED.unpriced_requests";

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The batch as column arrays, rows sorted by id.
#[derive(Default)]
struct Columns<'a> {
    id: Vec<&'a str>,
    ts_ms: Vec<i64>,
    duration_ms: Vec<Option<i64>>,
    ttft_ms: Vec<Option<i64>>,
    gateway: Vec<&'a str>,
    key_id: Vec<&'a str>,
    auth: Vec<Option<&'a str>>,
    tags: Vec<String>,
    labels: Vec<String>,
    provider: Vec<&'a str>,
    operation: Vec<&'a str>,
    model: Vec<Option<&'a str>>,
    requested_model: Vec<Option<&'a str>>,
    stream: Vec<Option<bool>>,
    status: Vec<i32>,
    error: Vec<Option<&'a str>>,
    input: Vec<i64>,
    cached_input: Vec<i64>,
    cache_write_input: Vec<i64>,
    output: Vec<i64>,
    reasoning: Vec<i64>,
    cost_usd: Vec<Option<f64>>,
    price_version: Vec<&'a str>,
    series_id: Vec<i64>,
}

impl<'a> Columns<'a> {
    fn push(&mut self, priced: &'a PricedRecord, tags: String, series_id: i64) {
        let r = &priced.record;
        self.id.push(&r.id);
        self.ts_ms.push(r.ts_ms);
        self.duration_ms.push(r.duration_ms.map(to_i64));
        self.ttft_ms.push(r.ttft_ms.map(to_i64));
        self.gateway.push(&r.gateway);
        self.key_id.push(&r.key_id);
        self.auth.push(r.auth.as_deref());
        self.tags.push(tags);
        self.labels.push(map_to_json(&r.labels));
        self.provider.push(&r.provider);
        self.operation.push(&r.operation);
        self.model.push(r.model.as_deref());
        self.requested_model.push(r.requested_model.as_deref());
        self.stream.push(r.stream);
        self.status.push(i32::from(r.status));
        self.error.push(r.error.as_deref());
        self.input.push(to_i64(r.tokens.input));
        self.cached_input.push(to_i64(r.tokens.cached_input));
        self.cache_write_input
            .push(to_i64(r.tokens.cache_write_input));
        self.output.push(to_i64(r.tokens.output));
        self.reasoning.push(to_i64(r.tokens.reasoning));
        self.cost_usd.push(priced.cost_usd);
        self.price_version.push(&priced.price_version);
        self.series_id.push(series_id);
    }
}

/// Stores one batch; see the module comment for the guarantees.
pub async fn insert_batch(
    client: &mut Client,
    series: &SeriesCache,
    records: &[PricedRecord],
) -> Result<BatchOutcome, StoreError> {
    if records.is_empty() {
        return Ok(BatchOutcome::default());
    }
    // Series rows are committed on their own first: they are only interned
    // dimensions, harmless if the batch then fails, and never deleted.
    let tags: Vec<String> = records
        .iter()
        .map(|p| map_to_json(&p.record.tags))
        .collect();
    let series_ids = series.resolve(client, records, &tags).await?;

    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_by(|a, b| records[*a].record.id.cmp(&records[*b].record.id));
    let mut columns = Columns::default();
    for i in order {
        if let (Some(priced), Some(tags), Some(id)) =
            (records.get(i), tags.get(i), series_ids.get(i))
        {
            columns.push(priced, tags.clone(), *id);
        }
    }

    let tx = client.transaction().await?;
    let inserted = insert_records(&tx, &columns).await?;
    let mut hourly: BTreeMap<(i64, i64), Sums> = BTreeMap::new();
    let mut daily: BTreeMap<(i64, i64), Sums> = BTreeMap::new();
    let mut outcome = BatchOutcome::default();
    for (ts_ms, series_id, sums) in &inserted {
        outcome.inserted += 1;
        outcome.unpriced_inserted += u64::try_from(sums.unpriced_requests).unwrap_or(0);
        hourly
            .entry((floor_hour(*ts_ms), *series_id))
            .or_default()
            .add(sums);
        daily
            .entry((ts_ms.div_euclid(DAY_MS) * DAY_MS, *series_id))
            .or_default()
            .add(sums);
    }
    outcome.duplicates = (records.len() as u64).saturating_sub(outcome.inserted);
    upsert_rollup(&tx, "usage_hourly", "hour_ms", &hourly).await?;
    upsert_rollup(&tx, "usage_daily", "day_ms", &daily).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// Inserts the rows; answers (ts_ms, series_id, sums) of each row inserted.
async fn insert_records(
    tx: &Transaction<'_>,
    c: &Columns<'_>,
) -> Result<Vec<(i64, i64, Sums)>, StoreError> {
    let statement = tx.prepare_cached(INSERT_RECORDS).await?;
    let rows = tx
        .query(
            &statement,
            &[
                &c.id,
                &c.ts_ms,
                &c.duration_ms,
                &c.ttft_ms,
                &c.gateway,
                &c.key_id,
                &c.auth,
                &c.tags,
                &c.labels,
                &c.provider,
                &c.operation,
                &c.model,
                &c.requested_model,
                &c.stream,
                &c.status,
                &c.error,
                &c.input,
                &c.cached_input,
                &c.cache_write_input,
                &c.output,
                &c.reasoning,
                &c.cost_usd,
                &c.price_version,
                &c.series_id,
            ],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let cost: Option<f64> = row.try_get(8)?;
            let sums = Sums {
                requests: 1,
                errors: row.try_get(2)?,
                input_tokens: row.try_get(3)?,
                cached_input_tokens: row.try_get(4)?,
                cache_write_input_tokens: row.try_get(5)?,
                output_tokens: row.try_get(6)?,
                reasoning_tokens: row.try_get(7)?,
                cost_usd: cost.unwrap_or(0.0),
                unpriced_requests: i64::from(cost.is_none()),
            };
            Ok((row.try_get(0)?, row.try_get(1)?, sums))
        })
        .collect()
}

/// The rollup rows of a batch as column arrays.
#[derive(Default)]
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
}

/// One additive upsert for every (bucket, series) of the batch, in key order.
async fn upsert_rollup(
    tx: &Transaction<'_>,
    table: &str,
    bucket: &str,
    sums: &BTreeMap<(i64, i64), Sums>,
) -> Result<(), StoreError> {
    if sums.is_empty() {
        return Ok(());
    }
    let mut c = RollupColumns::default();
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
    }
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
        ],
    )
    .await?;
    Ok(())
}
