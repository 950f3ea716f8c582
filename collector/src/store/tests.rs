//! One behavioural suite for every `Store` implementation. Each test body is a
//! plain async function over `&dyn Store`; `store_suite!` instantiates them for
//! a backend, so PostgreSQL plugs in with one line and no copied tests.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{BatchOutcome, Store};
use crate::domain::access::{ApiToken, Role};
use crate::domain::aggregate::{Aggregator, Slice, Sums, UsageReport};
use crate::domain::audit::{AuditEntry, AuditQuery};
use crate::domain::budgets::{Budget, Enforce, Period, Scope};
use crate::domain::overrides::{Approval, Override};
use crate::domain::record::{PricedRecord, Tokens, UsageRecord};
use crate::domain::time::{parse_rfc3339_ms, HOUR_MS};
use crate::domain::usage_query::UsageQuery;

mod alerts;
mod keys;
mod leases;
mod prices;

fn ts(text: &str) -> i64 {
    parse_rfc3339_ms(text).expect("test timestamp")
}

/// A record with one input and output count and a cost, for the sums.
pub(crate) fn rec(
    id: &str,
    ts_ms: i64,
    key: &str,
    team: Option<&str>,
    model: Option<&str>,
    n: u64,
    cost: Option<f64>,
) -> PricedRecord {
    let mut tags = BTreeMap::from([("org".to_owned(), "acme".to_owned())]);
    if let Some(team) = team {
        tags.insert("team".to_owned(), team.to_owned());
    }
    PricedRecord {
        record: UsageRecord {
            duration_ms: Some(5),
            key_id: key.to_owned(),
            auth: Some("api_key".into()),
            tags,
            model: model.map(str::to_owned),
            stream: Some(false),
            status: if n.is_multiple_of(7) { 500 } else { 200 },
            tokens: Tokens {
                input: n,
                cached_input: n / 2,
                cache_write_input: n / 4,
                output: 2 * n,
                reasoning: n / 3,
            },
            ..UsageRecord::bare(id, ts_ms)
        },
        cost_usd: cost,
        price_version: "test".into(),
    }
}

fn query(from: i64, to: i64, group_by: &str, filters: &str) -> UsageQuery {
    let raw = format!("group_by={group_by}{filters}");
    let mut q = UsageQuery::parse(Some(&raw), to).expect("valid query");
    q.from_ms = from;
    q.to_ms = to;
    q
}

/// The sums of the records with `ts` in `[from, to)`, computed directly.
pub(super) fn expected_totals(records: &[PricedRecord], from: i64, to: i64) -> Sums {
    let mut sums = Sums::default();
    for r in records
        .iter()
        .filter(|r| (from..to).contains(&r.record.ts_ms))
    {
        sums.add(&Sums::of_record(r));
    }
    sums
}

fn assert_sums_eq(actual: &Sums, expected: &Sums, context: &str) {
    let mut a = *actual;
    let mut e = *expected;
    assert!(
        (a.cost_usd - e.cost_usd).abs() < 1e-9,
        "{context}: cost {a:?} vs {e:?}"
    );
    a.cost_usd = 0.0;
    e.cost_usd = 0.0;
    assert_eq!(a, e, "{context}");
}

fn dims(report: &UsageReport) -> Vec<Vec<Option<&str>>> {
    report
        .rows
        .iter()
        .map(|r| r.dims.iter().map(Option::as_deref).collect())
        .collect()
}

pub async fn inserts_and_groups(store: &dyn Store) {
    let t0 = ts("2026-11-10T10:00:00Z");
    let batch = vec![
        rec(
            "a1",
            t0 + 1,
            "k1",
            Some("search"),
            Some("gpt-4o"),
            10,
            Some(1.0),
        ),
        rec(
            "a2",
            t0 + 2,
            "k1",
            Some("search"),
            Some("gpt-4o-mini"),
            20,
            Some(0.5),
        ),
        rec(
            "a3",
            t0 + 3,
            "k2",
            Some("growth"),
            Some("gpt-4o"),
            30,
            Some(2.0),
        ),
        rec(
            "a4",
            t0 + HOUR_MS * 5,
            "k2",
            Some("growth"),
            Some("gpt-4o"),
            40,
            Some(3.0),
        ),
    ];
    let outcome = store.insert_batch(batch.clone()).await.expect("insert");
    assert_eq!(
        outcome,
        BatchOutcome {
            inserted: 4,
            duplicates: 0,
            unpriced_inserted: 0
        }
    );

    let (from, to) = (ts("2026-11-01T00:00:00Z"), ts("2026-12-01T00:00:00Z"));
    let report = store
        .usage(query(from, to, "team,model", ""))
        .await
        .expect("usage");
    assert_eq!(report.group_by, vec!["team", "model"]);
    // Sorted by cost, highest first.
    assert_eq!(
        dims(&report),
        vec![
            vec![Some("growth"), Some("gpt-4o")],
            vec![Some("search"), Some("gpt-4o")],
            vec![Some("search"), Some("gpt-4o-mini")],
        ]
    );
    let growth = &report.rows[0].sums;
    assert_eq!(
        (growth.requests, growth.input_tokens, growth.output_tokens),
        (2, 70, 140)
    );
    assert_eq!(growth.cached_input_tokens, 15 + 20);
    assert!((growth.cost_usd - 5.0).abs() < 1e-9);
    assert_sums_eq(&report.totals, &expected_totals(&batch, from, to), "totals");
    // n = 30 and n = 40 are not multiples of 7; none of these is an error.
    assert_eq!(report.totals.errors, 0);
}

pub async fn duplicates_change_nothing(store: &dyn Store) {
    let t0 = ts("2026-11-10T10:00:00Z");
    let batch: Vec<_> = (0..50)
        .map(|i| {
            rec(
                &format!("d{i}"),
                t0 + i * 60_000,
                "k1",
                Some("search"),
                Some("m"),
                10,
                Some(0.25),
            )
        })
        .collect();
    let first = store.insert_batch(batch.clone()).await.expect("insert");
    assert_eq!((first.inserted, first.duplicates), (50, 0));
    // A retried batch, and one mixing old and new ids with an in-batch repeat.
    let retry = store.insert_batch(batch.clone()).await.expect("retry");
    assert_eq!((retry.inserted, retry.duplicates), (0, 50));
    let mut mixed = vec![
        batch[0].clone(),
        rec("new", t0, "k1", Some("search"), Some("m"), 10, Some(0.25)),
    ];
    mixed.push(mixed[1].clone());
    let mixed_outcome = store.insert_batch(mixed).await.expect("mixed");
    assert_eq!((mixed_outcome.inserted, mixed_outcome.duplicates), (1, 2));

    let (from, to) = (ts("2026-11-01T00:00:00Z"), ts("2026-12-01T00:00:00Z"));
    let report = store.usage(query(from, to, "", "")).await.expect("usage");
    assert_eq!(report.totals.requests, 51);
    assert_eq!(report.totals.input_tokens, 510);
    assert!((report.totals.cost_usd - 51.0 * 0.25).abs() < 1e-9);
}

pub async fn usage_is_exact_for_any_range(store: &dyn Store) {
    // Records spread over three days at irregular minutes.
    let base = ts("2026-11-10T00:00:00Z");
    let records: Vec<_> = (0..400i64)
        .map(|i| {
            let at = base + (i * 7919 % 4320) * 60_000 + i * 13;
            let key = if i % 3 == 0 { "k1" } else { "k2" };
            rec(
                &format!("r{i}"),
                at,
                key,
                Some("t"),
                Some("m"),
                (i % 50) as u64,
                Some(i as f64 / 100.0),
            )
        })
        .collect();
    for chunk in records.chunks(64) {
        store.insert_batch(chunk.to_vec()).await.expect("insert");
    }
    let edges = [
        "2026-11-09T00:00:00Z",
        "2026-11-10T00:00:00Z",
        "2026-11-10T00:30:00.500Z",
        "2026-11-10T05:59:59.999Z",
        "2026-11-10T06:00:00Z",
        "2026-11-10T06:20:00Z",
        "2026-11-11T13:45:10Z",
        "2026-11-12T23:00:00Z",
        "2026-11-14T00:00:00Z",
    ];
    for (i, from) in edges.iter().enumerate() {
        for to in &edges[i..] {
            let (f, t) = (ts(from), ts(to));
            let report = store.usage(query(f, t, "key_id", "")).await.expect("usage");
            assert_sums_eq(
                &report.totals,
                &expected_totals(&records, f, t),
                &format!("{from}..{to}"),
            );
            let k1: Vec<_> = records
                .iter()
                .filter(|r| r.record.key_id == "k1")
                .cloned()
                .collect();
            let row = report
                .rows
                .iter()
                .find(|r| r.dims == vec![Some("k1".to_owned())]);
            let expected_k1 = expected_totals(&k1, f, t);
            match row {
                Some(row) => assert_sums_eq(&row.sums, &expected_k1, &format!("k1 {from}..{to}")),
                None => assert_eq!(expected_k1.requests, 0, "k1 row missing for {from}..{to}"),
            }
        }
    }
}

pub async fn unpriced_missing_tags_filters_and_days(store: &dyn Store) {
    let d1 = ts("2026-11-10T23:30:00Z");
    let d2 = ts("2026-11-11T00:30:00Z");
    let batch = vec![
        rec("u1", d1, "k1", None, Some("mystery"), 10, None),
        rec("u2", d1, "k1", Some("search"), None, 10, None),
        rec(
            "u3",
            d2,
            "k1",
            Some("search"),
            Some("gpt-4o"),
            10,
            Some(1.5),
        ),
        rec(
            "u4",
            d2,
            "k2",
            Some("growth"),
            Some("gpt-4o"),
            10,
            Some(0.5),
        ),
    ];
    let outcome = store.insert_batch(batch).await.expect("insert");
    assert_eq!(outcome.unpriced_inserted, 2);
    let (from, to) = (ts("2026-11-01T00:00:00Z"), ts("2026-11-20T00:00:00Z"));

    let report = store
        .usage(query(from, to, "team", ""))
        .await
        .expect("usage");
    assert_eq!(
        dims(&report),
        vec![vec![Some("search")], vec![Some("growth")], vec![None]]
    );
    assert_eq!(report.rows[0].sums.unpriced_requests, 1);
    assert_eq!(report.rows[2].sums.unpriced_requests, 1);
    assert_eq!(report.rows[2].sums.cost_usd, 0.0);
    assert_eq!(report.totals.unpriced_requests, 2);
    assert!((report.totals.cost_usd - 2.0).abs() < 1e-9);

    let by_day = store
        .usage(query(from, to, "day,model", ""))
        .await
        .expect("usage");
    assert_eq!(
        dims(&by_day),
        vec![
            vec![Some("2026-11-11"), Some("gpt-4o")],
            vec![Some("2026-11-10"), Some("mystery")],
            vec![Some("2026-11-10"), None],
        ]
    );

    let filtered = store
        .usage(query(
            from,
            to,
            "key_id",
            "&filter.team=search&filter.day=2026-11-11",
        ))
        .await
        .expect("usage");
    assert_eq!(dims(&filtered), vec![vec![Some("k1")]]);
    assert_eq!(filtered.totals.requests, 1);
    let by_model = store
        .usage(query(from, to, "", "&filter.model=gpt-4o"))
        .await
        .expect("usage");
    assert_eq!(by_model.totals.requests, 2);
    let none = store
        .usage(query(from, to, "team", "&filter.provider=anthropic"))
        .await
        .expect("usage");
    assert!(none.rows.is_empty());
    assert_eq!(none.totals.requests, 0);
}

pub async fn concurrent_batches_never_double_count(store: Arc<dyn Store>) {
    let t0 = ts("2026-11-10T10:10:00Z");
    let batch: Vec<_> = (0..200)
        .map(|i| {
            rec(
                &format!("c{i}"),
                t0 + i,
                "k1",
                Some("search"),
                Some("m"),
                1,
                Some(1.0),
            )
        })
        .collect();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            let batch = batch.clone();
            tokio::spawn(async move { store.insert_batch(batch).await })
        })
        .collect();
    let mut inserted = 0;
    let mut duplicates = 0;
    for task in tasks {
        let outcome = task.await.expect("task").expect("insert");
        inserted += outcome.inserted;
        duplicates += outcome.duplicates;
    }
    assert_eq!((inserted, duplicates), (200, 7 * 200));
    let (from, to) = (ts("2026-11-01T00:00:00Z"), ts("2026-12-01T00:00:00Z"));
    let report = store.usage(query(from, to, "", "")).await.expect("usage");
    assert_eq!(report.totals.requests, 200);
    store.ping().await.expect("ping");
    store.close().await.expect("close");
}

fn budget(id: &str, scope: &[(&str, &str)], amount_usd: f64) -> Budget {
    Budget {
        id: id.to_owned(),
        scope: scope
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        period: Period::Month,
        amount_usd,
        soft: 0.8,
        hard: 1.0,
        alerts: crate::domain::alerts::Tiers::default(),
        enforce: Enforce::Flags,
    }
}

pub async fn budget_crud(store: &dyn Store) {
    assert!(store.list_budgets().await.expect("list").is_empty());
    let b2 = budget("b2", &[("team", "search"), ("key_id", "k1")], 50.0);
    let b1 = budget("b1", &[("team", "search")], 100.0);
    assert!(store.create_budget(b2.clone()).await.expect("create b2"));
    assert!(store.create_budget(b1.clone()).await.expect("create b1"));
    // A second create with the same id changes nothing.
    let clash = budget("b1", &[("team", "growth")], 1.0);
    assert!(!store.create_budget(clash).await.expect("create clash"));
    assert_eq!(
        store.get_budget("b1".into()).await.expect("get"),
        Some(b1.clone())
    );
    assert_eq!(store.get_budget("nope".into()).await.expect("get"), None);
    assert_eq!(
        store.list_budgets().await.expect("list"),
        vec![b1.clone(), b2.clone()],
        "sorted by id, every field round-trips"
    );

    let raised = Budget {
        period: Period::Day,
        amount_usd: 250.5,
        soft: 0.5,
        hard: 1.1,
        alerts: crate::domain::alerts::Tiers {
            info: 0.3,
            warning: 0.6,
            critical: 0.8,
            hard: 1.2,
        },
        enforce: Enforce::Strict,
        ..b1.clone()
    };
    assert!(store.replace_budget(raised.clone()).await.expect("replace"));
    assert_eq!(
        store.get_budget("b1".into()).await.expect("get"),
        Some(raised)
    );
    let absent = budget("b3", &[("team", "x")], 1.0);
    assert!(!store.replace_budget(absent).await.expect("replace absent"));
    assert_eq!(store.get_budget("b3".into()).await.expect("get"), None);

    assert!(store.delete_budget("b2".into()).await.expect("delete"));
    assert!(!store
        .delete_budget("b2".into())
        .await
        .expect("delete again"));
    let ids: Vec<String> = store
        .list_budgets()
        .await
        .expect("list")
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(ids, vec!["b1".to_owned()]);
}

pub async fn spend_matches_every_scope_pair(store: &dyn Store) {
    let nov = |day: u32, hour: u32| ts(&format!("2026-11-{day:02}T{hour:02}:10:00Z"));
    let records = vec![
        rec(
            "s1",
            nov(1, 0),
            "k1",
            Some("search"),
            Some("m"),
            10,
            Some(1.25),
        ),
        rec(
            "s2",
            nov(15, 13),
            "k2",
            Some("search"),
            Some("m"),
            10,
            Some(2.5),
        ),
        rec(
            "s3",
            nov(30, 23),
            "k1",
            Some("growth"),
            Some("m"),
            10,
            Some(4.0),
        ),
        rec("s4", nov(20, 5), "k1", None, Some("m"), 10, Some(8.0)),
        // Unpriced: counts as 0.
        rec("s5", nov(20, 6), "k1", Some("search"), None, 10, None),
        // Outside November on both sides.
        rec(
            "s6",
            ts("2026-10-31T23:59:59Z"),
            "k1",
            Some("search"),
            Some("m"),
            10,
            Some(16.0),
        ),
        rec(
            "s7",
            ts("2026-12-01T00:00:00Z"),
            "k1",
            Some("search"),
            Some("m"),
            10,
            Some(32.0),
        ),
    ];
    store.insert_batch(records).await.expect("insert");
    let scope = |pairs: &[(&str, &str)]| -> Scope {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let scopes = vec![
        scope(&[("team", "search")]),
        scope(&[("key_id", "k1")]),
        scope(&[("team", "search"), ("key_id", "k1")]),
        scope(&[("org", "acme")]),
        scope(&[("team", "nobody")]),
        scope(&[("project", "ranking")]),
    ];
    let (from, to) = (ts("2026-11-01T00:00:00Z"), ts("2026-12-01T00:00:00Z"));
    let spend = store.spend_usd(scopes, from, to).await.expect("spend");
    let expected = [3.75, 13.25, 1.25, 15.75, 0.0, 0.0];
    assert_eq!(spend.len(), expected.len());
    for (i, (got, want)) in spend.iter().zip(expected).enumerate() {
        assert!(
            (got - want).abs() < 1e-9,
            "scope {i}: got {got}, want {want}"
        );
    }
    // A partial range reads raw edge hours too: 15 Nov 13:00 .. 30 Nov 23:30.
    let spend = store
        .spend_usd(
            vec![scope(&[("org", "acme")])],
            ts("2026-11-15T13:00:00Z"),
            ts("2026-11-30T23:30:00Z"),
        )
        .await
        .expect("spend");
    assert_eq!(spend.len(), 1);
    assert!((spend.iter().sum::<f64>() - 14.5).abs() < 1e-9, "{spend:?}");
    assert!(store
        .spend_usd(Vec::new(), from, to)
        .await
        .expect("empty")
        .is_empty());
}

/// The report of `query` over `records`, computed by the aggregator from the
/// records themselves (every dimension known): the oracle for the stores.
fn expected_report(records: &[PricedRecord], query: &UsageQuery) -> UsageReport {
    let mut aggregator = Aggregator::new(query);
    for r in records
        .iter()
        .filter(|r| (query.from_ms..query.to_ms).contains(&r.record.ts_ms))
    {
        aggregator.add(&Slice::of_record(r), &Sums::of_record(r));
    }
    aggregator.finish()
}

fn assert_same_rows(actual: &UsageReport, expected: &UsageReport, context: &str) {
    let by_dims = |r: &UsageReport| -> BTreeMap<Vec<Option<String>>, Sums> {
        r.rows
            .iter()
            .map(|row| (row.dims.clone(), row.sums))
            .collect()
    };
    let (a, e) = (by_dims(actual), by_dims(expected));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        e.keys().collect::<Vec<_>>(),
        "{context}: groups"
    );
    for (dims, sums) in &a {
        assert_sums_eq(sums, &e[dims], &format!("{context} {dims:?}"));
    }
    assert_sums_eq(
        &actual.totals,
        &expected.totals,
        &format!("{context}: totals"),
    );
}

/// `hour`, `week`, `month` (from the rollups) and `requested_model`,
/// `label.<name>` (from raw records), grouped and filtered, over ranges with
/// ragged edges and sealed days.
pub async fn time_and_record_dimensions_are_exact(store: &dyn Store) {
    let base = ts("2026-11-27T00:00:00Z"); // a Friday: the weeks 48 and 49
    let records: Vec<_> = (0..300i64)
        .map(|i| {
            let at = base + (i * 7919 % 8640) * 60_000 + i * 17; // over 6 days
            let mut r = rec(
                &format!("d{i}"),
                at,
                "k",
                Some(["a", "b"][(i % 2) as usize]),
                Some("m"),
                (i % 40) as u64,
                Some(i as f64 / 1000.0),
            );
            r.record.requested_model =
                [None, Some("fast"), Some("smart")][(i % 3) as usize].map(str::to_owned);
            if i % 4 != 0 {
                let feature = ["summarize", "chat", "search"][(i % 3) as usize];
                r.record.labels = BTreeMap::from([("feature".to_owned(), feature.to_owned())]);
            }
            r
        })
        .collect();
    let mut sorted = records.clone();
    sorted.sort_by_key(|r| r.record.ts_ms);
    // In time order, so the SQLite store seals the first days.
    for chunk in sorted.chunks(40) {
        store.insert_batch(chunk.to_vec()).await.expect("insert");
    }
    let ranges = [
        ("2026-11-01T00:00:00Z", "2026-12-31T00:00:00Z"),
        ("2026-11-27T05:30:00Z", "2026-12-02T17:23:45Z"),
        ("2026-11-29T00:00:00Z", "2026-11-30T00:00:00Z"),
        ("2026-11-30T10:00:00Z", "2026-11-30T13:00:00Z"),
        ("2026-11-28T10:10:00Z", "2026-11-28T10:50:00Z"),
    ];
    let queries = [
        ("hour", ""),
        ("day", ""),
        ("week", ""),
        ("month", ""),
        ("requested_model", ""),
        ("label.feature", ""),
        ("requested_model,hour", ""),
        ("label.feature,week,team", ""),
        ("team", "&filter.label.feature=summarize"),
        ("week", "&filter.requested_model=fast&filter.team=a"),
        ("label.feature", "&filter.week=2026-W49"),
        ("team", "&filter.hour=2026-11-30T11:00:00Z"),
        ("hour", "&filter.month=2026-12"),
    ];
    for (from, to) in ranges {
        for (group_by, filters) in queries {
            let q = query(ts(from), ts(to), group_by, filters);
            let report = store.usage(q.clone()).await.expect("usage");
            let context = format!("{group_by}{filters} over {from}..{to}");
            assert_same_rows(&report, &expected_report(&records, &q), &context);
        }
    }
    // The oracle is not trivially empty.
    let all = query(ts(ranges[0].0), ts(ranges[0].1), "label.feature", "");
    assert_eq!(store.usage(all).await.expect("usage").rows.len(), 4);
    assert_eq!(
        store.tag_keys().await.expect("tag keys"),
        vec!["org".to_owned(), "team".to_owned()]
    );
}

/// Refused calls (every refusal code) count in `denied`, `requests` and
/// `errors`, from raw records, hourly and daily rollups alike; other errors
/// do not count as denied.
pub async fn refusals_count_as_denied(store: &dyn Store) {
    let base = ts("2026-11-20T00:00:00Z");
    let codes = [
        Some("invalid_api_key"),
        Some("rate_limit_exceeded"),
        Some("budget_exceeded"),
        Some("caps_unavailable"),
        Some("no_response"),
        None,
    ];
    let records: Vec<_> = (0..240i64)
        .map(|i| {
            let mut r = rec(
                &format!("x{i}"),
                base + i * 1_234_567,
                "k",
                Some("t"),
                None,
                0,
                None,
            );
            r.record.error = codes[(i % 6) as usize].map(str::to_owned);
            r.record.status = [401, 429, 402, 503, 499, 200][(i % 6) as usize];
            r
        })
        .collect();
    for chunk in records.chunks(30) {
        store.insert_batch(chunk.to_vec()).await.expect("insert");
    }
    for (from, to) in [
        ("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"),
        ("2026-11-20T05:30:00Z", "2026-11-22T17:23:45Z"),
        ("2026-11-21T10:10:00Z", "2026-11-21T10:50:00Z"),
    ] {
        let (f, t) = (ts(from), ts(to));
        for group_by in ["key_id", "hour", "label.x"] {
            let report = store.usage(query(f, t, group_by, "")).await.expect("usage");
            let expected = expected_totals(&records, f, t);
            assert_sums_eq(
                &report.totals,
                &expected,
                &format!("{group_by} {from}..{to}"),
            );
        }
    }
    let all = store
        .usage(query(
            ts("2026-11-01T00:00:00Z"),
            ts("2026-12-01T00:00:00Z"),
            "team",
            "",
        ))
        .await
        .expect("usage");
    assert_eq!(
        (all.totals.requests, all.totals.errors, all.totals.denied),
        (240, 200, 160)
    );
}

fn token(id: &str, hash_byte: u8, role: Role, scope: Option<Scope>) -> ApiToken {
    ApiToken {
        id: id.into(),
        sha256: [hash_byte; 32],
        role,
        scope,
        label: format!("label of {id}"),
        created_at: i64::from(hash_byte),
        expires_at: Some(9_000),
        revoked_at: None,
        created_by: "bootstrap:admin".into(),
    }
}

pub async fn tokens_are_stored_hashed_and_revoked(store: &dyn Store) {
    let search = Scope::from([("team".to_owned(), "search".to_owned())]);
    let viewer = token("tok_v", 1, Role::Viewer, Some(search));
    let finance = token("tok_f", 2, Role::Finance, None);
    assert!(store.create_token(viewer.clone()).await.expect("create"));
    assert!(store.create_token(finance.clone()).await.expect("create"));
    // Same id, or same hash: refused, nothing changed.
    assert!(!store
        .create_token(token("tok_v", 3, Role::Admin, None))
        .await
        .expect("dup id"));
    assert!(!store
        .create_token(token("tok_x", 1, Role::Admin, None))
        .await
        .expect("dup hash"));
    assert_eq!(
        store.list_tokens().await.expect("list"),
        vec![viewer.clone(), finance.clone()]
    );
    assert!(store
        .revoke_token("tok_v".into(), 500)
        .await
        .expect("revoke"));
    assert!(
        !store
            .revoke_token("tok_v".into(), 600)
            .await
            .expect("again"),
        "already revoked"
    );
    assert!(!store
        .revoke_token("tok_none".into(), 600)
        .await
        .expect("unknown"));
    let listed = store.list_tokens().await.expect("list");
    assert_eq!(listed[0].revoked_at, Some(500));
    assert_eq!(listed[0].sha256, [1; 32]);
    assert_eq!(listed[1], finance);
}

pub async fn audit_log_appends_and_pages(store: &dyn Store) {
    for i in 1..=5i64 {
        let entry = AuditEntry {
            seq: 0,
            at: i * 1000,
            actor: if i % 2 == 0 {
                "tok_a".into()
            } else {
                "bootstrap:admin".into()
            },
            action: if i == 5 {
                "token.create".into()
            } else {
                "budget.create".into()
            },
            target: format!("budget:b{i}"),
            before: (i > 1).then(|| serde_json::json!({"amount_usd": i - 1})),
            after: Some(serde_json::json!({"amount_usd": i, "scope": {"team": "a,b"}})),
            request_id: format!("req_{i}"),
        };
        store.append_audit(entry).await.expect("append");
    }
    let all = AuditQuery {
        limit: 100,
        ..AuditQuery::default()
    };
    let entries = store.list_audit(all.clone()).await.expect("list");
    assert_eq!(entries.len(), 5);
    let seqs: Vec<i64> = entries.iter().map(|e| e.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seqs:?}"
    );
    assert_eq!(entries[0].action, "token.create");
    assert_eq!(entries[4].before, None);
    assert_eq!(
        entries[3].before,
        Some(serde_json::json!({"amount_usd": 1}))
    );
    assert_eq!(
        entries[0]
            .after
            .as_ref()
            .map(|a| a["scope"]["team"].clone()),
        Some("a,b".into())
    );
    // Filters agree with AuditQuery::matches; paging by `before`.
    let queries = [
        AuditQuery {
            actor: Some("tok_a".into()),
            ..all.clone()
        },
        AuditQuery {
            action: Some("budget.create".into()),
            ..all.clone()
        },
        AuditQuery {
            target: Some("budget:b3".into()),
            ..all.clone()
        },
        AuditQuery {
            from_ms: Some(2000),
            to_ms: Some(4000),
            ..all.clone()
        },
        AuditQuery {
            before: Some(seqs[1]),
            ..all.clone()
        },
    ];
    for q in queries {
        let got = store.list_audit(q.clone()).await.expect("filtered");
        let want: Vec<_> = entries.iter().filter(|e| q.matches(e)).cloned().collect();
        assert!(!want.is_empty(), "{q:?}");
        assert_eq!(got, want, "{q:?}");
    }
    let page = store
        .list_audit(AuditQuery {
            limit: 2,
            ..all.clone()
        })
        .await
        .expect("page");
    assert_eq!(page, entries[..2].to_vec());
}

pub async fn overrides_collect_one_approval_per_actor_and_role(store: &dyn Store) {
    let o = Override {
        id: "ovr_1".into(),
        budget_id: "b1".into(),
        amount_usd: 2.5,
        expires_at: 10_000,
        reason: "launch day".into(),
        requested_by: "tok_r".into(),
        created_at: 100,
        approvals: Vec::new(),
    };
    store.create_override(o.clone()).await.expect("create");
    let newer = Override {
        id: "ovr_2".into(),
        created_at: 200,
        ..o.clone()
    };
    store.create_override(newer).await.expect("create");
    assert!(store.create_override(o.clone()).await.is_err(), "id taken");
    let approval = |actor: &str, role: Role, at: i64| Approval {
        actor: actor.into(),
        role,
        at,
    };
    assert!(store
        .add_override_approval("ovr_1".into(), approval("tok_f", Role::Finance, 300))
        .await
        .expect("a1"));
    assert!(!store
        .add_override_approval("ovr_1".into(), approval("tok_f", Role::Admin, 301))
        .await
        .expect("same actor"));
    assert!(!store
        .add_override_approval("ovr_1".into(), approval("tok_g", Role::Finance, 302))
        .await
        .expect("same role"));
    assert!(!store
        .add_override_approval("ovr_none".into(), approval("tok_a", Role::Admin, 303))
        .await
        .expect("unknown"));
    assert!(store
        .add_override_approval("ovr_1".into(), approval("tok_a", Role::Admin, 304))
        .await
        .expect("a2"));
    let listed = store.list_overrides().await.expect("list");
    assert_eq!(
        listed.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(),
        ["ovr_2", "ovr_1"]
    );
    assert!(listed[0].approvals.is_empty());
    assert_eq!(
        listed[1].approvals,
        vec![
            approval("tok_f", Role::Finance, 300),
            approval("tok_a", Role::Admin, 304)
        ]
    );
    assert_eq!(
        Override {
            approvals: Vec::new(),
            ..listed[1].clone()
        },
        o
    );
}

/// GL accounts are upserted and listed by cost center; a month closes once,
/// its booked lines (usage and adjustments) come back as stored.
pub async fn ledger_round_trip(store: &dyn Store) {
    use crate::domain::finops::chargeback::{ChargebackLine, ClosedMonth, GlAccount, LineSums};
    let account = |cc: &str, gl: &str, at: i64| GlAccount {
        cost_center: cc.into(),
        gl_account: gl.into(),
        updated_ms: at,
    };
    assert!(store
        .put_gl_account(account("CC-2", "6200", 1))
        .await
        .expect("put"));
    assert!(store
        .put_gl_account(account("CC-1", "6100", 2))
        .await
        .expect("put"));
    assert!(!store
        .put_gl_account(account("CC-1", "6110", 3))
        .await
        .expect("update"));
    assert_eq!(
        store.gl_accounts().await.expect("list"),
        vec![account("CC-1", "6110", 3), account("CC-2", "6200", 1)]
    );
    let line = |month: &str, adjusts: Option<&str>, cc: &str, cost: f64| ChargebackLine {
        month: month.into(),
        key: (cc.into(), "search".into(), String::new()),
        gl_account: "6110".into(),
        sums: LineSums {
            requests: 3,
            input_tokens: 1_000_000_000_000,
            output_tokens: 7,
            cost_usd: cost,
        },
        adjusts: adjusts.map(str::to_owned),
    };
    let nov = vec![
        line("2026-11", None, "CC-1", 0.1 + 0.2),
        line("2026-11", None, "UNALLOCATED", 1e-9),
    ];
    let closed = |m: &str, at: i64| ClosedMonth {
        month: m.into(),
        closed_ms: at,
    };
    assert!(store
        .close_month(closed("2026-11", 10), nov.clone())
        .await
        .expect("close"));
    assert!(!store
        .close_month(closed("2026-11", 11), vec![line("2026-11", None, "X", 5.0)])
        .await
        .expect("closed twice"));
    let dec = vec![line("2026-12", Some("2026-11"), "CC-1", -0.25)];
    assert!(store
        .close_month(closed("2026-12", 20), dec.clone())
        .await
        .expect("close"));
    assert!(store
        .close_month(closed("2027-01", 30), Vec::new())
        .await
        .expect("empty month"));
    assert_eq!(
        store.closed_months().await.expect("months"),
        vec![
            closed("2026-11", 10),
            closed("2026-12", 20),
            closed("2027-01", 30)
        ]
    );
    let mut want = nov;
    want.extend(dec);
    assert_eq!(store.booked_lines().await.expect("lines"), want);
}

/// Instantiates the suite for one backend. `$open` evaluates to
/// `(Arc<dyn Store>, guard)`; the guard (e.g. a temp dir) lives for the test.
/// An id as the filter makes it: its first 48 bits are `ts_ms` (PostgreSQL
/// finds such records by time through the id index).
fn filter_id(ts_ms: i64, n: u64) -> String {
    format!("{ts_ms:012x}{n:020x}")
}

/// Retention deletes old raw records in small batches; the rollups, and so
/// every answer they give, stay exact; a query needing deleted records is
/// refused (`BeyondRetention`), never answered short.
pub async fn retention_keeps_the_totals(store: &dyn Store) {
    use super::StoreErrorKind;
    let day0 = ts("2026-11-01T00:00:00Z");
    let mut records = Vec::new();
    for i in 0..120u64 {
        // Five days, spread over hours and minutes; both kinds of id.
        let ts_ms = day0 + (i as i64) * 61 * 60_000 + (i as i64 % 7) * 1_000;
        let id = if i % 3 == 0 {
            format!("free-form-{i}")
        } else {
            filter_id(ts_ms, i)
        };
        let mut r = rec(
            &id,
            ts_ms,
            if i % 2 == 0 { "k1" } else { "k2" },
            Some(if i % 4 == 0 { "search" } else { "ads" }),
            Some("gpt-4o"),
            i + 1,
            Some(0.25 * i as f64),
        );
        r.record.requested_model = Some(format!("m{}", i % 3));
        records.push(r);
    }
    let first_ts = records.first().map_or(0, |r| r.record.ts_ms);
    let last_ts = records.last().map_or(0, |r| r.record.ts_ms);
    for batch in records.chunks(25) {
        store.insert_batch(batch.to_vec()).await.expect("insert");
    }
    let (from, to) = (day0, ts("2026-11-07T00:00:00Z"));
    let by_team_day = query(from, to, "team,day", "");
    let before = store
        .usage(by_team_day.clone())
        .await
        .expect("usage before");
    assert_eq!(store.retention_horizon().await.expect("horizon"), None);

    // Horizon: 2026-11-03T05:00Z. Records before it go, a few per call.
    let horizon = ts("2026-11-03T05:00:00Z");
    let old = records.iter().filter(|r| r.record.ts_ms < horizon).count() as u64;
    assert!(old > 20 && old < records.len() as u64, "{old}");
    let (mut deleted, mut calls) = (0, 0);
    loop {
        let purged = store.purge_records(horizon, 4).await.expect("purge");
        deleted += purged.deleted;
        calls += 1;
        assert!(calls < 500, "purge never finished");
        if !purged.more {
            break;
        }
    }
    assert_eq!(
        deleted, old,
        "every record before the horizon, and only those"
    );
    assert!(calls > 2, "deleted in small batches ({calls} calls)");
    assert_eq!(
        store.retention_horizon().await.expect("horizon"),
        Some(horizon)
    );
    // A second pass finds nothing; the horizon never moves back.
    let again = store
        .purge_records(horizon - 86_400_000, 4)
        .await
        .expect("purge");
    assert_eq!(again.deleted, 0);
    assert_eq!(
        store.retention_horizon().await.expect("horizon"),
        Some(horizon)
    );

    // Rollup answers are unchanged, over whole hours, days and months.
    let after = store.usage(by_team_day).await.expect("usage after");
    assert_eq!(dims(&after), dims(&before));
    for (a, b) in after.rows.iter().zip(&before.rows) {
        assert_sums_eq(&a.sums, &b.sums, "team,day after retention");
    }
    assert_sums_eq(
        &after.totals,
        &expected_totals(&records, from, to),
        "totals after retention",
    );
    let hours = store
        .usage(query(
            ts("2026-11-01T03:00:00Z"),
            ts("2026-11-05T04:00:00Z"),
            "hour",
            "",
        ))
        .await
        .expect("whole hours");
    assert_sums_eq(
        &hours.totals,
        &expected_totals(
            &records,
            ts("2026-11-01T03:00:00Z"),
            ts("2026-11-05T04:00:00Z"),
        ),
        "whole hours across the horizon",
    );

    // A partial hour before the horizon needs deleted records: refused.
    let err = store
        .usage(query(ts("2026-11-01T03:30:00Z"), to, "team", ""))
        .await
        .expect_err("partial hour before the horizon must be refused");
    assert_eq!(err.kind(), StoreErrorKind::BeyondRetention, "{err}");
    assert!(err.message().contains("2026-11-03T05:00:00"), "{err}");
    // requested_model is read from raw records: refused before, exact after.
    let err = store
        .usage(query(from, to, "requested_model", ""))
        .await
        .expect_err("requested_model over deleted records must be refused");
    assert_eq!(err.kind(), StoreErrorKind::BeyondRetention, "{err}");
    let kept = store
        .usage(query(horizon, to, "requested_model", ""))
        .await
        .expect("requested_model after the horizon");
    assert_sums_eq(
        &kept.totals,
        &expected_totals(&records, horizon, to),
        "requested_model after the horizon",
    );
    // A partial hour after the horizon is still read from raw records.
    let edge = ts("2026-11-04T10:30:00Z");
    let partial = store
        .usage(query(edge, last_ts + 1, "team", ""))
        .await
        .expect("partial hour after the horizon");
    assert_sums_eq(
        &partial.totals,
        &expected_totals(&records, edge, last_ts + 1),
        "partial hours after the horizon",
    );
    assert!(first_ts < horizon);
    // Budget spend reads the rollups: the whole month is still there.
    let spend = store
        .spend_usd(
            vec![Scope::from([("team".to_owned(), "ads".to_owned())])],
            ts("2026-11-01T00:00:00Z"),
            ts("2026-12-01T00:00:00Z"),
        )
        .await
        .expect("spend");
    let ads: f64 = records
        .iter()
        .filter(|r| r.record.tags.get("team").map(String::as_str) == Some("ads"))
        .filter_map(|r| r.cost_usd)
        .sum();
    assert!((spend[0] - ads).abs() < 1e-9, "{spend:?} vs {ads}");
    // Ingest goes on after a purge (rowids may be reused on SQLite).
    let late = rec(
        &filter_id(last_ts + 5, 999),
        last_ts + 5,
        "k1",
        Some("ads"),
        None,
        3,
        None,
    );
    let outcome = store
        .insert_batch(vec![late.clone()])
        .await
        .expect("insert");
    assert_eq!(outcome.inserted, 1);
    let mut all = records.clone();
    all.push(late);
    let tail = store
        .usage(query(edge, last_ts + 6, "team", ""))
        .await
        .expect("tail");
    assert_sums_eq(
        &tail.totals,
        &expected_totals(&all, edge, last_ts + 6),
        "ingest after retention",
    );
}

macro_rules! store_suite {
    ($backend:ident, $open:expr) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn inserts_and_groups() {
                let (store, _guard) = $open;
                super::inserts_and_groups(&*store).await;
            }

            #[tokio::test]
            async fn duplicates_change_nothing() {
                let (store, _guard) = $open;
                super::duplicates_change_nothing(&*store).await;
            }

            #[tokio::test]
            async fn usage_is_exact_for_any_range() {
                let (store, _guard) = $open;
                super::usage_is_exact_for_any_range(&*store).await;
            }

            #[tokio::test]
            async fn unpriced_missing_tags_filters_and_days() {
                let (store, _guard) = $open;
                super::unpriced_missing_tags_filters_and_days(&*store).await;
            }

            #[tokio::test]
            async fn time_and_record_dimensions_are_exact() {
                let (store, _guard) = $open;
                super::time_and_record_dimensions_are_exact(&*store).await;
            }

            #[tokio::test]
            async fn refusals_count_as_denied() {
                let (store, _guard) = $open;
                super::refusals_count_as_denied(&*store).await;
            }

            #[tokio::test]
            async fn ledger_round_trip() {
                let (store, _guard) = $open;
                super::ledger_round_trip(&*store).await;
            }

            #[tokio::test]
            async fn budget_crud() {
                let (store, _guard) = $open;
                super::budget_crud(&*store).await;
            }

            #[tokio::test]
            async fn spend_matches_every_scope_pair() {
                let (store, _guard) = $open;
                super::spend_matches_every_scope_pair(&*store).await;
            }

            #[tokio::test]
            async fn tokens_are_stored_hashed_and_revoked() {
                let (store, _guard) = $open;
                super::tokens_are_stored_hashed_and_revoked(&*store).await;
            }

            #[tokio::test]
            async fn audit_log_appends_and_pages() {
                let (store, _guard) = $open;
                super::audit_log_appends_and_pages(&*store).await;
            }

            #[tokio::test]
            async fn overrides_collect_one_approval_per_actor_and_role() {
                let (store, _guard) = $open;
                super::overrides_collect_one_approval_per_actor_and_role(&*store).await;
            }

            #[tokio::test]
            async fn keys_round_trip_and_change_by_revision() {
                let (store, _guard) = $open;
                super::keys::keys_round_trip_and_change_by_revision(&*store).await;
            }

            #[tokio::test]
            async fn many_keys_in_one_write() {
                let (store, _guard) = $open;
                super::keys::many_keys_in_one_write(&*store).await;
            }

            #[tokio::test]
            async fn retention_keeps_the_totals() {
                let (store, _guard) = $open;
                super::retention_keeps_the_totals(&*store).await;
            }

            #[tokio::test]
            async fn alerts_are_stored_once_and_enqueue_deliveries() {
                let (store, _guard) = $open;
                super::alerts::alerts_are_stored_once_and_enqueue_deliveries(&*store).await;
            }

            #[tokio::test]
            async fn outbox_claims_retries_and_finishes() {
                let (store, _guard) = $open;
                super::alerts::outbox_claims_retries_and_finishes(&*store).await;
            }

            #[tokio::test]
            async fn anomalies_fire_once_per_team_model_and_day() {
                let (store, _guard) = $open;
                super::alerts::anomalies_fire_once_per_team_model_and_day(store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_evaluators_store_each_alert_once() {
                let (store, _guard) = $open;
                super::alerts::concurrent_evaluators_store_each_alert_once(store).await;
            }

            #[tokio::test]
            async fn leases_keep_base_plus_commitments_under_the_cap() {
                let (store, _guard) = $open;
                super::leases::leases_keep_base_plus_commitments_under_the_cap(&*store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_grants_never_over_grant() {
                let (store, _guard) = $open;
                super::leases::concurrent_grants_never_over_grant(store).await;
            }

            #[tokio::test]
            async fn price_changes_are_append_only() {
                let (store, _guard) = $open;
                super::prices::price_changes_are_append_only(&*store).await;
            }

            #[tokio::test]
            async fn provider_imports_replace_their_range() {
                let (store, _guard) = $open;
                super::prices::provider_imports_replace_their_range(&*store).await;
            }

            #[tokio::test]
            async fn reprice_rebuilds_the_rollups_exactly() {
                let (store, _guard) = $open;
                super::prices::reprice_rebuilds_the_rollups_exactly(&*store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_batches_never_double_count() {
                let (store, _guard) = $open;
                super::concurrent_batches_never_double_count(store).await;
            }
        }
    };
}

fn open_sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("nested/aispend.db");
    let url = format!("sqlite://{}", path.display());
    (super::open(&url).expect("open sqlite"), dir)
}

store_suite!(sqlite, open_sqlite());

/// A fresh PostgreSQL schema per test (dropped by the guard); fails with how
/// to start PostgreSQL when it is not reachable, never skips.
async fn open_postgres() -> (Arc<dyn Store>, super::postgres::test_schema::TestSchema) {
    let schema = super::postgres::test_schema::TestSchema::create()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let store = super::connect(&schema.url()).await.expect("open postgres");
    (store, schema)
}

store_suite!(postgres, open_postgres().await);

#[test]
fn unsupported_urls_are_clear_errors() {
    let err = |url: &str| {
        super::open(url)
            .err()
            .map(|e| e.message().to_owned())
            .unwrap_or_default()
    };
    assert!(err("postgres://localhost/test").contains("store::connect"));
    assert!(err("mysql://x").contains("unsupported database URL"));
}
