//! `GET /v1/usage` over PostgreSQL: the same plan as SQLite (raw records for
//! partial edge hours, hourly rollup for whole hours, daily rollup for whole
//! days), but each segment is summed per (series, day) inside the database,
//! so only a few rows per series cross the wire.

use std::collections::HashMap;

use deadpool_postgres::Client;
use tokio_postgres::Row;

use crate::domain::aggregate::{Sums, UsageReport};
use crate::domain::usage_query::UsageQuery;
use crate::store::{group_partials, plan_segments, Series, Source, StoreError};

/// Every segment query answers: series_id, day number, then the nine sums.
/// `sum(bigint)` is numeric in PostgreSQL, hence the casts back to int8.
const SELECT_RAW: &str = "SELECT series_id, floor(ts_ms / 86400000.0)::int8, count(*), \
     count(*) FILTER (WHERE status >= 400 OR error IS NOT NULL), \
     sum(input_tokens)::int8, sum(cached_input_tokens)::int8, \
     sum(cache_write_input_tokens)::int8, sum(output_tokens)::int8, \
     sum(reasoning_tokens)::int8, coalesce(sum(cost_usd), 0.0), \
     count(*) FILTER (WHERE cost_usd IS NULL) \
     FROM records WHERE ts_ms >= $1 AND ts_ms < $2 GROUP BY 1, 2";

/// `{table}`/`{bucket}` are fixed identifiers, never input.
const SELECT_ROLLUP: &str = "SELECT series_id, floor({bucket} / 86400000.0)::int8, \
     sum(requests)::int8, sum(errors)::int8, sum(input_tokens)::int8, \
     sum(cached_input_tokens)::int8, sum(cache_write_input_tokens)::int8, \
     sum(output_tokens)::int8, sum(reasoning_tokens)::int8, sum(cost_usd), \
     sum(unpriced_requests)::int8 \
     FROM {table} WHERE {bucket} >= $1 AND {bucket} < $2 GROUP BY 1, 2";

const SELECT_SERIES: &str = "SELECT id, key_id, tags, model, provider, operation FROM series \
     WHERE id = ANY($1)";

pub async fn usage(client: &Client, query: &UsageQuery) -> Result<UsageReport, StoreError> {
    let mut partials: HashMap<(i64, i64), Sums> = HashMap::new();
    for (source, from, to) in plan_segments(query.from_ms, query.to_ms) {
        let sql = match source {
            Source::Raw => SELECT_RAW.to_owned(),
            Source::Hourly => SELECT_ROLLUP
                .replace("{table}", "usage_hourly")
                .replace("{bucket}", "hour_ms"),
            Source::Daily => SELECT_ROLLUP
                .replace("{table}", "usage_daily")
                .replace("{bucket}", "day_ms"),
        };
        let statement = client.prepare_cached(&sql).await?;
        for row in client.query(&statement, &[&from, &to]).await? {
            let key = (row.try_get(0)?, row.try_get(1)?);
            partials.entry(key).or_default().add(&sums_of(&row)?);
        }
    }
    let ids: Vec<i64> = partials.keys().map(|(series, _)| *series).collect();
    let series = load_series(client, &ids).await?;
    group_partials(query, &partials, &series)
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
    })
}

async fn load_series(client: &Client, ids: &[i64]) -> Result<HashMap<i64, Series>, StoreError> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let statement = client.prepare_cached(SELECT_SERIES).await?;
    let mut all = HashMap::new();
    for row in client.query(&statement, &[&ids]).await? {
        let tags: String = row.try_get(2)?;
        let model: String = row.try_get(3)?;
        let series = Series {
            key_id: row.try_get(1)?,
            tags: serde_json::from_str(&tags)
                .map_err(|e| StoreError(format!("stored tags are not a JSON object: {e}")))?,
            model: (!model.is_empty()).then_some(model),
            provider: row.try_get(4)?,
            operation: row.try_get(5)?,
        };
        all.insert(row.try_get(0)?, series);
    }
    Ok(all)
}
