use super::*;
use crate::request::decision::Decision;
use crate::request::flow::RequestFlow;
use crate::request::identity::ClaimSource;
use crate::request::record::IdGen;
use crate::vm::Shared;

const KEY: &str = "sk-aispend-demo-search";

struct NoClaims;
impl ClaimSource for NoClaims {
    fn claim(&mut self, _name: &str) -> Option<String> {
        None
    }
}

fn filter(gateway: &str, credential: bool) -> Filter {
    filter_with(gateway, credential, "")
}

/// `extra`: more top-level config fields, each with a leading comma.
fn filter_with(gateway: &str, credential: bool, extra: &str) -> Filter {
    let digest = sha256_hex(KEY);
    let cred = if credential {
        r#","providers":{"openai":{"credential":{"header":"authorization","value":"Bearer sk-provider"}}}"#
    } else {
        ""
    };
    let collector = if gateway == "kong" {
        "127.0.0.1:9090"
    } else {
        "aispend_collector"
    };
    let json = format!(
        r#"{{"gateway":"{gateway}","identity":{{"keys":[{{"key_id":"demo-search","sha256":"{digest}","tags":{{"org":"acme","team":"search"}}}}]}},"collector":{{"cluster":"{collector}","token":"t"}}{cred}{extra}}}"#
    );
    Filter::from_json(json.as_bytes()).unwrap()
}

fn sha256_hex(s: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The edits for `headers` under `gateway`, or the refusal's status.
fn edits_for(
    gateway: &str,
    credential: bool,
    headers: &[(&str, &str)],
) -> Result<Vec<String>, u32> {
    edits_of(filter(gateway, credential), headers)
}

fn edits_of(f: Filter, headers: &[(&str, &str)]) -> Result<Vec<String>, u32> {
    rendered(f, headers, |e| match e {
        Edit::Set(n, v) | Edit::Add(n, v) => format!("set {n}={v}"),
        Edit::Drop(n) => format!("drop {n}"),
        Edit::Query { base, query, .. } => format!("query {base}?{query}"),
    })
}

/// The edits for `headers`, each rendered by `render`.
fn rendered(
    f: Filter,
    headers: &[(&str, &str)],
    render: impl Fn(&Edit<'_>) -> String,
) -> Result<Vec<String>, u32> {
    let shared = Shared::new(f.clone(), IdGen::new([7; 16]), 0);
    let flow = RequestFlow::new(&shared);
    let Decision::Continue(admitted) = flow.decide(headers, &mut NoClaims) else {
        panic!("not admitted");
    };
    let path = identity::header(headers, ":path").unwrap_or("");
    let route = crate::usage::detect(path);
    let inputs = Inputs {
        filter: &f,
        admitted: &admitted,
        route: route.as_ref(),
        request_id: "r1",
        body_may_change: true,
        now_ms: 1_764_800_000_999,
    };
    plan(headers, &inputs)
        .map(|edits| edits.iter().map(&render).collect())
        .map_err(|d| d.status)
}

const AUTH: (&str, &str) = ("authorization", "Bearer sk-aispend-demo-search");

fn chat(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut h = vec![(":path", "/v1/chat/completions"), (":method", "POST"), AUTH];
    h.extend_from_slice(extra);
    h
}

#[test]
fn spoofed_tags_and_the_key_are_taken_out_and_tags_set() {
    for gateway in ["envoy", "kong"] {
        let edits = edits_for(
            gateway,
            false,
            &chat(&[
                ("x-aispend-team", "evil"),
                ("x-aispend-other", "x"),
                ("content-length", "9"),
            ]),
        )
        .unwrap();
        assert!(
            edits.contains(&"drop authorization".to_string()),
            "{edits:?}"
        );
        assert!(edits.contains(&"drop x-aispend-other".to_string()));
        assert!(edits.contains(&"set x-aispend-team=search".to_string()));
        assert!(
            !edits.contains(&"drop x-aispend-team".to_string()),
            "set overwrites in place"
        );
        assert!(edits.contains(&"set x-aispend-key-id=demo-search".to_string()));
        // Envoy forwards the client's length; nginx writes its own.
        assert_eq!(
            edits.contains(&"drop content-length".to_string()),
            gateway == "envoy"
        );
        assert!(
            edits.iter().all(|e| !e.contains(':')),
            "no pseudo-header: {edits:?}"
        );
    }
}

#[test]
fn a_provider_credential_overwrites_the_virtual_key() {
    let edits = edits_for("kong", true, &chat(&[])).unwrap();
    assert!(edits.contains(&"set authorization=Bearer sk-provider".to_string()));
    assert!(!edits.contains(&"drop authorization".to_string()));
}

#[test]
fn the_key_in_any_other_header_cookie_or_query_spelling_goes() {
    let headers = chat(&[
        ("cookie", "session=1; token=sk-aispend-demo-search"),
        ("proxy-authorization", "Basic abc"),
        ("x-custom", "sk-aispend-demo-search"),
        ("x-harmless", "1"),
    ]);
    let edits = edits_for("envoy", false, &headers).unwrap();
    for name in ["cookie", "proxy-authorization", "x-custom"] {
        assert!(edits.contains(&format!("drop {name}")), "{name}: {edits:?}");
    }
    assert!(!edits.iter().any(|e| e.contains("x-harmless")));
    let path = "/v1beta/models/g:generateContent?KEY=sk-aispend-demo-search&alt=sse&token=sk-aispend-demo-search";
    let edits = edits_for("envoy", false, &[(":path", path), ("x-goog-api-key", KEY)]).unwrap();
    assert!(
        edits.contains(&"query /v1beta/models/g:generateContent?alt=sse".to_string()),
        "{edits:?}"
    );
}

#[test]
fn kong_refuses_a_repeated_header_it_cannot_clear_and_envoy_takes_both() {
    let twice = chat(&[("x-aispend-team", "evil"), ("x-aispend-team", "evil2")]);
    assert_eq!(edits_for("kong", false, &twice), Err(400));
    assert!(edits_for("envoy", false, &twice).is_ok());
    let dup_key = chat(&[("x-api-key", KEY), ("X-Api-Key", KEY)]);
    assert_eq!(edits_for("kong", false, &dup_key), Err(400));
    // Harmless repeats are fine on Kong.
    assert!(edits_for("kong", false, &chat(&[("accept", "a"), ("accept", "b")])).is_ok());
}

#[test]
fn apply_removes_on_envoy_and_blanks_on_kong() {
    use crate::host::memory::MemoryHost;
    for (gateway, expected) in [("envoy", None), ("kong", Some(""))] {
        let f = filter(gateway, false);
        let mut host = MemoryHost::with_request(&[("x-aispend-other", "x")]);
        apply(
            &mut host,
            &f,
            &[
                Edit::Drop("x-aispend-other"),
                Edit::Query {
                    base: "/p",
                    query: String::new(),
                    key: None,
                },
            ],
        );
        assert_eq!(host.request_header("x-aispend-other"), expected);
        let via_property = host
            .properties
            .get(&vec!["request".to_string(), "query".to_string()]);
        assert_eq!(via_property.is_some(), gateway == "kong");
        assert_eq!(host.request_header(":path").is_some(), gateway == "envoy");
    }
}

#[test]
fn kong_cleans_the_upstream_uri_kong_built_before_the_filter() {
    use crate::host::memory::MemoryHost;
    let f = filter("kong", false);
    let mut host = MemoryHost::with_request(&[]);
    let uri = vec!["ngx".to_string(), "upstream_uri".to_string()];
    host.properties.insert(
        uri.clone(),
        b"/v1beta/models/g:generateContent?key=sk-1&alt=json".to_vec(),
    );
    apply(
        &mut host,
        &f,
        &[Edit::Query {
            base: "/v1beta/models/g:generateContent",
            query: "alt=json".into(),
            key: Some("sk-1"),
        }],
    );
    assert_eq!(
        host.properties[&uri],
        b"/v1beta/models/g:generateContent?alt=json"
    );
    // Without Kong's variable (plain nginx), only $args is set.
    let mut plain = MemoryHost::with_request(&[]);
    apply(
        &mut plain,
        &f,
        &[Edit::Query {
            base: "/p",
            query: "a=1".into(),
            key: Some("sk-1"),
        }],
    );
    assert!(!plain.properties.contains_key(&uri));
}

const SIGNING: &str =
    r#","signing":{"keys":[{"id":"k1","secret":"0123456789abcdef0123456789abcdef"}]}"#;

#[test]
fn signed_tags_cover_what_is_set_and_replace_a_client_signature() {
    for gateway in ["envoy", "kong"] {
        let f = filter_with(gateway, true, SIGNING);
        let headers = chat(&[
            ("x-aispend-signature", "t=1,kid=k1,v1=forged"),
            ("x-aispend-team", "evil"),
        ]);
        let edits = edits_of(f.clone(), &headers).unwrap();
        let signature = |edits: &[String]| {
            edits
                .iter()
                .filter_map(|e| e.strip_prefix("set x-aispend-signature="))
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        let sig = signature(&edits);
        assert_eq!(sig.len(), 1, "{edits:?}");
        // The client's copy is taken out first (the set overwrites it on Kong).
        let drop = edits.iter().position(|e| e == "drop x-aispend-signature");
        let set = edits
            .iter()
            .position(|e| e.starts_with("set x-aispend-signature="));
        assert!(drop.is_some() && drop < set, "{edits:?}");
        // Same as signing the set headers directly (tags, key id, request id;
        // the credential is not an aispend header and is left out).
        let expected = f.signer.as_ref().unwrap().sign(
            1_764_800_000,
            [
                ("x-aispend-org", "acme"),
                ("x-aispend-team", "search"),
                ("x-aispend-key-id", "demo-search"),
                ("x-aispend-request-id", "r1"),
            ]
            .into_iter(),
        );
        assert_eq!(sig[0], expected);
        assert!(expected.starts_with("t=1764800000,kid=k1,v1="));
        // Without `signing`, no signature, and a client's copy still goes.
        let plain = edits_for(gateway, true, &headers).unwrap();
        assert!(signature(&plain).is_empty());
        assert!(plain.contains(&"drop x-aispend-signature".to_string()));
    }
    // Sent twice on Kong: refused like any header it cannot clear.
    let twice = chat(&[("x-aispend-signature", "a"), ("X-Aispend-Signature", "b")]);
    assert_eq!(
        edits_of(filter_with("kong", true, SIGNING), &twice),
        Err(400)
    );
}

/// A header the client did not send is added (Envoy then has no copy to
/// search its map for); one it sent (a spoofed tag, the credential's name)
/// is overwritten, on both hosts.
#[test]
fn headers_the_client_did_not_send_are_added_the_others_overwritten() {
    for gateway in ["envoy", "kong"] {
        let kinds = rendered(
            filter(gateway, true),
            &chat(&[("X-Aispend-Team", "spoofed")]),
            |e| match e {
                Edit::Set(n, _) => format!("set {n}"),
                Edit::Add(n, _) => format!("add {n}"),
                Edit::Drop(n) => format!("drop {n}"),
                Edit::Query { .. } => "query".to_string(),
            },
        )
        .unwrap();
        for want in [
            "set authorization",
            "set x-aispend-team",
            "add x-aispend-org",
            "add x-aispend-key-id",
            "add x-aispend-request-id",
        ] {
            assert!(
                kinds.iter().any(|k| k == want),
                "{gateway}: {want} in {kinds:?}"
            );
        }
        assert!(
            !kinds
                .iter()
                .any(|k| k == "add x-aispend-team" || k == "add authorization"),
            "{gateway}: {kinds:?}"
        );
    }
}

/// Applied to a host, the added and overwritten headers leave one copy each.
#[test]
fn applied_edits_leave_one_copy_of_each_header() {
    use crate::host::memory::MemoryHost;
    let f = filter("envoy", true);
    let headers = chat(&[("x-aispend-team", "spoofed")]);
    let mut host = MemoryHost::with_request(&headers);
    let shared = Shared::new(f.clone(), IdGen::new([7; 16]), 0);
    let mut flow = RequestFlow::new(&shared);
    flow.on_request_headers(&mut host, false);
    for name in [
        "authorization",
        "x-aispend-team",
        "x-aispend-org",
        "x-aispend-key-id",
        "x-aispend-request-id",
    ] {
        let n = host
            .request_headers
            .iter()
            .filter(|(h, _)| h == name)
            .count();
        assert_eq!(n, 1, "{name}: {:?}", host.request_headers);
    }
    assert_eq!(host.request_header("x-aispend-team"), Some("search"));
    assert_eq!(
        host.request_header("authorization"),
        Some("Bearer sk-provider")
    );
}
