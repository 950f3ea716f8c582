use super::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/reconcile/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn day(d: u32) -> i64 {
    parse_rfc3339_ms(&format!("2026-11-{d:02}T00:00:00Z")).expect("day")
}

#[test]
fn openai_usage_pages_become_token_lines_per_key() {
    let import = parse("openai", &fixture("openai_usage_completions.json")).expect("parses");
    assert_eq!(import.source, "openai.usage");
    assert_eq!((import.from_ms, import.to_ms), (day(3), day(5)));
    assert_eq!(import.lines.len(), 3);
    let first = &import.lines[0];
    assert_eq!(first.model, "gpt-4o-mini-2024-07-18");
    assert_eq!(first.credential, "key_gateway");
    assert_eq!(
        (
            first.requests,
            first.input_tokens,
            first.cached_input_tokens,
            first.output_tokens
        ),
        (5, 1_000_000, 200_000, 100_000)
    );
    assert_eq!(first.cost_usd, None);
}

#[test]
fn openai_cost_line_items_name_the_model_or_stay_line_items() {
    let import = parse("openai", &fixture("openai_costs.json")).expect("parses");
    assert_eq!(import.source, "openai.costs");
    let total: f64 = import.lines.iter().filter_map(|l| l.cost_usd).sum();
    assert!((total - 0.385).abs() < 1e-12, "{total}");
    let search: Vec<_> = import
        .lines
        .iter()
        .filter(|l| !l.line_item.is_empty())
        .collect();
    assert_eq!(search.len(), 1);
    assert_eq!(search[0].line_item, "Web search tool calls");
    assert_eq!(search[0].model, "");
    assert!(import
        .lines
        .iter()
        .filter(|l| l.line_item.is_empty())
        .all(|l| l.model.starts_with("gpt-4o") && l.credential == "proj_main"));
}

#[test]
fn anthropic_reports_count_cache_tokens_in_input_and_cents_as_usd() {
    let usage = parse("anthropic", &fixture("anthropic_usage_report.json")).expect("usage");
    assert_eq!(usage.source, "anthropic.usage");
    let l = &usage.lines[0];
    assert_eq!(
        (
            l.input_tokens,
            l.cached_input_tokens,
            l.cache_write_input_tokens,
            l.output_tokens
        ),
        (170_000, 50_000, 20_000, 30_000)
    );
    assert_eq!(l.credential, "apikey_gateway");
    let cost = parse("anthropic", &fixture("anthropic_cost_report.json")).expect("cost");
    assert_eq!(cost.source, "anthropic.cost");
    let amounts: Vec<_> = cost
        .lines
        .iter()
        .map(|l| (l.model.as_str(), l.line_item.as_str(), l.cost_usd))
        .collect();
    assert_eq!(
        amounts,
        [
            ("claude-sonnet-4-5-20250929", "", Some(0.30)),
            ("claude-sonnet-4-5-20250929", "", Some(0.45)),
            ("", "web_search", Some(0.02)),
        ]
    );
}

#[test]
fn gcp_billing_rows_keep_ai_services_only() {
    let import = parse("gemini", &fixture("gcp_billing_export.csv")).expect("parses");
    assert_eq!(import.source, "gemini.billing");
    assert_eq!(import.skipped, 1, "Compute Engine is not reconciled");
    assert_eq!(import.lines.len(), 3);
    assert_eq!(import.lines[0].model, "gemini-2.5-flash");
    assert_eq!(import.lines[0].input_tokens, 1_000_000);
    assert_eq!(import.lines[1].output_tokens, 200_000);
    assert_eq!(import.lines[2].line_item, "Grounding with Google Search");
    assert_eq!(import.lines[0].credential, "ai-prod");
    assert_eq!(import.from_ms, day(3));
}

#[test]
fn wrong_shapes_are_named() {
    let err = |p: &str, body: &str| parse(p, body.as_bytes()).expect_err("refused");
    assert!(err("openai", "{}").contains("OpenAI usage or costs page"));
    assert!(err("openai", r#"{"object":"page","data":[{"start_time":1,"end_time":2,
        "results":[{"object":"organization.costs.result","amount":{"value":1,"currency":"eur"}}]}]}"#)
        .contains("data[0].results[0].amount.currency"));
    assert!(err("anthropic", "[]").contains("Anthropic usage or cost report"));
    assert!(err("gemini", "a,b\n1,2\n").contains("column service.description missing"));
    assert!(err("bedrock", "{}").starts_with("provider:"));
}
