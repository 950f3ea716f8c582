//! Multi-row inserts must still tell exactly which records went in: retried
//! ids at chunk edges, inside chunks and repeated within one batch.

use std::collections::HashSet;

use rusqlite::Connection;

use super::TempStore;
use crate::domain::record::{PricedRecord, Tokens, UsageRecord};
use crate::domain::time::HOUR_MS;
use crate::domain::usage_query::UsageQuery;
use crate::store::sqlite::SqliteStore;
use crate::store::Store;

const HOUR: i64 = 1_793_577_600_000 + 10 * HOUR_MS; // 2026-11-01T10:00:00Z

/// Record `n` of id `id`: its input tokens (n) tell records apart in sums.
fn record(id: &str, n: u64) -> PricedRecord {
    PricedRecord {
        record: UsageRecord {
            tokens: Tokens {
                input: n,
                ..Tokens::default()
            },
            ..UsageRecord::bare(id, HOUR + i64::try_from(n).unwrap_or(0) * 1_000)
        },
        cost_usd: None,
        price_version: "v".into(),
    }
}

/// Hex ids for even `i`, text ids for odd ones: both storage forms.
fn id(i: u64) -> String {
    if i.is_multiple_of(2) {
        format!("{:032x}", 0xabc0_0000 + i)
    } else {
        format!("text-{i}")
    }
}

async fn input_tokens(store: &SqliteStore, from: i64, to: i64) -> (i64, i64) {
    let query = UsageQuery {
        from_ms: from,
        to_ms: to,
        group_by: Vec::new(),
        filters: Vec::new(),
        required_tags: Vec::new(),
    };
    let totals = store.usage(query).await.expect("usage").totals;
    (totals.requests, totals.input_tokens)
}

#[tokio::test]
async fn retried_and_repeated_ids_anywhere_in_chunks_are_counted_exactly() {
    let temp = TempStore::new();
    let (store, path) = (temp.open(), temp.path());

    // Ids 0..40 stored first, with input tokens 1..=40.
    let first: Vec<_> = (0..40).map(|i| record(&id(i), i + 1)).collect();
    let outcome = store.insert_batch(first).await.expect("first");
    assert_eq!((outcome.inserted, outcome.duplicates), (40, 0));

    // 37 records: new ids 100.. with tokens 100.., except retries of stored
    // ids (with other tokens, which must not count) at chunk starts, ends and
    // middles, and new ids repeated within the batch, in one chunk and
    // across chunks.
    let retried: HashSet<usize> = [0, 5, 15, 16, 17, 31, 36].into();
    let mut second = Vec::new();
    for pos in 0..37u64 {
        let at = usize::try_from(pos).unwrap_or(0);
        let r = match at {
            _ if retried.contains(&at) => record(&id(pos), 5_000 + pos),
            10 => record(&id(109), 6_000), // repeats position 9, same chunk
            20 => record(&id(103), 6_001), // repeats position 3, earlier chunk
            _ => record(&id(100 + pos), 100 + pos),
        };
        second.push(r);
    }
    let outcome = store.insert_batch(second).await.expect("second");
    assert_eq!((outcome.inserted, outcome.duplicates), (28, 9));

    // Whole hour (rollup) and partial hour (raw rows) both see exactly the
    // 40 + 28 inserted records and their own token counts.
    let new_tokens: i64 = (0..37i64)
        .filter(|p| !retried.contains(&usize::try_from(*p).unwrap_or(0)) && *p != 10 && *p != 20)
        .map(|p| 100 + p)
        .sum();
    let all = (68, (1..=40).sum::<i64>() + new_tokens);
    assert_eq!(input_tokens(&store, HOUR, HOUR + HOUR_MS).await, all);
    assert_eq!(input_tokens(&store, HOUR, HOUR + 500_000).await, all);
    let conn = Connection::open(path).expect("reopen");
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM records", [], |row| row.get(0))
        .expect("count");
    assert_eq!(rows, 68);
}
