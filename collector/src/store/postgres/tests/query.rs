//! Raw segments of a usage query read records two ways (an id range for ids
//! that start with their own time, the partial `ts_ms` index for the rest);
//! together they must be exact for any range.

use super::{record, schema};
use crate::domain::time::{parse_rfc3339_ms, HOUR_MS};
use crate::domain::usage_query::UsageQuery;
use crate::store::postgres::PostgresStore;
use crate::store::Store;

#[tokio::test]
async fn raw_ranges_are_exact_for_every_kind_of_id() {
    let schema = schema().await;
    let store = PostgresStore::connect(&schema.url())
        .await
        .expect("connect");
    let t0 = parse_rfc3339_ms("2026-11-10T10:00:00Z").unwrap_or(0);
    let records: Vec<_> = (0..300u64)
        .map(|i| {
            let mut r = record(i);
            let ts = t0 + i64::try_from(i * 37_003).unwrap_or(0) % (3 * HOUR_MS);
            r.record.ts_ms = ts;
            let prefix = u64::try_from(ts).unwrap_or(0);
            r.record.id = match i % 3 {
                // What the filter sends: the id starts with the record's time.
                0 => format!("{prefix:012x}{i:020x}"),
                // Time-ordered, but by another clock: found through ts_ms.
                1 => format!("{:012x}{i:020x}", prefix + 5_000),
                _ => format!("free-form-{i}"),
            };
            r
        })
        .collect();
    for chunk in records.chunks(70) {
        let outcome = store.insert_batch(chunk.to_vec()).await.expect("insert");
        assert_eq!(outcome.inserted, chunk.len() as u64);
    }

    // Ranges inside one hour (raw only) and across hours (raw edges around
    // hourly rows), with edges on, just before and just after a record.
    let edge = |i: i64| t0 + (i * 37_003) % (3 * HOUR_MS);
    let ranges = [
        (edge(5), edge(5) + 1),
        (edge(5) - 1, edge(5)),
        (edge(7) + 1, edge(7) + 600_000),
        (t0 + 1, t0 + HOUR_MS - 1),
        (t0 + 17, t0 + 2 * HOUR_MS + 123_456),
        (t0 - 1, t0 + 3 * HOUR_MS + 1),
        (edge(100), edge(200)),
    ];
    for (from, to) in ranges {
        let (from, to) = (from.min(to), from.max(to));
        let inside: Vec<_> = records
            .iter()
            .filter(|r| (from..to).contains(&r.record.ts_ms))
            .collect();
        let mut q = UsageQuery::parse(Some("group_by=team"), 0).expect("query");
        q.from_ms = from;
        q.to_ms = to;
        let report = store.usage(q).await.expect("usage");
        assert_eq!(
            report.totals.requests,
            inside.len() as i64,
            "[{from}, {to})"
        );
        let tokens: u64 = inside.iter().map(|r| r.record.tokens.input).sum();
        assert_eq!(
            report.totals.input_tokens,
            i64::try_from(tokens).unwrap_or(-1),
            "[{from}, {to})"
        );
    }
}
