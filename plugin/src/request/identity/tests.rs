use std::collections::HashMap;

use super::*;
use crate::config;
use sha2::{Digest, Sha256};

fn sha(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn setup(extra: &str) -> (Identity, TagSchema) {
    let json = format!(
        r#"{{"identity":{{"sources":["api_key","jwt","kong_consumer"],
            "keys":[
              {{"key_id":"demo-search","sha256":"{}","tags":{{"org":"acme","team":"search"}}}},
              {{"key_id":"old","sha256":"{}","status":"revoked","tags":{{"team":"x"}}}}
            ],
            "jwt":{{"claims":{{"team":"team","org":"org"}}}},
            "kong_consumer":{{"trusted":true,"tags_by_consumer":{{"alice":{{"team":"growth"}}}}}}}}
            {extra},
            "collector":{{"cluster":"c","token":"t"}}}}"#,
        sha("sk-good"),
        sha("sk-revoked").to_uppercase()
    );
    let c = config::parse(json.as_bytes()).unwrap();
    let schema = TagSchema::new(&c.tags.extra);
    (Identity::new(&c, &schema), schema)
}

fn h<'a>(pairs: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    pairs.to_vec()
}

#[derive(Default)]
struct Claims(HashMap<&'static str, &'static str>);
impl ClaimSource for Claims {
    fn claim(&mut self, name: &str) -> Option<String> {
        self.0.get(name).map(|s| s.to_string())
    }
}

fn tag(p: &Principal, schema: &TagSchema, name: &str) -> Option<String> {
    let i = schema.index(name)?;
    p.tags.iter().find(|(t, _)| *t == i).map(|(_, v)| v.clone())
}

#[test]
fn key_is_found_in_every_sdk_position() {
    let (id, schema) = setup("");
    let forms = [
        h(&[("authorization", "Bearer sk-good")]),
        h(&[("authorization", "bearer  sk-good ")]),
        h(&[("x-api-key", "sk-good")]),
        h(&[("x-goog-api-key", "sk-good")]),
        h(&[("api-key", "sk-good")]),
        h(&[(
            ":path",
            "/v1beta/models/gemini-2.0-flash:generateContent?alt=sse&key=sk-good",
        )]),
    ];
    for headers in forms {
        let p = id
            .resolve(&headers, &mut Claims::default())
            .unwrap_or_else(|e| panic!("{headers:?}: {e:?}"));
        assert_eq!(&*p.key_id, "demo-search");
        assert_eq!(p.auth, AuthKind::ApiKey);
        assert_eq!(tag(&p, &schema, "team").as_deref(), Some("search"));
        assert_eq!(tag(&p, &schema, "org").as_deref(), Some("acme"));
    }
}

#[test]
fn unknown_revoked_and_missing_keys_are_rejected() {
    let (id, _) = setup("");
    let mut none = Claims::default();
    assert_eq!(
        id.resolve(&h(&[("x-api-key", "sk-nope")]), &mut none),
        Err(Rejection::UnknownKey)
    );
    assert_eq!(
        id.resolve(&h(&[("authorization", "Bearer sk-revoked")]), &mut none),
        Err(Rejection::RevokedKey)
    );
    assert_eq!(
        id.resolve(&h(&[("accept", "*/*")]), &mut none),
        Err(Rejection::NoCredential)
    );
    // Not "no key": the header is there, its scheme is wrong.
    assert_eq!(
        id.resolve(&h(&[("authorization", "Basic sk-good")]), &mut none),
        Err(Rejection::NotBearer)
    );
}

#[test]
fn jwt_claims_map_to_tags_and_key_id() {
    let (id, schema) = setup("");
    let mut claims = Claims([("sub", "user-7"), ("team", "search"), ("org", "bad value")].into());
    let p = id
        .resolve(
            &h(&[("authorization", "Bearer eyJ.not-a-key")]),
            &mut claims,
        )
        .unwrap();
    assert_eq!(&*p.key_id, "jwt:user-7");
    assert_eq!(p.auth, AuthKind::Jwt);
    assert_eq!(tag(&p, &schema, "team").as_deref(), Some("search"));
    assert_eq!(
        tag(&p, &schema, "org"),
        None,
        "out-of-charset claim is not a tag"
    );
}

#[test]
fn unverified_jwt_is_no_identity() {
    // No metadata (jwt_authn did not verify): nothing to resolve from.
    let (id, _) = setup("");
    assert_eq!(
        id.resolve(
            &h(&[("authorization", "Bearer eyJ.whatever")]),
            &mut Claims::default()
        ),
        Err(Rejection::UnknownKey),
        "the bearer token is still tried as a key and is unknown"
    );
}

#[test]
fn kong_consumer_only_when_trusted() {
    let (id, schema) = setup("");
    let p = id
        .resolve(
            &h(&[("x-consumer-username", "alice"), ("x-consumer-id", "c1")]),
            &mut Claims::default(),
        )
        .unwrap();
    assert_eq!(&*p.key_id, "consumer:alice");
    assert_eq!(p.auth, AuthKind::Consumer);
    assert_eq!(tag(&p, &schema, "team").as_deref(), Some("growth"));

    let json =
        r#"{"identity":{"sources":["kong_consumer"]},"collector":{"cluster":"c","token":"t"}}"#;
    let c = config::parse(json.as_bytes()).unwrap();
    let untrusted = Identity::new(&c, &TagSchema::new(&[]));
    assert_eq!(
        untrusted.resolve(
            &h(&[("x-consumer-username", "alice")]),
            &mut Claims::default()
        ),
        Err(Rejection::NoCredential)
    );
}

#[test]
fn required_tags_are_enforced() {
    let (id, schema) = setup(r#","tags":{"required":["project"]}"#);
    assert_eq!(
        id.resolve(&h(&[("x-api-key", "sk-good")]), &mut Claims::default()),
        Err(Rejection::MissingTag(schema.index("project").unwrap()))
    );
}

#[test]
fn api_key_lookup_shares_registry_data() {
    let (id, _) = setup("");
    let a = id
        .resolve(&h(&[("x-api-key", "sk-good")]), &mut Claims::default())
        .unwrap();
    let b = id
        .resolve(&h(&[("x-api-key", "sk-good")]), &mut Claims::default())
        .unwrap();
    assert!(
        Rc::ptr_eq(&a.tags, &b.tags),
        "no per-request copy of the tags"
    );
}

#[test]
fn query_key_removal_keeps_other_params() {
    assert_eq!(query_key("/v1/x?alt=sse&key=k1"), Some("k1"));
    assert_eq!(query_key("/v1/x?keyx=1"), None);
    assert_eq!(
        path_without_key("/v1/x?alt=sse&key=k1&b=2").as_deref(),
        Some("/v1/x?alt=sse&b=2")
    );
    assert_eq!(path_without_key("/v1/x?key=k1").as_deref(), Some("/v1/x"));
    assert_eq!(path_without_key("/v1/x?alt=sse"), None);
    assert_eq!(path_without_key("/v1/x"), None);
}

#[test]
fn tag_headers_use_dashes() {
    let schema = TagSchema::new(&["business_unit".to_string()]);
    assert_eq!(
        schema.header(schema.index("cost_center").unwrap()),
        "x-aispend-cost-center"
    );
    assert_eq!(
        schema.header(schema.index("business_unit").unwrap()),
        "x-aispend-business-unit"
    );
}

#[test]
fn an_authorization_header_without_bearer_is_its_own_rejection() {
    let (id, _) = setup("");
    let mut none = Claims::default();
    let headers = h(&[("authorization", "sk-good")]);
    assert_eq!(id.resolve(&headers, &mut none), Err(Rejection::NotBearer));
    assert_eq!(id.resolve(&[], &mut none), Err(Rejection::NoCredential));
    // A key elsewhere still wins over a bare authorization value.
    let both = h(&[("authorization", "junk"), ("x-api-key", "sk-good")]);
    assert!(id.resolve(&both, &mut none).is_ok());
}
