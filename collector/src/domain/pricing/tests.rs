use super::*;
use crate::domain::record::{Tokens, UsageRecord};

fn table() -> PriceTable {
    PriceTable::embedded().expect("embedded table parses")
}

fn tokens(input: u64, cached: u64, write: u64, output: u64) -> Tokens {
    Tokens {
        input,
        cached_input: cached,
        cache_write_input: write,
        output,
        reasoning: 0,
    }
}

fn record(provider: &str, model: Option<&str>, t: Tokens) -> UsageRecord {
    UsageRecord {
        provider: provider.into(),
        model: model.map(str::to_owned),
        tokens: t,
        ..UsageRecord::bare("r1", 0)
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn embedded_table_covers_current_models_with_dated_ids_and_cache_prices() {
    let t = table();
    for (provider, model) in [
        ("openai", "gpt-4o-mini-2024-07-18"),
        ("openai", "gpt-4o"),
        ("openai", "gpt-4.1-2025-04-14"),
        ("openai", "gpt-5-mini-2025-08-07"),
        ("openai", "o3-mini"),
        ("openai", "text-embedding-3-small"),
        ("anthropic", "claude-sonnet-4-5-20250929"),
        ("anthropic", "claude-haiku-4-5"),
        ("anthropic", "claude-opus-4-1-20250805"),
        ("gemini", "gemini-2.5-flash"),
        ("gemini", "gemini-2.5-pro"),
        ("gemini", "gemini-2.0-flash-001"),
    ] {
        assert!(
            t.lookup(provider, model).is_some(),
            "{provider}/{model} unpriced"
        );
    }
    let sonnet = t
        .lookup("anthropic", "claude-sonnet-4-5-20250929")
        .expect("priced");
    assert!(close(sonnet.input, 3e-6) && close(sonnet.output, 15e-6));
    assert!(close(sonnet.cache_read, 0.3e-6) && close(sonnet.cache_write, 3.75e-6));
    assert!(!t.is_empty());
    assert_eq!(t.version().len(), 12);
}

#[test]
fn lookup_falls_back_to_provider_prefix_and_undated_ids() {
    let t = table();
    // Only `gemini/gemini-2.5-flash` is in the table.
    let flash = t
        .lookup("gemini", "gemini-2.5-flash")
        .expect("provider prefix");
    assert!(close(flash.input, 0.3e-6));
    assert_eq!(t.lookup("gemini", "models/gemini-2.5-flash"), Some(flash));
    // A snapshot not listed resolves to its family.
    let mini = t.lookup("openai", "gpt-4o-mini").copied();
    assert_eq!(t.lookup("openai", "gpt-4o-mini-2099-01-01").copied(), mini);
    assert!(t.lookup("gemini", "gemini-2.5-flash-009").is_some());
    assert!(t.lookup("openai", "no-such-model").is_none());
    assert!(t.lookup("openai", "no-such-model-2024-07-18").is_none());
}

#[test]
fn strips_only_dates_and_versions() {
    assert_eq!(
        strip_version_suffix("gpt-4o-mini-2024-07-18"),
        Some("gpt-4o-mini")
    );
    assert_eq!(
        strip_version_suffix("claude-sonnet-4-5-20250929"),
        Some("claude-sonnet-4-5")
    );
    assert_eq!(
        strip_version_suffix("claude-3-5-sonnet@20241022"),
        Some("claude-3-5-sonnet")
    );
    assert_eq!(
        strip_version_suffix("gemini-2.5-flash-001"),
        Some("gemini-2.5-flash")
    );
    assert_eq!(
        strip_version_suffix("gpt-3.5-turbo-0125"),
        Some("gpt-3.5-turbo")
    );
    assert_eq!(
        strip_version_suffix("claude-3-5-haiku-latest"),
        Some("claude-3-5-haiku")
    );
    assert_eq!(strip_version_suffix("llama-3.1-405"), None);
    assert_eq!(strip_version_suffix("gpt-4o-mini"), None);
    assert_eq!(strip_version_suffix("text-embedding-3-large"), None);
    assert_eq!(strip_version_suffix("model-9999"), None);
    assert_eq!(strip_version_suffix("-2024-07-18"), None);
}

#[test]
fn cost_bills_each_token_kind_once() {
    let price = ModelPrice {
        input: 1.0,
        output: 10.0,
        cache_read: 0.1,
        cache_write: 1.25,
        max_output_tokens: None,
    };
    // 1000 input of which 200 cache reads and 300 cache writes; 50 output.
    let cost = price.cost(&tokens(1000, 200, 300, 50));
    assert!(close(cost, 500.0 + 20.0 + 375.0 + 500.0), "{cost}");
    // Reasoning tokens are inside output and add nothing.
    let mut t = tokens(0, 0, 0, 50);
    t.reasoning = 40;
    assert!(close(price.cost(&t), 500.0));
}

#[test]
fn cost_of_a_real_record() {
    let t = table();
    let r = record(
        "openai",
        Some("gpt-4o-mini-2024-07-18"),
        tokens(1_000_000, 400_000, 0, 1_000_000),
    );
    // 600k at 0.15/M + 400k at 0.075/M + 1M at 0.60/M
    let cost = t.cost_of(&r).expect("priced");
    assert!(close(cost, 0.09 + 0.03 + 0.60), "{cost}");
    let r = record(
        "anthropic",
        Some("claude-haiku-4-5-20251001"),
        tokens(1_000_000, 0, 1_000_000, 0),
    );
    assert!(close(t.cost_of(&r).expect("priced"), 1.25));
}

#[test]
fn unknown_or_missing_model_has_no_cost() {
    let t = table();
    assert_eq!(
        t.cost_of(&record("openai", Some("my-finetune"), tokens(1, 0, 0, 1))),
        None
    );
    assert_eq!(t.cost_of(&record("openai", None, tokens(1, 0, 0, 1))), None);
    let mut r = record("openai", None, tokens(1, 0, 0, 1));
    r.requested_model = Some("gpt-4o".into());
    assert!(t.cost_of(&r).is_some(), "falls back to the requested model");
}

#[test]
fn override_file_replaces_table_and_version() {
    let file = br#"{"sample_spec":{"input_cost_per_token":0.0},
        "my-model":{"input_cost_per_token":2e-6,"output_cost_per_token":4e-6,"litellm_provider":"openai"},
        "image-only":{"output_cost_per_image":0.04}}"#;
    let t = PriceTable::from_json(file).expect("valid file");
    assert_eq!(t.len(), 1);
    assert_ne!(t.version(), table().version());
    let p = t.lookup("openai", "my-model").expect("priced");
    // Missing cache prices fall back to the input price.
    assert!(close(p.cache_read, 2e-6) && close(p.cache_write, 2e-6));
    let changed = br#"{"my-model":{"input_cost_per_token":3e-6,"output_cost_per_token":4e-6}}"#;
    assert_ne!(
        PriceTable::from_json(changed).expect("valid").version(),
        t.version()
    );
}

#[test]
fn bad_price_files_are_errors() {
    assert!(PriceTable::from_json(b"not json").is_err());
    assert!(PriceTable::from_json(b"{}").is_err());
    assert!(PriceTable::from_json(br#"{"m":{"input_cost_per_token":-1.0}}"#).is_err());
}

#[test]
fn max_output_tokens_is_read_when_present_and_never_drops_a_model() {
    let table = PriceTable::from_json(
        br#"{"m1":{"input_cost_per_token":1e-6,"max_output_tokens":8192},
             "m2":{"input_cost_per_token":1e-6,"max_output_tokens":"lots"},
             "m3":{"input_cost_per_token":1e-6}}"#,
    )
    .expect("table");
    assert_eq!(
        table
            .lookup("openai", "m1")
            .and_then(|p| p.max_output_tokens),
        Some(8192)
    );
    assert_eq!(
        table.lookup("openai", "m2").map(|p| p.max_output_tokens),
        Some(None)
    );
    assert!(table.lookup("openai", "m3").is_some());
}
