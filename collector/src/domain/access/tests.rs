use std::collections::BTreeSet;

use serde_json::json;

use super::*;

fn scope(pairs: &[(&str, &str)]) -> Scope {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn the_table_has_one_row_per_route_and_every_role_reads_caps() {
    let mut seen = BTreeSet::new();
    for r in ROUTES {
        assert!(
            seen.insert((r.method, r.path)),
            "{} {} twice",
            r.method,
            r.path
        );
        if let Access::Roles(roles) = r.access {
            assert!(
                roles.contains(&Role::Admin),
                "admin may do everything: {r:?}"
            );
        }
    }
    for path in ["/v1/caps", "/v1/keys/registry"] {
        let rule = rule_for("GET", path).expect("listed");
        assert_eq!(rule.access, Access::Roles(&Role::ALL), "{path}");
    }
    assert_eq!(
        rule_for("get", "/healthz").map(|r| r.access),
        Some(Access::Public)
    );
    assert_eq!(rule_for("PATCH", "/v1/budgets/{id}"), None);
    let writers = |m: &str, p: &str| match rule_for(m, p).map(|r| r.access) {
        Some(Access::Roles(roles)) => roles.to_vec(),
        _ => Vec::new(),
    };
    assert_eq!(writers("POST", "/v1/tokens"), vec![Role::Admin]);
    assert_eq!(writers("POST", "/v1/keys"), vec![Role::Admin]);
    assert_eq!(writers("GET", "/v1/keys"), vec![Role::Admin, Role::Finance]);
    assert_eq!(
        writers("POST", "/v1/records"),
        vec![Role::Admin, Role::Gateway]
    );
    assert!(!writers("GET", "/v1/audit").contains(&Role::Viewer));
}

#[test]
fn token_bodies_are_validated_field_by_field() {
    let now = 1_000_000;
    let ok = validate_new_token(
        &json!({"role": "viewer", "scope": {"team": "search"}, "label": " ci ",
                "expires_at": "2030-01-01T00:00:00Z"}),
        now,
    )
    .expect("valid");
    assert_eq!(ok.role, Role::Viewer);
    assert_eq!(ok.scope, Some(scope(&[("team", "search")])));
    assert_eq!(ok.label, "ci");
    assert!(ok.expires_at.is_some());
    for (body, field) in [
        (json!({"role": "root", "label": "x"}), "role"),
        (json!({"label": "x"}), "role"),
        (json!({"role": "admin"}), "label"),
        (json!({"role": "admin", "label": ""}), "label"),
        (
            json!({"role": "finance", "label": "x", "scope": {"team": "a"}}),
            "scope",
        ),
        (
            json!({"role": "viewer", "label": "x", "scope": {}}),
            "scope",
        ),
        (
            json!({"role": "admin", "label": "x", "expires_at": "1970-01-01T00:00:00Z"}),
            "expires_at",
        ),
        (
            json!({"role": "admin", "label": "x", "expires_at": "soon"}),
            "expires_at",
        ),
        (
            json!({"role": "admin", "label": "x", "secret": "y"}),
            "secret",
        ),
    ] {
        let err = validate_new_token(&body, now).expect_err("invalid");
        assert!(err.contains(field), "{body}: {err}");
    }
}

#[test]
fn liveness_follows_revocation_and_expiry() {
    let mut t = ApiToken {
        id: "tok_1".into(),
        sha256: [0; 32],
        role: Role::Viewer,
        scope: None,
        label: "l".into(),
        created_at: 0,
        expires_at: Some(100),
        revoked_at: None,
        created_by: "bootstrap:admin".into(),
    };
    assert!(t.is_live(99));
    assert!(!t.is_live(100));
    t.expires_at = None;
    assert!(t.is_live(i64::MAX));
    t.revoked_at = Some(5);
    assert!(!t.is_live(1));
    let shown = serde_json::to_value(&t).expect("json");
    assert!(shown.get("sha256").is_none(), "{shown}");
    assert_eq!(shown["revoked_at"], "1970-01-01T00:00:00.005Z");
}

#[test]
fn scope_narrows_filters_and_refuses_others() {
    let s = scope(&[("team", "search"), ("key_id", "k1")]);
    let added = scope_filters(&s, Vec::new()).expect("in scope");
    assert!(added.contains(&(Dim::Tag("team".into()), "search".into())));
    assert!(added.contains(&(Dim::KeyId, "k1".into())));
    let kept = scope_filters(
        &s,
        vec![
            (Dim::Tag("team".into()), "search".into()),
            (Dim::Model, "m".into()),
        ],
    )
    .expect("in scope");
    assert_eq!(kept.len(), 3);
    let refused = scope_filters(&s, vec![(Dim::Tag("team".into()), "growth".into())]);
    assert!(matches!(refused, Err(OutOfScope(m)) if m.contains("team=growth")));
}

#[test]
fn a_budget_is_in_scope_when_it_pins_every_pair() {
    let viewer = scope(&[("team", "search")]);
    assert!(budget_in_scope(&viewer, &scope(&[("team", "search")])));
    assert!(budget_in_scope(
        &viewer,
        &scope(&[("team", "search"), ("environment", "prod")])
    ));
    assert!(!budget_in_scope(&viewer, &scope(&[("team", "growth")])));
    assert!(!budget_in_scope(&viewer, &scope(&[("org", "acme")])));
}

#[test]
fn allowed_routes_follow_the_table_per_role() {
    let who = |role: Role, scope: Option<Scope>| Principal {
        actor: "t".into(),
        roles: vec![role],
        scope,
    };
    let viewer = allowed_routes(&who(Role::Viewer, Some(scope(&[("team", "search")]))));
    assert!(viewer.contains(&"GET /v1/usage".to_owned()), "{viewer:?}");
    assert!(viewer.contains(&"GET /v1/whoami".to_owned()), "{viewer:?}");
    assert!(!viewer.contains(&"GET /v1/keys".to_owned()), "{viewer:?}");
    assert!(!viewer.contains(&"POST /v1/alerts/{id}/ack".to_owned()));
    assert!(
        !viewer.iter().any(|r| r.starts_with("GET /ui")),
        "public rows left out"
    );
    let admin = allowed_routes(&who(Role::Admin, None));
    assert!(admin.contains(&"POST /v1/keys".to_owned()));
    let gateway = allowed_routes(&who(Role::Gateway, None));
    assert!(gateway.contains(&"GET /v1/whoami".to_owned()));
    assert!(
        !gateway.contains(&"GET /v1/usage".to_owned()),
        "{gateway:?}"
    );
    for path in ["/ui", "/ui/", "/ui/app.js", "/ui/app.css"] {
        assert_eq!(
            rule_for("GET", path).map(|r| r.access),
            Some(Access::Public),
            "{path}"
        );
    }
}
