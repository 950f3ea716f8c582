use super::*;

const SHA: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

fn with(body: &str) -> Result<Config, ConfigError> {
    parse(body.as_bytes())
}

fn error_at(body: &str) -> (String, String) {
    match with(body) {
        Ok(_) => panic!("config was accepted: {body}"),
        Err(e) => (e.path, e.message),
    }
}

const COLLECTOR: &str = r#""collector":{"cluster":"aispend_collector","token":"t"}"#;

#[test]
fn minimal_config_gets_documented_defaults() {
    let c = with(&format!("{{{COLLECTOR}}}")).unwrap();
    assert_eq!(c.gateway, Gateway::Envoy);
    assert_eq!(c.identity.sources, vec![Source::ApiKey]);
    assert_eq!(c.tags.on_conflict, OnConflict::Strip);
    assert_eq!(c.collector.path, "/v1/records");
    assert_eq!(c.collector.authority(), "aispend_collector");
    assert_eq!(c.collector.flush_interval_ms, 1000);
    assert_eq!(c.collector.max_batch, 500);
    assert_eq!(c.collector.max_buffer, 10_000);
    assert_eq!(c.collector.timeout_ms, 5000);
    assert_eq!(c.collector.max_backoff_ms, 30_000);
    assert!(c.usage.openai_stream_usage && c.usage.strip_accept_encoding);
}

#[test]
fn the_config_md_example_parses() {
    let doc = include_str!("../../CONFIG.md");
    let start = doc.find("```json\n").unwrap() + 8;
    let end = start + doc[start..].find("```").unwrap();
    let example = doc[start..end].replace("<64 hex chars: sha256 of the plain virtual key>", SHA);
    let c = with(&example).unwrap();
    assert_eq!(c.identity.keys.len(), 1);
    assert_eq!(c.tags.extra, vec!["region"]);
    assert_eq!(c.collector.authority(), "collector");
}

#[test]
fn bad_sha256_names_the_key_index() {
    let body = format!(
        r#"{{"identity":{{"keys":[{{"key_id":"a","sha256":"{SHA}"}},{{"key_id":"b","sha256":"xyz"}}]}},{COLLECTOR}}}"#
    );
    let (path, msg) = error_at(&body);
    assert_eq!(path, "identity.keys[1].sha256");
    assert_eq!(msg, "expected 64 hex characters");
    let e = with(&body).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid config at identity.keys[1].sha256: expected 64 hex characters"
    );
}

#[test]
fn unknown_field_is_rejected_with_its_path() {
    let (path, msg) = error_at(&format!(
        r#"{{"tags":{{"on_conflcit":"reject"}},{COLLECTOR}}}"#
    ));
    assert_eq!(path, "tags.on_conflcit");
    assert!(msg.contains("unknown field"), "{msg}");
}

#[test]
fn wrong_type_and_bad_enum_name_their_field() {
    let (path, _) = error_at(r#"{"collector":{"cluster":"c","token":"t","max_batch":"many"}}"#);
    assert_eq!(path, "collector.max_batch");
    let (path, msg) = error_at(&format!(r#"{{"gateway":"nginx",{COLLECTOR}}}"#));
    assert_eq!(path, "gateway");
    assert!(msg.contains("unknown variant"), "{msg}");
    let (path, _) = error_at(&format!(
        r#"{{"identity":{{"keys":[{{"key_id":"a","sha256":"{SHA}","status":"paused"}}]}},{COLLECTOR}}}"#
    ));
    assert_eq!(path, "identity.keys[0].status");
}

#[test]
fn missing_collector_is_named() {
    let (path, msg) = error_at("{}");
    assert_eq!(path, "(root)");
    assert!(msg.contains("collector"), "{msg}");
    let (path, msg) = error_at(r#"{"collector":{"cluster":"c"}}"#);
    assert_eq!(path, "collector");
    assert!(msg.contains("token"), "{msg}");
}

#[test]
fn bad_tag_value_and_unknown_tag() {
    let (path, _) = error_at(&format!(
        r#"{{"identity":{{"keys":[{{"key_id":"a","sha256":"{SHA}","tags":{{"team":"has space"}}}}]}},{COLLECTOR}}}"#
    ));
    assert_eq!(path, "identity.keys[0].tags.team");
    let (path, msg) = error_at(&format!(
        r#"{{"identity":{{"keys":[{{"key_id":"a","sha256":"{SHA}","tags":{{"region":"eu"}}}}]}},{COLLECTOR}}}"#
    ));
    assert_eq!(path, "identity.keys[0].tags.region");
    assert!(msg.contains("tags.extra"), "{msg}");
    // ... and accepted once declared.
    with(&format!(
        r#"{{"tags":{{"extra":["region"]}},"identity":{{"keys":[{{"key_id":"a","sha256":"{SHA}","tags":{{"region":"eu"}}}}]}},{COLLECTOR}}}"#
    ))
    .unwrap();
}

#[test]
fn duplicate_keys_are_rejected() {
    let (path, msg) = error_at(&format!(
        r#"{{"identity":{{"keys":[{{"key_id":"a","sha256":"{SHA}"}},{{"key_id":"b","sha256":"{}"}}]}},{COLLECTOR}}}"#,
        SHA.to_uppercase()
    ));
    assert_eq!(path, "identity.keys[1].sha256");
    assert_eq!(msg, "duplicate key hash");
    let (path, _) = error_at(&format!(
        r#"{{"identity":{{"keys":[{{"key_id":"a","sha256":"{SHA}"}},{{"key_id":"a","sha256":"{}"}}]}},{COLLECTOR}}}"#,
        "b".repeat(64)
    ));
    assert_eq!(path, "identity.keys[1].key_id");
}

#[test]
fn tag_rules_are_checked() {
    let (path, _) = error_at(&format!(r#"{{"tags":{{"extra":["Region"]}},{COLLECTOR}}}"#));
    assert_eq!(path, "tags.extra[0]");
    let (path, msg) = error_at(&format!(r#"{{"tags":{{"extra":["key_id"]}},{COLLECTOR}}}"#));
    assert_eq!(path, "tags.extra[0]");
    assert!(msg.contains("reserved"));
    let (path, _) = error_at(&format!(
        r#"{{"tags":{{"required":["tema"]}},{COLLECTOR}}}"#
    ));
    assert_eq!(path, "tags.required[0]");
    let (path, _) = error_at(&format!(
        r#"{{"tags":{{"labels":{{"allow":["x-feature"]}}}},{COLLECTOR}}}"#
    ));
    assert_eq!(path, "tags.labels.allow[0]");
}

#[test]
fn jwt_source_needs_jwt_section_and_known_tags() {
    let (path, _) = error_at(&format!(
        r#"{{"identity":{{"sources":["jwt"]}},{COLLECTOR}}}"#
    ));
    assert_eq!(path, "identity.jwt");
    let (path, _) = error_at(&format!(
        r#"{{"identity":{{"sources":["jwt"],"jwt":{{"claims":{{"squad":"team"}}}}}},{COLLECTOR}}}"#
    ));
    assert_eq!(path, "identity.jwt.claims.squad");
    let c = with(&format!(
        r#"{{"identity":{{"sources":["jwt"],"jwt":{{}}}},{COLLECTOR}}}"#
    ))
    .unwrap();
    let jwt = c.identity.jwt.unwrap();
    assert_eq!(jwt.metadata_namespace, "envoy.filters.http.jwt_authn");
    assert_eq!(jwt.payload_key, "jwt_payload");
    assert_eq!(jwt.key_id_claim, "sub");
}

#[test]
fn collector_bounds() {
    let cases = [
        (r#""flush_interval_ms":5"#, "collector.flush_interval_ms"),
        (r#""max_batch":0"#, "collector.max_batch"),
        (r#""max_batch":20000"#, "collector.max_batch"),
        (r#""max_batch":100,"max_buffer":10"#, "collector.max_buffer"),
        (r#""path":"v1/records""#, "collector.path"),
        (r#""timeout_ms":0"#, "collector.timeout_ms"),
        (r#""max_backoff_ms":100"#, "collector.max_backoff_ms"),
    ];
    for (extra, want) in cases {
        let (path, _) = error_at(&format!(
            r#"{{"collector":{{"cluster":"c","token":"t",{extra}}}}}"#
        ));
        assert_eq!(path, want, "for {extra}");
    }
    let (path, _) = error_at(r#"{"collector":{"cluster":"","token":"t"}}"#);
    assert_eq!(path, "collector.cluster");
}

#[test]
fn provider_credential_header_must_be_lowercase() {
    let (path, _) = error_at(&format!(
        r#"{{"providers":{{"openai":{{"credential":{{"header":"Authorization","value":"x"}}}}}},{COLLECTOR}}}"#
    ));
    assert_eq!(path, "providers.openai.credential.header");
}

#[test]
fn tag_value_charset() {
    assert!(valid_tag_value("CC-1001"));
    assert!(valid_tag_value("a.b_c:d/e-f"));
    assert!(!valid_tag_value(""));
    assert!(!valid_tag_value("a b"));
    assert!(!valid_tag_value("é"));
    assert!(valid_tag_value(&"x".repeat(128)));
    assert!(!valid_tag_value(&"x".repeat(129)));
}

#[test]
fn caps_and_limits_have_documented_defaults() {
    let c = with(&format!("{{{COLLECTOR}}}")).unwrap();
    assert!(c.caps.enabled);
    assert_eq!(c.caps.cluster(&c.collector), "aispend_collector");
    assert_eq!(c.caps.authority(&c.collector), "aispend_collector");
    assert_eq!(c.caps.path, "/v1/caps");
    assert_eq!(c.caps.token, None);
    assert_eq!(c.caps.poll_interval_ms, 2000);
    assert_eq!(c.caps.stale_after_ms, 10_000);
    assert_eq!(c.caps.failure_mode, FailureMode::FailOpen);
    assert!(c.usage.record_refusals.contains(402) && c.usage.record_refusals.contains(429));
    assert!(!c.usage.record_refusals.contains(401) && !c.usage.record_refusals.contains(200));
    assert_eq!(c.limits.failure_mode, FailureMode::FailOpen);
}

#[test]
fn caps_settings_are_validated() {
    let cases = [
        (r#""caps":{"poll_interval_ms":5}"#, "caps.poll_interval_ms"),
        (
            r#""caps":{"poll_interval_ms":500,"stale_after_ms":100}"#,
            "caps.stale_after_ms",
        ),
        (r#""caps":{"path":"v1/caps"}"#, "caps.path"),
        (r#""caps":{"token":""}"#, "caps.token"),
        (
            r#""caps":{"failure_mode":"fail_sideways"}"#,
            "caps.failure_mode",
        ),
        (
            r#""limits":{"failure_mode":"closed"}"#,
            "limits.failure_mode",
        ),
    ];
    for (extra, want) in cases {
        let (path, _) = error_at(&format!("{{{COLLECTOR},{extra}}}"));
        assert_eq!(path, want, "{extra}");
    }
}

#[test]
fn kong_needs_host_port_targets_and_no_jwt() {
    let kong = |collector: &str, extra: &str| {
        format!(
            r#"{{"gateway":"kong","collector":{{"cluster":"{collector}","token":"t"}}{extra}}}"#
        )
    };
    assert!(with(&kong("127.0.0.1:9090", "")).is_ok());
    assert!(with(&kong("collector.internal:9090", "")).is_ok());
    assert_eq!(
        error_at(&kong("aispend_collector", "")).0,
        "collector.cluster"
    );
    assert_eq!(
        error_at(&kong(
            "127.0.0.1:9090",
            r#","caps":{"cluster":"caps_cluster"}"#
        ))
        .0,
        "caps.cluster"
    );
    let jwt = r#","identity":{"sources":["api_key","jwt"],"jwt":{"claims":{"team":"team"}}}"#;
    let (path, msg) = error_at(&kong("127.0.0.1:9090", jwt));
    assert_eq!(path, "identity.sources");
    assert!(msg.contains("jwt"), "{msg}");
}

#[test]
fn host_port_forms() {
    for ok in [
        "a:1",
        "10.0.0.7:9090",
        "[::1]:80",
        "collector-1.svc.local:65535",
    ] {
        assert!(is_host_port(ok), "{ok}");
    }
    for bad in [
        "a", "a:", ":80", "a:0", "a:65536", "a_b:80", "[::1]", "a:8x",
    ] {
        assert!(!is_host_port(bad), "{bad}");
    }
}

#[test]
fn record_refusals_take_only_refusal_statuses() {
    let parse = |v: &str| {
        parse(
            format!(
                r#"{{"collector":{{"cluster":"c","token":"t"}},"usage":{{"record_refusals":{v}}}}}"#
            )
            .as_bytes(),
        )
    };
    let all = parse("[401,402,429,503]").unwrap();
    assert!([401, 402, 429, 503]
        .iter()
        .all(|s| all.usage.record_refusals.contains(*s)));
    assert!(!parse("[]").unwrap().usage.record_refusals.contains(402));
    let bad = parse("[404]").unwrap_err();
    assert_eq!(bad.path, "usage.record_refusals");
    assert!(bad.message.contains("404"), "{}", bad.message);
}

#[test]
fn registry_has_documented_defaults_and_falls_back_to_the_collector() {
    let c = with(&format!(
        r#"{{{COLLECTOR},"identity":{{"registry":{{}}}}}}"#
    ))
    .unwrap();
    let r = c.identity.registry.unwrap();
    assert_eq!(r.path, "/v1/keys/registry");
    assert_eq!(r.poll_ms, 2000);
    assert_eq!(r.max_bytes, DEFAULT_REGISTRY_MAX_BYTES);
    assert_eq!(r.cluster(&c.collector), "aispend_collector");
    assert_eq!(r.authority(&c.collector), "aispend_collector");
    assert_eq!(
        r.token(&c.collector),
        "t",
        "the ingest token is the gateway role"
    );
    let c = with(&format!(
        r#"{{{COLLECTOR},"identity":{{"registry":{{"cluster":"keys","token":"g","poll_ms":500}}}}}}"#
    ))
    .unwrap();
    let r = c.identity.registry.unwrap();
    assert_eq!(
        (r.cluster(&c.collector), r.authority(&c.collector)),
        ("keys", "keys")
    );
    assert_eq!((r.token(&c.collector), r.poll_ms), ("g", 500));
    assert!(with(&format!("{{{COLLECTOR}}}"))
        .unwrap()
        .identity
        .registry
        .is_none());
}

#[test]
fn registry_settings_are_validated_naming_the_field() {
    let cases = [
        (r#"{"poll_ms":50}"#, "identity.registry.poll_ms"),
        (r#"{"poll_ms":3600001}"#, "identity.registry.poll_ms"),
        (r#"{"path":"v1/keys"}"#, "identity.registry.path"),
        (r#"{"token":""}"#, "identity.registry.token"),
        (r#"{"cluster":""}"#, "identity.registry.cluster"),
        (r#"{"authority":""}"#, "identity.registry.authority"),
        (r#"{"max_bytes":10}"#, "identity.registry.max_bytes"),
        (
            r#"{"poll_interval_ms":500}"#,
            "identity.registry.poll_interval_ms",
        ),
        (r#"{"poll_ms":"fast"}"#, "identity.registry.poll_ms"),
    ];
    for (registry, want) in cases {
        let (path, msg) = error_at(&format!(
            r#"{{{COLLECTOR},"identity":{{"registry":{registry}}}}}"#
        ));
        assert_eq!(path, want, "{registry}: {msg}");
    }
    let (path, msg) = error_at(&format!(
        r#"{{{COLLECTOR},"identity":{{"sources":["kong_consumer"],"registry":{{}}}}}}"#
    ));
    assert_eq!(path, "identity.registry");
    assert!(msg.contains("api_key"), "{msg}");
    let (path, _) = error_at(
        r#"{"gateway":"kong","collector":{"cluster":"127.0.0.1:9","token":"t"},"identity":{"registry":{"cluster":"keys"}}}"#,
    );
    assert_eq!(path, "identity.registry.cluster");
}

#[test]
fn signing_keys_are_validated_and_the_secret_is_never_echoed() {
    let base = |signing: &str| {
        format!(r#"{{"collector":{{"cluster":"c","token":"t"}},"signing":{signing}}}"#)
    };
    let good = "0123456789abcdef0123456789abcdef";
    let ok = parse(
        base(&format!(
            r#"{{"keys":[{{"id":"k2","secret":"{good}"}},{{"id":"k1","secret":"{good}x"}}]}}"#
        ))
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(ok.signing.unwrap().keys.len(), 2);
    let cases = [
        (r#"{"keys":[]}"#.to_string(), "signing.keys"),
        (
            format!(r#"{{"keys":[{{"id":"bad id","secret":"{good}"}}]}}"#),
            "signing.keys[0].id",
        ),
        (
            format!(
                r#"{{"keys":[{{"id":"a","secret":"{good}"}},{{"id":"a","secret":"{good}"}}]}}"#
            ),
            "signing.keys[1].id",
        ),
        (
            r#"{"keys":[{"id":"a","secret":"short-but-secret-31-bytes-long!"}]}"#.to_string(),
            "signing.keys[0].secret",
        ),
        (
            format!(r#"{{"keys":[{{"id":"a","secret":"{good}","extra":1}}]}}"#),
            "signing.keys[0].extra",
        ),
    ];
    for (signing, path) in cases {
        let e = parse(base(&signing).as_bytes()).unwrap_err();
        assert_eq!(e.path, path, "{signing}: {e}");
        assert!(!e.to_string().contains("short-but-secret"), "{e}");
    }
}

#[test]
fn an_empty_field_name_at_the_top_still_names_where() {
    // Found by the filter_config fuzz target: the path was empty.
    let e = parse(br#"{"collector":{"cluster":"c","token":"t"},"":1}"#).unwrap_err();
    assert_eq!(e.path, "(root)");
    assert!(e.message.contains("unknown field"), "{e}");
}

#[test]
fn strict_settings_default_and_are_validated_by_name() {
    let c = parse(br#"{"collector":{"cluster":"c","token":"t"}}"#).expect("defaults");
    assert!(c.caps.strict.enabled);
    assert_eq!(c.caps.strict.min_output_tokens, 16);
    assert_eq!(c.caps.strict.unpriced, crate::config::Unpriced::Refuse);
    for (doc, path) in [
        (
            r#"{"collector":{"cluster":"c","token":"t"},"caps":{"strict":{"host_id":"a b"}}}"#,
            "caps.strict.host_id",
        ),
        (
            r#"{"collector":{"cluster":"c","token":"t"},"caps":{"strict":{"min_output_tokens":0}}}"#,
            "caps.strict.min_output_tokens",
        ),
        (
            r#"{"collector":{"cluster":"c","token":"t"},"caps":{"strict":{"min_output_tokens":64,"default_output_tokens":32}}}"#,
            "caps.strict.default_output_tokens",
        ),
        (
            r#"{"collector":{"cluster":"c","token":"t"},"caps":{"strict":{"unpriced":"reserve"}}}"#,
            "caps.strict.unpriced_reserve_usd",
        ),
        (
            r#"{"collector":{"cluster":"c","token":"t"},"caps":{"strict":{"unpriced_reserve_usd":-1}}}"#,
            "caps.strict.unpriced_reserve_usd",
        ),
        (
            r#"{"collector":{"cluster":"c","token":"t"},"caps":{"strict":{"models":["gpt-4o"]}}}"#,
            "caps.strict.models[0]",
        ),
    ] {
        let e = parse(doc.as_bytes()).expect_err(doc);
        assert_eq!(e.path, path, "{doc}: {e}");
    }
    let e = parse(br#"{"collector":{"cluster":"c","token":"t"},"caps":{"strict":{"clamp":true}}}"#)
        .expect_err("unknown field");
    assert!(e.to_string().contains("clamp"), "{e}");
    let c = parse(br#"{"collector":{"cluster":"c","token":"t"},"caps":{"strict":{"unpriced":"reserve","unpriced_reserve_usd":0.05,"host_id":"gw-1"}}}"#)
        .expect("reserve");
    assert_eq!(c.caps.strict.host_id.as_deref(), Some("gw-1"));
}
