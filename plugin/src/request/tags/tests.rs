use super::*;
use crate::config;
use crate::request::identity::{AuthKind, TagSchema};
use std::rc::Rc;

fn policy(tags: &str) -> (TagPolicy, TagSchema) {
    let json = format!(
        r#"{{"tags":{tags},
            "providers":{{"anthropic":{{"credential":{{"header":"x-api-key","value":"sk-ant-real"}}}}}},
            "collector":{{"cluster":"c","token":"t"}}}}"#
    );
    let c = config::parse(json.as_bytes()).unwrap();
    (TagPolicy::new(&c), TagSchema::new(&c.tags.extra))
}

fn h<'a>(pairs: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    pairs.to_vec()
}

#[test]
fn strips_every_client_aispend_header() {
    let (p, schema) = policy("{}");
    let got = p
        .inspect_client(
            &schema,
            &h(&[
                ("x-aispend-team", "evil"),
                ("X-Aispend-Key-Id", "k"),
                ("x-aispend-request-id", "1"),
                ("x-aispend-whatever", "1"),
                ("x-other", "1"),
            ]),
        )
        .unwrap();
    assert_eq!(
        got.strip,
        vec![
            "x-aispend-team",
            "X-Aispend-Key-Id",
            "x-aispend-request-id",
            "x-aispend-whatever"
        ]
    );
    assert!(got.labels.is_empty());
}

#[test]
fn reject_mode_refuses_canonical_tag_headers_only() {
    let (p, schema) = policy(r#"{"on_conflict":"reject","extra":["region"]}"#);
    let err = p
        .inspect_client(&schema, &h(&[("x-aispend-cost-center", "CC-1")]))
        .unwrap_err();
    assert_eq!(err.header, "x-aispend-cost-center");
    assert!(p
        .inspect_client(&schema, &h(&[("x-aispend-region", "eu")]))
        .is_err());
    // Not a tag header: stripped, not refused.
    let ok = p
        .inspect_client(&schema, &h(&[("x-aispend-request-id", "1")]))
        .unwrap();
    assert_eq!(ok.strip, vec!["x-aispend-request-id"]);
    // Identity headers are refused like tags.
    for name in ["x-aispend-key-id", "X_Aispend_Signature"] {
        assert!(
            p.inspect_client(&schema, &h(&[(name, "x")])).is_err(),
            "{name}"
        );
    }
}

#[test]
fn allowed_labels_are_kept_and_recorded() {
    let (p, schema) = policy(r#"{"labels":{"allow":["x-aispend-label-feature"]}}"#);
    let got = p
        .inspect_client(
            &schema,
            &h(&[
                ("x-aispend-label-feature", "summarize"),
                ("x-aispend-label-other", "no"),
            ]),
        )
        .unwrap();
    assert_eq!(
        got.labels,
        vec![("feature".to_string(), "summarize".to_string())]
    );
    assert_eq!(got.strip, vec!["x-aispend-label-other"]);
    // A malformed label value is not recorded, and not passed on either.
    let bad = p
        .inspect_client(&schema, &h(&[("x-aispend-label-feature", "two words")]))
        .unwrap();
    assert!(bad.labels.is_empty());
    assert_eq!(bad.strip, vec!["x-aispend-label-feature"]);
}

#[test]
fn injected_headers_carry_tags_key_and_request_id() {
    let (_, schema) = policy("{}");
    let principal = crate::request::identity::Principal {
        key_id: Rc::from("demo-search"),
        auth: AuthKind::ApiKey,
        tags: Rc::new(vec![(1, "search".into()), (3, "CC-1001".into())]),
        limits: None,
    };
    let got: Vec<_> = injected(&schema, &principal, "abc").collect();
    assert_eq!(
        got,
        vec![
            ("x-aispend-team", "search"),
            ("x-aispend-cost-center", "CC-1001"),
            ("x-aispend-key-id", "demo-search"),
            ("x-aispend-request-id", "abc"),
        ]
    );
}

#[test]
fn provider_credentials_by_provider() {
    let (p, _) = policy("{}");
    assert_eq!(
        p.credential(Provider::Anthropic),
        Some(("x-api-key", "sk-ant-real"))
    );
    assert_eq!(p.credential(Provider::OpenAi), None);
    assert_eq!(
        p.credential_id(Provider::Anthropic),
        None,
        "no id configured"
    );
}

#[test]
fn provider_credential_ids_are_configured_per_provider_and_checked() {
    let json = r#"{"providers":{"openai":{"credential":{"header":"authorization",
        "value":"Bearer sk-real","id":"key_gateway"}}},
        "collector":{"cluster":"c","token":"t"}}"#;
    let p = TagPolicy::new(&config::parse(json.as_bytes()).unwrap());
    assert_eq!(p.credential_id(Provider::OpenAi), Some("key_gateway"));
    assert_eq!(p.credential_id(Provider::Gemini), None);
    assert_eq!(p.credential_id(Provider::Unknown), None);
    let bad = json.replace("key_gateway", "");
    let err = config::parse(bad.as_bytes()).expect_err("empty id refused");
    assert!(
        format!("{err:?}").contains("providers.openai.credential.id"),
        "{err:?}"
    );
}

#[test]
fn underscore_and_case_spellings_of_a_tag_are_spoofs_too() {
    let (strip, schema) = policy(r#"{"on_conflict":"strip"}"#);
    let headers = [
        ("x_aispend_team", "evil"),
        ("X-AISPEND-ORG", "evil"),
        ("x-aispend_key-id", "forged"),
        ("x-other", "fine"),
    ];
    let client = strip.inspect_client(&schema, &headers).unwrap();
    assert_eq!(
        client.strip,
        ["x_aispend_team", "X-AISPEND-ORG", "x-aispend_key-id"]
    );
    let (reject, schema) = policy(r#"{"on_conflict":"reject"}"#);
    let conflict = reject
        .inspect_client(&schema, &[("x_aispend_team", "evil")])
        .unwrap_err();
    assert_eq!(conflict.header, "x_aispend_team");
}

#[test]
fn every_spelling_a_framework_reads_as_a_tag_is_a_spoof() {
    // Case, `_` (CGI/WSGI/Rack/PHP/nginx `$http_`), `.` (PHP), mixed, repeated,
    // and the filter's own headers (signature, key id, request id).
    let forms = [
        "X_AISPEND_TEAM",
        "x.aispend.team",
        "X-Aispend.Cost_Center",
        "x_AiSpEnD-project",
        "x-aispend-team",
        "X-AISPEND-TEAM",
        "x_aispend_signature",
        "X.Aispend.Key.Id",
        "x-aispend_request_id",
    ];
    let (strip, schema) = policy(r#"{"on_conflict":"strip"}"#);
    let headers: Vec<(&str, &str)> = forms.iter().map(|f| (*f, "evil")).collect();
    let client = strip.inspect_client(&schema, &headers).unwrap();
    assert_eq!(client.strip, forms);
    let (reject, schema) = policy(r#"{"on_conflict":"reject"}"#);
    for tag in [
        "x.aispend.team",
        "X-Aispend.Cost_Center",
        "x_AiSpEnD-project",
    ] {
        let conflict = reject
            .inspect_client(&schema, &[(tag, "evil")])
            .unwrap_err();
        assert_eq!(conflict.header, tag);
    }
    // Names that only look alike stay: no framework maps them to the tag.
    let others = [
        ("xaispend-team", "1"),
        ("x-aispendteam", "1"),
        ("x~aispend~team", "1"),
    ];
    assert!(strip
        .inspect_client(&schema, &others)
        .unwrap()
        .strip
        .is_empty());
}
