//! `GET /v1/usage` over PostgreSQL: the same plan as SQLite (raw records for
//! partial edge hours, hourly rollup for whole hours, daily rollup for whole
//! days). Each segment is summed inside the database per series (and per day
//! when the query needs days), so only a few rows per series cross the wire.

use std::collections::HashMap;

use deadpool_postgres::Client;
use tokio_postgres::Row;

use super::stored_id::id_floor;
use crate::domain::aggregate::{Sums, UsageReport};
use crate::domain::usage_query::{Dim, UsageQuery};
use crate::store::{group_partials, plan_segments, Series, Source, StoreError};

/// The nine sums of a segment query, over raw records or over rollup rows.
/// `sum(bigint)` is numeric in PostgreSQL, hence the casts back to int8.
const RAW_SUMS: &str = "count(*), count(*) FILTER (WHERE status >= 400 OR error IS NOT NULL), \
     sum(input_tokens)::int8, sum(cached_input_tokens)::int8, \
     sum(cache_write_input_tokens)::int8, sum(output_tokens)::int8, \
     sum(reasoning_tokens)::int8, coalesce(sum(cost_usd), 0.0), \
     count(*) FILTER (WHERE cost_usd IS NULL)";

const ROLLUP_SUMS: &str = "sum(requests)::int8, sum(errors)::int8, sum(input_tokens)::int8, \
     sum(cached_input_tokens)::int8, sum(cache_write_input_tokens)::int8, \
     sum(output_tokens)::int8, sum(reasoning_tokens)::int8, sum(cost_usd), \
     sum(unpriced_requests)::int8";

/// Daily rows by day: each row is one (series, day) already, so they are
/// read as they are (grouping thousands of them in the database costs more
/// than sending them: the aggregate states outgrow `work_mem` and spill).
const DAILY_ROWS: &str = "SELECT series_id, day_ms / 86400000, requests, errors, \
     input_tokens, cached_input_tokens, cache_write_input_tokens, output_tokens, \
     reasoning_tokens, cost_usd, unpriced_requests \
     FROM usage_daily WHERE day_ms >= $1 AND day_ms < $2";

/// The query of one segment; every one answers series_id, day number, then
/// the nine sums. Without `by_day` (no `day` in the query's group_by or
/// filters) the day is 0 and rows are summed per series only, a few hundred
/// rows for a month however many days it spans. The day is
/// `floor(ms / DAY_MS)` in float8 (exact for any ms below 2^53), several times
/// cheaper per row than numeric.
fn segment_sql(source: Source, by_day: bool) -> String {
    let (table, time, sums) = match source {
        Source::Raw => (RAW_RECORDS, "ts_ms", RAW_SUMS),
        Source::Hourly => ("usage_hourly", "hour_ms", ROLLUP_SUMS),
        Source::Daily if by_day => return DAILY_ROWS.to_owned(),
        Source::Daily => ("usage_daily", "day_ms", ROLLUP_SUMS),
    };
    let (day, group) = if by_day {
        (format!("floor({time} / 86400000::float8)::int8"), "1, 2")
    } else {
        (String::from("0::int8"), "1")
    };
    let range = if source == Source::Raw {
        ""
    } else {
        // Each rollup is read by its primary key's time prefix.
        " WHERE {time} >= $1 AND {time} < $2"
    };
    format!("SELECT series_id, {day}, {sums} FROM {table}{range} GROUP BY {group}")
        .replace("{time}", time)
}

/// The raw records of `[$1, $2)`: those whose id starts with their time
/// through an id range of the unique index (`$3`, `$4`: `id_floor` of the
/// bounds), the others through the partial index on `ts_ms` that holds only
/// them (migration 3).
const RAW_RECORDS: &str = "(SELECT series_id, ts_ms, status, error, input_tokens, \
     cached_input_tokens, cache_write_input_tokens, output_tokens, reasoning_tokens, cost_usd \
     FROM records WHERE ts_in_id AND id >= $3::text::uuid AND id < $4::text::uuid \
     UNION ALL SELECT series_id, ts_ms, status, error, input_tokens, cached_input_tokens, \
     cache_write_input_tokens, output_tokens, reasoning_tokens, cost_usd \
     FROM records WHERE NOT ts_in_id AND ts_ms >= $1 AND ts_ms < $2) AS r";

const SELECT_SERIES: &str = "SELECT id, key_id, tags, model, provider, operation FROM series \
     WHERE id = ANY($1)";

pub async fn usage(client: &Client, query: &UsageQuery) -> Result<UsageReport, StoreError> {
    let by_day =
        query.group_by.contains(&Dim::Day) || query.filters.iter().any(|(d, _)| *d == Dim::Day);
    let mut partials: HashMap<(i64, i64), Sums> = HashMap::new();
    for (source, from, to) in plan_segments(query.from_ms, query.to_ms) {
        let statement = client.prepare_cached(&segment_sql(source, by_day)).await?;
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
