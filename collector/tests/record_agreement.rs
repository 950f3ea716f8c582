//! The filter's record writer and the collector's validation agree: no
//! record the filter writes is refused for its shape, whatever the client
//! or the provider put in the values the record carries (issue 26).

use std::rc::Rc;

use aispend_collector::domain::validate::validate_record;
use aispend_plugin::request::identity::{AuthKind, Principal, TagSchema};
use aispend_plugin::request::record::{Call, PrincipalJson};
use aispend_plugin::usage::{Operation, Provider, RequestInfo, Route, Usage};
use proptest::prelude::*;

fn write(
    model: Option<String>,
    requested: Option<String>,
    tokens: [u64; 5],
    status: u32,
) -> serde_json::Value {
    let schema = TagSchema::new(&[]);
    let principal = Principal {
        key_id: Rc::from("demo-search"),
        auth: AuthKind::ApiKey,
        tags: Rc::new(vec![(1, "search".to_string())]),
        limits: None,
    };
    let route = Route {
        provider: Provider::OpenAi,
        operation: Operation::Chat,
        path_model: None,
        path_stream: false,
    };
    let request = RequestInfo {
        model: requested,
        ..RequestInfo::default()
    };
    let [input, cached, cache_write, output, reasoning] = tokens;
    let usage = Usage {
        input_tokens: input,
        cached_input_tokens: cached,
        cache_write_input_tokens: cache_write,
        output_tokens: output,
        reasoning_tokens: reasoning,
        model,
        error: None,
    };
    let labels = vec![("feature".to_string(), "summarize".to_string())];
    // The principal part as the filter writes it: kept between calls.
    let kept = PrincipalJson::default();
    let call = Call {
        id: "0192f3a4b5c6d7e8f9a0b1c2d3e4f5a6",
        start_ms: 1_733_300_000_000,
        end_ms: 1_733_300_000_250,
        ttft_ms: Some(40),
        gateway: "envoy",
        schema: &schema,
        principal: &principal,
        labels: &labels,
        route: &route,
        request: &request,
        status,
        usage: &usage,
        principal_json: Some(&kept),
        // Every other record of a strict budget carries its reservation.
        reservation: status.is_multiple_of(2).then_some((0.25, 0.01)),
        // Calls sent with a configured provider credential name its id.
        credential_id: status.is_multiple_of(3).then_some("key_gateway-1"),
    };
    let mut out = Vec::new();
    call.write_record(&mut out);
    serde_json::from_slice(&out).expect("the filter writes JSON")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_record_the_filter_writes_is_accepted(
        model in proptest::option::of(any::<String>()),
        long in 0usize..3,
        requested in proptest::option::of("\\PC{0,40}[\\x00-\\x1f\\x7f\\u{80}-\\u{9f}]?"),
        tokens in proptest::array::uniform5(prop_oneof![0u64..10_000, any::<u64>()]),
        status in prop_oneof![100u32..600, any::<u32>()],
    ) {
        // Sometimes very long names, as a client or provider may send.
        let model = model.map(|m| m.repeat(long * 40 + 1));
        let record = write(model, requested, tokens, status);
        prop_assert!(validate_record(&record).is_ok(), "{:?}\n{}", validate_record(&record), record);
    }
}

#[test]
fn the_probe_findings_are_stored() {
    let nul = Some("gpt-4o-mini\u{1}".to_string());
    let huge = Some("m".repeat(900_000));
    for (model, requested, tokens, status) in [
        (nul.clone(), nul, [5, 0, 0, 3, 0], 200),
        (Some("g".repeat(300)), huge, [5, 0, 0, 3, 0], 400),
        (None, None, [u64::MAX, 0, 0, 1 << 62, 0], 200),
        (None, None, [10, 30, 0, 5, 9], 200),
        (None, None, [0; 5], 0),
    ] {
        let record = write(model, requested, tokens, status);
        assert!(
            validate_record(&record).is_ok(),
            "{:?}\n{record}",
            validate_record(&record)
        );
    }
}
