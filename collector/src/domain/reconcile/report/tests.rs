use super::*;
use crate::domain::reconcile::import::parse;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/reconcile/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn coverage_drift_and_unattributed_spend_per_model_and_day() {
    let mut lines = parse("openai", &fixture("openai_usage_completions.json"))
        .expect("usage")
        .lines;
    lines.extend(
        parse("openai", &fixture("openai_costs.json"))
            .expect("costs")
            .lines,
    );
    let cell = |cost: f64, tokens: i64| GatewayCell {
        cost_usd: cost,
        tokens,
        requests: 1,
    };
    // The gateway saw every gpt-4o-mini token, priced 0.18 on the 3rd (the
    // bill says 0.195) and exactly the bill on the 4th; never gpt-4o.
    let gateway = BTreeMap::from([
        (
            ("openai".into(), "gpt-4o-mini".into(), "2026-11-03".into()),
            cell(0.18, 1_100_000),
        ),
        (
            ("openai".into(), "gpt-4o-mini".into(), "2026-11-04".into()),
            cell(0.105, 550_000),
        ),
    ]);
    let by_cred = BTreeMap::from([(
        ("openai".into(), "key_gateway".into()),
        cell(0.285, 1_650_000),
    )]);
    let r = build("2026-11", &gateway, &by_cred, &lines);
    let find = |day: &str, model: Option<&str>, item: Option<&str>| {
        r.rows
            .iter()
            .find(|row| {
                row.day == day && row.model.as_deref() == model && row.line_item.as_deref() == item
            })
            .unwrap_or_else(|| panic!("{day} {model:?} {item:?} in {:#?}", r.rows))
    };
    let mini = find("2026-11-03", Some("gpt-4o-mini"), None);
    assert!(close(mini.provider_cost_usd.expect("billed"), 0.195));
    assert_eq!(mini.provider_tokens, Some(1_100_000));
    assert!(close(mini.coverage.expect("coverage"), 0.18 / 0.195));
    assert!(close(mini.drift.expect("drift"), 0.015));
    assert!(close(mini.unattributed_usd.expect("unattributed"), 0.0));
    let bypass = find("2026-11-03", Some("gpt-4o"), None);
    assert_eq!(bypass.gateway_cost_usd, 0.0);
    assert!(close(bypass.unattributed_usd.expect("unattributed"), 0.035));
    assert_eq!(bypass.coverage, Some(0.0));
    let search = find("2026-11-03", None, Some("Web search tool calls"));
    assert!(close(search.provider_cost_usd.expect("billed"), 0.05));
    let exact = find("2026-11-04", Some("gpt-4o-mini"), None);
    assert!(close(exact.coverage.expect("coverage"), 1.0));
    assert!(close(exact.drift.expect("drift"), 0.0));
    let t = &r.totals;
    assert!(close(t.provider_cost_usd, 0.385));
    assert!(close(t.gateway_cost_usd, 0.285));
    assert!(close(t.coverage.expect("coverage"), 0.285 / 0.385));
    assert!(close(t.unattributed_usd, 0.035));
    assert!(close(t.non_token_usd, 0.05));
    assert!(close(t.drift, 0.015));
    // The bill = gateway cost + drift + unattributed + non-token items.
    assert!(close(
        t.provider_cost_usd,
        t.gateway_cost_usd + t.drift + t.unattributed_usd + t.non_token_usd
    ));
    // Per credential: the costs export names the project, usage the key.
    let cred = |c: &str| r.credentials.iter().find(|x| x.credential == c).expect(c);
    assert!(close(
        cred("proj_main").provider_cost_usd.expect("billed"),
        0.385
    ));
    assert_eq!(cred("key_laptop").provider_tokens, Some(11_000));
    assert_eq!(cred("key_laptop").gateway_cost_usd, 0.0);
    assert_eq!(cred("key_laptop").token_coverage, Some(0.0));
    assert_eq!(cred("key_gateway").token_coverage, Some(1.0));
    assert_eq!(
        cred("proj_main").token_coverage,
        None,
        "the costs export counts no tokens"
    );
    assert!(close(cred("key_gateway").gateway_cost_usd, 0.285));
}

#[test]
fn a_bill_without_models_is_compared_with_every_model_of_that_day() {
    // The costs API without group_by: one amount per day, no line item.
    let body = r#"{"object":"page","data":[{"object":"bucket","start_time":1793664000,
        "end_time":1793750400,"results":[{"object":"organization.costs.result",
        "amount":{"value":0.5,"currency":"usd"},"line_item":null,"project_id":null}]}],
        "has_more":false,"next_page":null}"#;
    let lines = parse("openai", body.as_bytes()).expect("costs").lines;
    let cell = |cost: f64| GatewayCell {
        cost_usd: cost,
        tokens: 10,
        requests: 1,
    };
    let gateway = BTreeMap::from([
        (
            ("openai".into(), "gpt-4o-mini".into(), "2026-11-03".into()),
            cell(0.2),
        ),
        (
            ("openai".into(), "gpt-4o".into(), "2026-11-03".into()),
            cell(0.2),
        ),
        (
            ("openai".into(), "gpt-4o".into(), "2026-11-04".into()),
            cell(0.1),
        ),
    ]);
    let r = build("2026-11", &gateway, &BTreeMap::new(), &lines);
    let day3: Vec<&Row> = r.rows.iter().filter(|x| x.day == "2026-11-03").collect();
    assert_eq!(day3.len(), 1, "{day3:#?}");
    assert_eq!(day3[0].model, None);
    assert!(close(day3[0].gateway_cost_usd, 0.4));
    assert!(close(day3[0].coverage.expect("coverage"), 0.8));
    assert!(close(day3[0].unattributed_usd.expect("unattributed"), 0.1));
    // Another day keeps its model rows.
    assert!(r
        .rows
        .iter()
        .any(|x| x.day == "2026-11-04" && x.model.as_deref() == Some("gpt-4o")));
    assert!(close(r.totals.gateway_cost_usd, 0.5));
}
