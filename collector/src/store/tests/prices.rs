//! Prices in time (SPEC §13) in the store suite: price changes and
//! discounts are append only, and repricing a range rebuilds the rollups
//! so that usage equals sums computed directly from the repriced records.

use std::sync::Arc;

use super::{expected_totals, query, rec, ts};
use crate::domain::pricing::book::{Discount, PriceChange, PriceChanges};
use crate::domain::pricing::ModelPrice;
use crate::domain::record::PricedRecord;
use crate::domain::time::{DAY_MS, HOUR_MS};
use crate::store::{Pricer, Store};

fn change(model: &str, from: &str, input: f64) -> PriceChange {
    PriceChange {
        provider: "openai".into(),
        model: model.into(),
        effective_from_ms: ts(from),
        price: ModelPrice {
            input,
            output: 2.0 * input,
            cache_read: input / 10.0,
            cache_write: input,
            max_output_tokens: None,
        },
    }
}

pub async fn price_changes_are_append_only(store: &dyn Store) {
    let first = PriceChanges {
        prices: vec![change("m1", "2026-11-10T00:00:00Z", 1e-6)],
        discounts: vec![Discount {
            provider: "openai".into(),
            model: None,
            effective_from_ms: ts("2026-11-01T00:00:00Z"),
            fraction: 0.2,
        }],
    };
    let added = store.add_prices(first.clone(), 1).await.expect("add");
    assert_eq!((added.added, added.unchanged), (2, 0));
    let again = store.add_prices(first.clone(), 2).await.expect("add again");
    assert_eq!((again.added, again.unchanged), (0, 2));
    // Same key, other values: a conflict, and the new entry beside it is
    // not stored either.
    let clash = PriceChanges {
        prices: vec![
            change("m2", "2026-11-12T00:00:00Z", 3e-6),
            change("m1", "2026-11-10T00:00:00Z", 9e-6),
        ],
        discounts: Vec::new(),
    };
    let refused = store.add_prices(clash, 3).await.expect("add clash");
    assert_eq!(refused.added, 0);
    assert_eq!(refused.conflicts.len(), 1, "{:?}", refused.conflicts);
    assert!(
        refused.conflicts[0].contains("openai/m1"),
        "{:?}",
        refused.conflicts
    );
    let history = store.price_history().await.expect("history");
    assert_eq!(history, first);
}

/// The cost a test pricer gives: `m1` at 3e-6 per input token, `m2` 5e-6,
/// anything else unknown.
fn new_cost(r: &PricedRecord) -> Option<f64> {
    let per = match r.record.model.as_deref() {
        Some("m1") => 3e-6,
        Some("m2") => 5e-6,
        _ => return None,
    };
    Some(r.record.tokens.input as f64 * per)
}

pub async fn reprice_rebuilds_the_rollups_exactly(store: &dyn Store) {
    let day0 = ts("2026-11-10T00:00:00Z");
    let models = [Some("m1"), Some("m2"), Some("zz"), None];
    let mut records = Vec::new();
    // Four days, several hours a day, every model; some ids free-form.
    for i in 0..160_i64 {
        let at = day0 + (i % 4) * DAY_MS + (i % 9) * HOUR_MS + i * 1_777;
        let id = if i % 5 == 0 {
            format!("free-{i}")
        } else {
            format!("{:012x}{:020x}", at, i)
        };
        let model = models[(i % 4) as usize];
        let cost = model.map(|_| 0.001 * (i + 1) as f64);
        let team = if i % 2 == 0 { "search" } else { "ads" };
        records.push(rec(&id, at, "k1", Some(team), model, (i + 3) as u64, cost));
    }
    for chunk in records.chunks(40) {
        store.insert_batch(chunk.to_vec()).await.expect("insert");
    }
    // A later record seals the first days (SQLite keeps a daily rollup of
    // sealed days only).
    let late = rec(
        "late",
        day0 + 6 * DAY_MS,
        "k1",
        Some("ads"),
        Some("m1"),
        7,
        Some(0.5),
    );
    store.insert_batch(vec![late.clone()]).await.expect("late");
    records.push(late);

    let (from, to) = (day0 + 5 * HOUR_MS, day0 + 2 * DAY_MS + 3 * HOUR_MS);
    let pricer: Pricer = Arc::new(|r| {
        let per = match r.model.as_deref() {
            Some("m1") => 3e-6,
            Some("m2") => 5e-6,
            _ => return None,
        };
        Some(r.tokens.input as f64 * per)
    });
    let done = store
        .reprice(from, to, pricer, "rc-test".into())
        .await
        .expect("reprice");
    let in_range: Vec<&PricedRecord> = records
        .iter()
        .filter(|r| (from..to).contains(&r.record.ts_ms))
        .collect();
    assert_eq!(done.records, in_range.len() as u64);
    let before: f64 = in_range.iter().map(|r| r.cost_usd.unwrap_or(0.0)).sum();
    assert!((done.cost_before_usd - before).abs() < 1e-9);

    // The records as they should now be, computed directly.
    let repriced: Vec<PricedRecord> = records
        .iter()
        .map(|r| {
            if (from..to).contains(&r.record.ts_ms) {
                PricedRecord {
                    cost_usd: new_cost(r),
                    price_version: "rc-test".into(),
                    ..r.clone()
                }
            } else {
                r.clone()
            }
        })
        .collect();
    let after: f64 = in_range.iter().map(|r| new_cost(r).unwrap_or(0.0)).sum();
    assert!((done.cost_after_usd - after).abs() < 1e-9);
    assert!((after - before).abs() > 1e-3, "the test must change costs");

    // Every range shape: whole days (daily rollup), whole hours, edges.
    let end = day0 + 7 * DAY_MS;
    let ranges = [
        (day0, end),
        (day0, day0 + DAY_MS),
        (day0 + DAY_MS, day0 + 2 * DAY_MS),
        (from, to),
        (day0 + 3 * HOUR_MS + 17, day0 + 2 * DAY_MS + 5 * HOUR_MS + 3),
        (day0 + 2 * DAY_MS, end),
    ];
    for (a, b) in ranges {
        let report = store
            .usage(query(a, b, "model,day", ""))
            .await
            .expect("usage");
        let expected = expected_totals(&repriced, a, b);
        let got = report.totals;
        assert!(
            (got.cost_usd - expected.cost_usd).abs() < 1e-9,
            "[{a}, {b}): cost {} vs {}",
            got.cost_usd,
            expected.cost_usd
        );
        assert_eq!(
            got.unpriced_requests, expected.unpriced_requests,
            "[{a}, {b})"
        );
        assert_eq!(got.requests, expected.requests, "[{a}, {b})");
        assert_eq!(got.input_tokens, expected.input_tokens, "[{a}, {b})");
        // Per model and day too.
        for row in &report.rows {
            let model = row.dims[0].as_deref();
            let day = row.dims[1].clone().unwrap_or_default();
            let want: f64 = repriced
                .iter()
                .filter(|r| (a.max(0)..b).contains(&r.record.ts_ms))
                .filter(|r| r.record.model.as_deref() == model)
                .filter(|r| crate::domain::time::day_of(r.record.ts_ms) == day)
                .map(|r| r.cost_usd.unwrap_or(0.0))
                .sum();
            assert!(
                (row.sums.cost_usd - want).abs() < 1e-9,
                "[{a}, {b}) {model:?} {day}: {} vs {want}",
                row.sums.cost_usd
            );
        }
    }
    // Not whole hours: refused, nothing changed.
    assert!(store
        .reprice(from + 1, to, Arc::new(|_| Some(1.0)), "x".into())
        .await
        .is_err());
    let report = store
        .usage(query(day0, end, "model", ""))
        .await
        .expect("usage");
    let expected = expected_totals(&repriced, day0, end);
    assert!((report.totals.cost_usd - expected.cost_usd).abs() < 1e-9);
}

fn line(
    source: &str,
    day: i64,
    model: &str,
    cost: f64,
) -> crate::domain::reconcile::import::ProviderLine {
    crate::domain::reconcile::import::ProviderLine {
        provider: "openai".into(),
        source: source.into(),
        start_ms: day,
        end_ms: day + DAY_MS,
        model: model.into(),
        credential: "proj".into(),
        input_tokens: 10,
        cost_usd: Some(cost),
        ..Default::default()
    }
}

pub async fn provider_imports_replace_their_range(store: &dyn Store) {
    use crate::domain::reconcile::import::Import;
    let d = |n: i64| ts("2026-11-01T00:00:00Z") + n * DAY_MS;
    let import = |from: i64, to: i64, lines| Import {
        provider: "openai".into(),
        source: "openai.costs".into(),
        from_ms: from,
        to_ms: to,
        lines,
        skipped: 0,
    };
    let first = import(
        d(0),
        d(3),
        vec![
            line("openai.costs", d(0), "m", 1.0),
            line("openai.costs", d(1), "m", 2.0),
            line("openai.costs", d(2), "m", 3.0),
        ],
    );
    assert_eq!(
        store
            .replace_provider_usage(first.clone())
            .await
            .expect("import"),
        (0, 3)
    );
    // Another source in the same days is left alone.
    let usage = Import {
        source: "openai.usage".into(),
        lines: vec![line("openai.usage", d(1), "m", 0.0)],
        ..first.clone()
    };
    store
        .replace_provider_usage(usage)
        .await
        .expect("usage import");
    let before = store.provider_usage(d(0), d(10)).await.expect("lines");
    // The same export again changes nothing.
    assert_eq!(
        store.replace_provider_usage(first).await.expect("again"),
        (3, 3)
    );
    assert_eq!(
        store.provider_usage(d(0), d(10)).await.expect("lines"),
        before
    );
    // An overlapping export (days 2..4) replaces day 2 and adds day 3.
    let overlap = import(
        d(2),
        d(4),
        vec![
            line("openai.costs", d(2), "m", 30.0),
            line("openai.costs", d(3), "m", 4.0),
        ],
    );
    assert_eq!(
        store
            .replace_provider_usage(overlap)
            .await
            .expect("overlap"),
        (1, 2)
    );
    let costs: Vec<(i64, Option<f64>)> = store
        .provider_usage(d(0), d(10))
        .await
        .expect("lines")
        .iter()
        .filter(|l| l.source == "openai.costs")
        .map(|l| (l.start_ms, l.cost_usd))
        .collect();
    assert_eq!(
        costs,
        [
            (d(0), Some(1.0)),
            (d(1), Some(2.0)),
            (d(2), Some(30.0)),
            (d(3), Some(4.0))
        ]
    );
    assert_eq!(
        store.provider_usage(d(1), d(2)).await.expect("lines").len(),
        2
    );
}
