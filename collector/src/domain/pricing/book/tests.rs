use super::*;
use crate::domain::record::Tokens;

fn base() -> Arc<PriceTable> {
    Arc::new(
        PriceTable::from_json(
            br#"{"gpt-4o-mini": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6},
                 "claude-x": {"input_cost_per_token": 3e-6, "output_cost_per_token": 4e-6}}"#,
        )
        .expect("table"),
    )
}

fn at(text: &str) -> i64 {
    parse_rfc3339_ms(text).expect("time")
}

fn call(provider: &str, model: &str, ts: &str) -> UsageRecord {
    UsageRecord {
        provider: provider.into(),
        model: Some(model.into()),
        tokens: Tokens {
            input: 1000,
            output: 100,
            ..Tokens::default()
        },
        ..UsageRecord::bare("r", at(ts))
    }
}

fn change(from: &str, input: f64) -> PriceChange {
    PriceChange {
        provider: "openai".into(),
        model: "gpt-4o-mini".into(),
        effective_from_ms: at(from),
        price: ModelPrice {
            input,
            output: 0.0,
            cache_read: input,
            cache_write: input,
            max_output_tokens: None,
        },
    }
}

#[test]
fn a_record_is_priced_by_the_price_in_effect_at_its_ts() {
    let book = PriceBook::new(
        base(),
        vec![
            change("2026-11-15T00:00:00Z", 5e-6),
            change("2026-11-20T12:00:00Z", 7e-6),
        ],
        Vec::new(),
    );
    let before = book.cost_of(&call(
        "openai",
        "gpt-4o-mini-2024-07-18",
        "2026-11-14T23:59:59Z",
    ));
    assert!((before.0.expect("priced") - (1000.0 * 1e-6 + 100.0 * 2e-6)).abs() < 1e-12);
    assert_eq!(before.1, book.base().version());
    let mid = book.cost_of(&call("openai", "gpt-4o-mini", "2026-11-16T00:00:00Z"));
    assert!((mid.0.expect("priced") - 1000.0 * 5e-6).abs() < 1e-12);
    assert_eq!(mid.1, book.changes()[0].version());
    let late = book.cost_of(&call("openai", "gpt-4o-mini", "2026-11-20T12:00:00Z"));
    assert!((late.0.expect("priced") - 1000.0 * 7e-6).abs() < 1e-12);
    // Another provider's model of the same name keeps the base price.
    let other = book.cost_of(&call("azure", "gpt-4o-mini", "2026-11-21T00:00:00Z"));
    assert!((other.0.expect("priced") - 0.0012).abs() < 1e-12);
}

#[test]
fn model_discounts_win_over_provider_discounts() {
    let d = |model: Option<&str>, fraction: f64, from: &str| Discount {
        provider: "anthropic".into(),
        model: model.map(str::to_owned),
        effective_from_ms: at(from),
        fraction,
    };
    let book = PriceBook::new(
        base(),
        Vec::new(),
        vec![
            d(None, 0.1, "2026-11-01T00:00:00Z"),
            d(Some("claude-x"), 0.25, "2026-11-10T00:00:00Z"),
        ],
    );
    let list = 1000.0 * 3e-6 + 100.0 * 4e-6;
    let (early, v) = book.cost_of(&call("anthropic", "claude-x", "2026-11-05T00:00:00Z"));
    assert!((early.expect("priced") - list * 0.9).abs() < 1e-12);
    assert!(v.ends_with(&book.discounts()[0].version()), "{v}");
    let (late, _) = book.cost_of(&call("anthropic", "claude-x", "2026-11-10T00:00:00Z"));
    assert!((late.expect("priced") - list * 0.75).abs() < 1e-12);
    let (none, v) = book.cost_of(&call("anthropic", "claude-x", "2026-10-31T23:00:00Z"));
    assert!((none.expect("priced") - list).abs() < 1e-12);
    assert_eq!(v, book.base().version());
}

#[test]
fn bodies_are_checked_field_by_field() {
    let err = |v: Value| PriceChanges::parse(&v).expect_err("refused");
    assert!(err(json!({"prices": [{"provider": "openai", "model": "m",
        "effective_from": "yesterday", "input_cost_per_token": 1, "output_cost_per_token": 1}]}))
    .starts_with("prices[0].effective_from"));
    assert!(err(json!({"prices": [{"provider": "openai", "model": "m",
        "effective_from": "2026-01-01T00:00:00Z", "input_cost_per_token": -1,
        "output_cost_per_token": 1}]}))
    .starts_with("prices[0].input_cost_per_token"));
    assert!(
        err(json!({"discounts": [{"provider": "openai", "discount": 1.0,
        "effective_from": "2026-01-01T00:00:00Z"}]}))
        .starts_with("discounts[0].discount")
    );
    assert!(
        err(json!({"discounts": [{"provider": "openai", "discount": 0.1,
        "effective_from": "2026-01-01T05:00:00Z"}]}))
        .contains("00:00:00Z")
    );
    assert!(err(json!({"prices": [], "extra": 1})).starts_with("body.extra"));
    let ok = PriceChanges::parse(&json!({"prices": [{"provider": "openai", "model": "m",
        "effective_from": "2026-01-01T00:00:00Z", "input_cost_per_token": 1e-6,
        "output_cost_per_token": 2e-6}]}))
    .expect("valid");
    assert_eq!(ok.prices[0].price.cache_read, 1e-6);
}
