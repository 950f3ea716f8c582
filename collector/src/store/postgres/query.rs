//! `GET /v1/usage` over PostgreSQL: the same plan as SQLite (raw records for
//! partial edge hours, hourly rollup for whole hours, daily rollup for whole
//! days). Each segment is summed inside the database per series (and per day
//! when the query needs days), so only a few rows per series cross the wire.

use std::collections::HashMap;

use deadpool_postgres::Client;
use tokio_postgres::Row;

use super::stored_id::id_floor;
use crate::domain::aggregate::{Sums, UsageReport};
use crate::domain::time::HOUR_MS;
use crate::domain::usage_query::UsageQuery;
use crate::store::{
    group_partials, group_record_partials, plan_segments, RecordKey, Series, Source, StoreError,
};

/// The ten sums of a segment query, over raw records or over rollup rows:
/// the `Sums` fields in order, `denied` last (migration 4).
/// `sum(bigint)` is numeric in PostgreSQL, hence the casts back to int8.
const RAW_SUMS: &str = "count(*), count(*) FILTER (WHERE status >= 400 OR error IS NOT NULL), \
     sum(input_tokens)::int8, sum(cached_input_tokens)::int8, \
     sum(cache_write_input_tokens)::int8, sum(output_tokens)::int8, \
     sum(reasoning_tokens)::int8, coalesce(sum(cost_usd), 0.0), \
     count(*) FILTER (WHERE cost_usd IS NULL), \
     count(*) FILTER (WHERE error IN ('invalid_api_key', 'rate_limit_exceeded', \
     'budget_exceeded', 'caps_unavailable'))";

const ROLLUP_SUMS: &str = "sum(requests)::int8, sum(errors)::int8, sum(input_tokens)::int8, \
     sum(cached_input_tokens)::int8, sum(cache_write_input_tokens)::int8, \
     sum(output_tokens)::int8, sum(reasoning_tokens)::int8, sum(cost_usd), \
     sum(unpriced_requests)::int8, sum(denied)::int8";

/// Daily rows by day: each row is one (series, day) already, so they are
/// read as they are (grouping thousands of them in the database costs more
/// than sending them: the aggregate states outgrow `work_mem` and spill).
const DAILY_ROWS: &str = "SELECT series_id, day_ms, requests, errors, \
     input_tokens, cached_input_tokens, cache_write_input_tokens, output_tokens, \
     reasoning_tokens, cost_usd, unpriced_requests, denied \
     FROM usage_daily WHERE day_ms >= $1 AND day_ms < $2";

/// The query of one segment; every one answers series_id, period start (see
/// `store::period_start`), then the nine sums. With no period (no time
/// dimension in the query) the period is 0 and rows are summed per series
/// only, a few hundred rows for a month however many days it spans. The
/// period number is `floor(ms / period)` in float8 (exact for any ms below
/// 2^53), several times cheaper per row than numeric. Hours are not in the
/// daily rollup: with an hour period a whole-day segment reads the hourly one.
fn segment_sql(source: Source, period: Option<i64>) -> String {
    let (table, time, sums) = match source {
        Source::Raw => (RAW_RECORDS, "ts_ms", RAW_SUMS),
        Source::Hourly => ("usage_hourly", "hour_ms", ROLLUP_SUMS),
        Source::Daily if period == Some(HOUR_MS) => ("usage_hourly", "hour_ms", ROLLUP_SUMS),
        Source::Daily if period.is_some() => return DAILY_ROWS.to_owned(),
        Source::Daily => ("usage_daily", "day_ms", ROLLUP_SUMS),
    };
    let (start, group) = match period {
        Some(p) => (format!("floor({time} / {p}::float8)::int8 * {p}"), "1, 2"),
        None => (String::from("0::int8"), "1"),
    };
    let range = if source == Source::Raw {
        ""
    } else {
        // Each rollup is read by its primary key's time prefix.
        " WHERE {time} >= $1 AND {time} < $2"
    };
    format!("SELECT series_id, {start}, {sums} FROM {table}{range} GROUP BY {group}")
        .replace("{time}", time)
}

/// A query on `requested_model` or labels: the raw records of the whole
/// range, summed per series, period, requested model and labels.
fn detailed_sql(period: Option<i64>) -> String {
    let start = match period {
        Some(p) => format!("floor(ts_ms / {p}::float8)::int8 * {p}"),
        None => String::from("0::int8"),
    };
    format!(
        "SELECT series_id, {start}, {RAW_SUMS}, requested_model, labels \
         FROM {RAW_RECORDS} GROUP BY 1, 2, 13, 14"
    )
}

/// The raw records of `[$1, $2)`: those whose id starts with their time
/// through an id range of the unique index (`$3`, `$4`: `id_floor` of the
/// bounds), the others through the partial index on `ts_ms` that holds only
/// them (migration 3).
const RAW_RECORDS: &str = "(SELECT series_id, ts_ms, status, error, input_tokens, \
     cached_input_tokens, cache_write_input_tokens, output_tokens, reasoning_tokens, cost_usd, \
     requested_model, labels \
     FROM records WHERE ts_in_id AND id >= $3::text::uuid AND id < $4::text::uuid \
     UNION ALL SELECT series_id, ts_ms, status, error, input_tokens, cached_input_tokens, \
     cache_write_input_tokens, output_tokens, reasoning_tokens, cost_usd, requested_model, labels \
     FROM records WHERE NOT ts_in_id AND ts_ms >= $1 AND ts_ms < $2) AS r";

const SELECT_SERIES: &str = "SELECT id, key_id, tags, model, provider, operation FROM series \
     WHERE id = ANY($1)";

pub async fn usage(client: &Client, query: &UsageQuery) -> Result<UsageReport, StoreError> {
    let period = query.period_ms();
    if query.needs_records() {
        return detailed_usage(client, query, period).await;
    }
    let mut partials: HashMap<(i64, i64), Sums> = HashMap::new();
    for (source, from, to) in plan_segments(query.from_ms, query.to_ms) {
        let statement = client.prepare_cached(&segment_sql(source, period)).await?;
        let rows = if source == Source::Raw {
            let (lo, hi) = (id_floor(from), id_floor(to));
            client.query(&statement, &[&from, &to, &lo, &hi]).await?
        } else {
            client.query(&statement, &[&from, &to]).await?
        };
        for row in rows {
            let key = (row.try_get(0)?, row.try_get(1)?);
            partials.entry(key).or_default().add(&sums_of(&row)?);
        }
    }
    let ids: Vec<i64> = partials.keys().map(|(series, _)| *series).collect();
    let series = load_series(client, &ids).await?;
    group_partials(query, &partials, &series)
}

async fn detailed_usage(
    client: &Client,
    query: &UsageQuery,
    period: Option<i64>,
) -> Result<UsageReport, StoreError> {
    let (from, to) = (query.from_ms, query.to_ms);
    let statement = client.prepare_cached(&detailed_sql(period)).await?;
    let (lo, hi) = (id_floor(from), id_floor(to));
    let rows = client.query(&statement, &[&from, &to, &lo, &hi]).await?;
    let mut partials: HashMap<RecordKey, Sums> = HashMap::new();
    for row in rows {
        let key = (
            row.try_get(0)?,
            row.try_get(1)?,
            row.try_get(12)?,
            row.try_get(13)?,
        );
        partials.entry(key).or_default().add(&sums_of(&row)?);
    }
    let ids: Vec<i64> = partials.keys().map(|(series, ..)| *series).collect();
    let series = load_series(client, &ids).await?;
    group_record_partials(query, &partials, &series)
}

fn sums_of(row: &Row) -> Result<Sums, tokio_postgres::Error> {
    Ok(Sums {
        requests: row.try_get(2)?,
        errors: row.try_get(3)?,
        input_tokens: row.try_get(4)?,
        cached_input_tokens: row.try_get(5)?,
        cache_write_input_tokens: row.try_get(6)?,
        output_tokens: row.try_get(7)?,
        reasoning_tokens: row.try_get(8)?,
        cost_usd: row.try_get(9)?,
        unpriced_requests: row.try_get(10)?,
        denied: row.try_get(11)?,
    })
}

async fn load_series(client: &Client, ids: &[i64]) -> Result<HashMap<i64, Series>, StoreError> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let statement = client.prepare_cached(SELECT_SERIES).await?;
    let mut all = HashMap::new();
    for row in client.query(&statement, &[&ids]).await? {
        let tags: &str = row.try_get(2)?;
        let series = Series::decode(
            row.try_get(1)?,
            tags,
            row.try_get(3)?,
            row.try_get(4)?,
            row.try_get(5)?,
        )?;
        all.insert(row.try_get(0)?, series);
    }
    Ok(all)
}

/// Tag names live in the series rows (one per distinct set of dimensions,
/// far fewer than records).
const SELECT_TAG_KEYS: &str =
    "SELECT DISTINCT jsonb_object_keys(tags::jsonb) AS key FROM series ORDER BY 1";

pub async fn tag_keys(client: &Client) -> Result<Vec<String>, StoreError> {
    let statement = client.prepare_cached(SELECT_TAG_KEYS).await?;
    client
        .query(&statement, &[])
        .await?
        .iter()
        .map(|row| Ok(row.try_get(0)?))
        .collect()
}
