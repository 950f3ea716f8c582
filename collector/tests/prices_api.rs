//! Prices in time over HTTP (SPEC §13): price changes and discounts (admin,
//! audited), records priced by the price in effect at their `ts` and never
//! repriced silently, `POST /v1/prices/recompute`, and `ListCost` above
//! `EffectiveCost` in the FOCUS export where a discount applies.

mod common;

use axum::http::StatusCode;
use common::{call, start, ADMIN, INGEST, READ};
use serde_json::{json, Value};

fn record(id: &str, ts: &str, input: u64) -> Value {
    json!({"id": id, "ts": ts, "gateway": "envoy", "key_id": "k1",
        "tags": {"team": "search"}, "labels": {}, "provider": "openai",
        "operation": "chat", "model": "gpt-4o-mini-2024-07-18", "status": 200,
        "input_tokens": input, "cached_input_tokens": 0, "cache_write_input_tokens": 0,
        "output_tokens": 0, "reasoning_tokens": 0})
}

/// Cost per day from `GET /v1/usage?group_by=day`.
async fn costs_by_day(router: &axum::Router) -> Vec<(String, f64)> {
    let a = call(
        router,
        "GET",
        "/v1/usage?from=2026-11-01T00:00:00Z&to=2026-12-01T00:00:00Z&group_by=day",
        Some(READ),
        Value::Null,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let mut rows: Vec<(String, f64)> = a.json["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["day"].as_str().unwrap_or_default().to_owned(),
                r["cost_usd"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect();
    rows.sort_by(|x, y| x.0.cmp(&y.0));
    rows
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 + 1e-9 * b.abs()
}

/// Splits one CSV line (RFC 4180 quotes).
fn fields(line: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

#[tokio::test]
async fn prices_in_time_discounts_and_recompute() {
    let c = start();
    let r = &c.router;
    // 1M input tokens of gpt-4o-mini: $0.15 at the embedded price.
    let base = 0.15;
    let change = json!({
        "prices": [{"provider": "openai", "model": "gpt-4o-mini",
            "effective_from": "2026-11-10T12:00:00Z",
            "input_cost_per_token": 4e-7, "output_cost_per_token": 1.6e-6}],
        "discounts": [{"provider": "openai", "discount": 0.2,
            "effective_from": "2026-11-20T00:00:00Z"}]});
    // Readers may not change prices; bad input names the field.
    let denied = call(r, "POST", "/v1/prices", Some(READ), change.clone()).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let bad = call(
        r,
        "POST",
        "/v1/prices",
        Some(ADMIN),
        json!({"discounts": [{"provider": "openai", "discount": 1.5,
            "effective_from": "2026-11-20T00:00:00Z"}]}),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.text.contains("discounts[0].discount"), "{}", bad.text);
    let ok = call(r, "POST", "/v1/prices", Some(ADMIN), change.clone()).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);
    assert_eq!(ok.json["added"], 2);
    let again = call(r, "POST", "/v1/prices", Some(ADMIN), change).await;
    assert_eq!(
        (
            again.json["added"].as_u64(),
            again.json["unchanged"].as_u64()
        ),
        (Some(0), Some(2))
    );
    let clash = call(
        r,
        "POST",
        "/v1/prices",
        Some(ADMIN),
        json!({"discounts": [{"provider": "openai", "discount": 0.3,
            "effective_from": "2026-11-20T00:00:00Z"}]}),
    )
    .await;
    assert_eq!(clash.status, StatusCode::CONFLICT, "{}", clash.text);

    // Three calls: before the change, after it, after the discount too.
    let batch = json!({"records": [
        record("a", "2026-11-05T10:00:00Z", 1_000_000),
        record("b", "2026-11-15T10:00:00Z", 1_000_000),
        record("c", "2026-11-25T10:00:00Z", 1_000_000)]});
    let a = call(r, "POST", "/v1/records", Some(INGEST), batch).await;
    assert_eq!(a.json["accepted"], 3, "{}", a.text);
    let days = costs_by_day(r).await;
    let want = [
        ("2026-11-05", base),
        ("2026-11-15", 0.4),
        ("2026-11-25", 0.4 * 0.8),
    ];
    assert_eq!(days.len(), 3, "{days:?}");
    for ((day, cost), (want_day, want_cost)) in days.iter().zip(want) {
        assert_eq!(day, want_day);
        assert!(close(*cost, want_cost), "{day}: {cost} vs {want_cost}");
    }
    let effective = call(
        r,
        "GET",
        "/v1/prices?provider=openai&model=gpt-4o-mini&at=2026-11-25T00:00:00Z",
        Some(READ),
        Value::Null,
    )
    .await;
    assert_eq!(effective.status, StatusCode::OK, "{}", effective.text);
    assert_eq!(effective.json["effective"]["input_cost_per_token"], 4e-7);
    assert_eq!(effective.json["effective"]["discount"], 0.2);

    // FOCUS: the discounted day's ListCost is above its EffectiveCost.
    let focus = call(
        r,
        "GET",
        "/v1/export/focus?month=2026-11",
        Some(ADMIN),
        Value::Null,
    )
    .await;
    assert_eq!(focus.status, StatusCode::OK);
    let mut lines = focus.text.lines();
    let header = fields(lines.next().expect("header"));
    let col = |name: &str| header.iter().position(|h| h == name).expect(name);
    let (list, eff, start) = (
        col("ListCost"),
        col("EffectiveCost"),
        col("ChargePeriodStart"),
    );
    let mut discounted = 0;
    for line in lines {
        let f = fields(line);
        let (l, e): (f64, f64) = (f[list].parse().expect("list"), f[eff].parse().expect("eff"));
        if f[start].starts_with("2026-11-25") {
            assert!(e < l, "{line}");
            assert!(close(l * 0.8, e), "{l} {e}");
            discounted += 1;
        } else {
            assert!(close(l, e), "{line}");
        }
    }
    assert_eq!(discounted, 1);

    // A change back in time reprices nothing stored...
    let earlier = json!({"prices": [{"provider": "openai", "model": "gpt-4o-mini",
        "effective_from": "2026-11-01T00:00:00Z",
        "input_cost_per_token": 2e-7, "output_cost_per_token": 8e-7}]});
    let ok = call(r, "POST", "/v1/prices", Some(ADMIN), earlier).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);
    let unchanged = costs_by_day(r).await;
    assert_eq!(unchanged, days);
    // ...until a recompute of the range (admin only, whole hours).
    let uri = "/v1/prices/recompute?from=2026-11-01T00:00:00Z&to=2026-11-10T00:00:00Z";
    assert_eq!(
        call(r, "POST", uri, Some(READ), Value::Null).await.status,
        StatusCode::FORBIDDEN
    );
    let odd = call(
        r,
        "POST",
        "/v1/prices/recompute?from=2026-11-01T00:30:00Z&to=2026-11-10T00:00:00Z",
        Some(ADMIN),
        Value::Null,
    )
    .await;
    assert_eq!(odd.status, StatusCode::BAD_REQUEST);
    assert!(
        odd.text.contains("from: must be a whole hour"),
        "{}",
        odd.text
    );
    let done = call(r, "POST", uri, Some(ADMIN), Value::Null).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    assert_eq!(done.json["records"], 1);
    assert!(done.json["price_version"]
        .as_str()
        .unwrap_or("")
        .starts_with("rc-"));
    let after = costs_by_day(r).await;
    assert!(close(after[0].1, 0.2), "{after:?}");
    assert_eq!(after[1..], days[1..]);

    let audit = call(r, "GET", "/v1/audit", Some(ADMIN), Value::Null).await;
    let actions: Vec<&str> = audit.json["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        ["prices.recompute", "prices.change", "prices.change"]
    );
}
