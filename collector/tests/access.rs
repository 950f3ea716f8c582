//! Access (CONTRACTS §9) through `app()` over a real SQLite file: the role ×
//! route matrix generated from `domain::access::ROUTES`, the tokens API,
//! the audit log, scoped viewers on every read, and the override lifecycle
//! with an injected clock.

mod common;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use aispend_collector::domain::access::{Access, Role, ROUTES};
use aispend_collector::domain::time::{format_rfc3339_ms, now_ms};
use aispend_collector::{app, served_routes, AppState};
use axum::http::StatusCode;
use axum::Router;
use common::{Answer, ADMIN, INGEST, READ};
use serde_json::{json, Value};

const HOUR: i64 = 3_600_000;

struct Collector {
    router: Router,
    state: AppState,
    clock: Arc<AtomicI64>,
    _dir: tempfile::TempDir,
}

fn start() -> Collector {
    let (dir, url) = common::sqlite_dir();
    let clock = Arc::new(AtomicI64::new(now_ms()));
    let tick = Arc::clone(&clock);
    let state =
        common::sqlite_state(&url).with_clock(Arc::new(move || tick.load(Ordering::Relaxed)));
    Collector {
        router: app(state.clone()),
        state,
        clock,
        _dir: dir,
    }
}

impl Collector {
    async fn call(&self, method: &str, uri: &str, token: Option<&str>, body: Value) -> Answer {
        common::call(&self.router, method, uri, token, body).await
    }

    /// Creates a token with the admin bootstrap token; answers (id, secret).
    async fn token(&self, role: &str, scope: Option<Value>) -> (String, String) {
        let mut body = json!({"role": role, "label": format!("{role} for tests")});
        if let Some(scope) = scope {
            body["scope"] = scope;
        }
        let a = self.call("POST", "/v1/tokens", Some(ADMIN), body).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
        let id = a.json["id"].as_str().expect("id").to_owned();
        let secret = a.json["token"].as_str().expect("token").to_owned();
        (id, secret)
    }

    async fn ingest(&self, records: Vec<Value>) {
        let a = self
            .call(
                "POST",
                "/v1/records",
                Some(INGEST),
                json!({ "records": records }),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        assert_eq!(a.json["rejected"], json!([]), "{}", a.text);
    }

    fn advance(&self, ms: i64) {
        self.clock.fetch_add(ms, Ordering::Relaxed);
    }
}

/// A call of `team` now, worth $0.045 (gpt-4o-mini, 100k in + 50k out).
fn record(id: &str, team: &str) -> Value {
    json!({"id": id, "ts": format_rfc3339_ms(now_ms() - 1000), "gateway": "envoy",
        "key_id": format!("key-{team}"), "auth": "api_key",
        "tags": {"org": "acme", "team": team}, "labels": {}, "provider": "openai",
        "operation": "chat", "model": "gpt-4o-mini", "status": 200,
        "input_tokens": 100_000, "cached_input_tokens": 0, "cache_write_input_tokens": 0,
        "output_tokens": 50_000, "reasoning_tokens": 0})
}

fn uri_of(path: &str) -> String {
    path.replace("{id}", "x").replace("{key_id}", "x")
}

#[tokio::test]
async fn every_route_answers_each_role_as_the_table_says() {
    let c = start();
    let (_, finance) = c.token("finance", None).await;
    let callers: Vec<(&str, Option<String>, Option<Role>)> = vec![
        ("admin", Some(ADMIN.to_owned()), Some(Role::Admin)),
        ("finance", Some(finance), Some(Role::Finance)),
        ("viewer", Some(READ.to_owned()), Some(Role::Viewer)),
        ("gateway", Some(INGEST.to_owned()), Some(Role::Gateway)),
        ("unknown", Some("ast-0000".to_owned()), None),
        ("none", None, None),
    ];
    let served = served_routes(&c.state);
    assert!(served.len() >= 17, "{served:?}");
    let mut cells = 0;
    for rule in &served {
        for (name, token, role) in &callers {
            let a = c
                .call(rule.method, &uri_of(rule.path), token.as_deref(), json!({}))
                .await;
            let cell = format!(
                "{} {} as {name}: {} {}",
                rule.method, rule.path, a.status, a.text
            );
            match (rule.access, role) {
                (Access::Public, _) => assert_eq!(a.status, StatusCode::OK, "{cell}"),
                (Access::Roles(_), None) => {
                    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{cell}");
                    assert_eq!(a.json["error"]["code"], "invalid_token", "{cell}");
                }
                (Access::Roles(allowed), Some(role)) if allowed.contains(role) => {
                    assert!(
                        a.status != StatusCode::UNAUTHORIZED && a.status != StatusCode::FORBIDDEN,
                        "{cell}"
                    );
                    assert!(
                        a.status != StatusCode::NOT_FOUND || rule.path.contains('{'),
                        "{cell}"
                    );
                }
                (Access::Roles(_), Some(_)) => {
                    assert_eq!(a.status, StatusCode::FORBIDDEN, "{cell}");
                    assert_eq!(a.json["error"]["code"], "insufficient_role", "{cell}");
                }
            }
            cells += 1;
        }
    }
    // Rows not served by this build (the keys API) are not routed at all.
    for rule in ROUTES.iter().filter(|r| !served.contains(r)) {
        assert!(rule.path.starts_with("/v1/keys"), "{rule:?} has no handler");
        let a = c
            .call(rule.method, &uri_of(rule.path), Some(ADMIN), json!({}))
            .await;
        assert!(
            a.status == StatusCode::NOT_FOUND || a.status == StatusCode::METHOD_NOT_ALLOWED,
            "{rule:?}: {}",
            a.status
        );
    }
    println!("{cells} role x route cells checked");
    let metrics = c.call("GET", "/metrics", None, Value::Null).await.text;
    assert!(
        !metrics.contains("aispend_auth_failures_total{reason=\"invalid_token\"} 0\n"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("aispend_auth_failures_total{reason=\"forbidden\"} 0\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn tokens_are_shown_once_work_and_stop_on_revocation_or_expiry() {
    let c = start();
    let expires = format_rfc3339_ms(c.state.now() + HOUR);
    let created = c
        .call(
            "POST",
            "/v1/tokens",
            Some(ADMIN),
            json!({"role": "finance", "label": "ci", "expires_at": expires}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let secret = created.json["token"].as_str().expect("secret").to_owned();
    let id = created.json["id"].as_str().expect("id").to_owned();
    assert!(
        secret.starts_with("ast-") && secret.len() == 4 + 48,
        "{secret}"
    );
    assert!(id.starts_with("tok_"));
    assert_eq!(created.json["role"], "finance");
    assert_eq!(created.json["created_by"], "bootstrap:admin");

    let list = c.call("GET", "/v1/tokens", Some(ADMIN), Value::Null).await;
    assert_eq!(list.json["tokens"][0]["id"], id.as_str());
    assert_eq!(list.json["tokens"][0]["active"], true);
    assert!(!list.text.contains(&secret), "the secret is never listed");
    assert!(!list.text.contains("sha256"), "{}", list.text);

    // It works as finance: budget writes yes, token admin no.
    let budget = json!({"id": "b1", "scope": {"team": "search"}, "period": "month",
                        "amount_usd": 1.0});
    assert_eq!(
        c.call("POST", "/v1/budgets", Some(&secret), budget)
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        c.call("GET", "/v1/tokens", Some(&secret), Value::Null)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    // Many requests with an API token: one read of the token table, not one each.
    let loads = c.state.token_cache.loads();
    for _ in 0..50 {
        let a = c.call("GET", "/v1/caps", Some(&secret), Value::Null).await;
        assert_eq!(a.status, StatusCode::OK);
    }
    assert!(
        c.state.token_cache.loads() <= loads + 1,
        "{loads} → {}",
        c.state.token_cache.loads()
    );
    let metrics = c.call("GET", "/metrics", None, Value::Null).await.text;
    assert!(
        metrics.contains("aispend_token_cache_loads_total "),
        "{metrics}"
    );
    // Expired: 401 (the cache keeps the row; expiry is checked per request).
    c.advance(HOUR);
    let expired = c
        .call("GET", "/v1/budgets", Some(&secret), Value::Null)
        .await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED, "{}", expired.text);
    c.advance(-HOUR);
    assert_eq!(
        c.call("GET", "/v1/budgets", Some(&secret), Value::Null)
            .await
            .status,
        StatusCode::OK
    );
    // Revoked: 401 at once on this replica.
    let revoked = c
        .call(
            "DELETE",
            &format!("/v1/tokens/{id}"),
            Some(ADMIN),
            Value::Null,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text);
    assert_eq!(revoked.json["active"], false);
    assert!(revoked.json["revoked_at"].is_string());
    assert_eq!(
        c.call("GET", "/v1/budgets", Some(&secret), Value::Null)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        c.call("DELETE", "/v1/tokens/tok_nope", Some(ADMIN), Value::Null)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Bad bodies name the field.
    let bad = c
        .call(
            "POST",
            "/v1/tokens",
            Some(ADMIN),
            json!({"role": "gateway", "label": "x",
              "scope": {"team": "a"}}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.text.contains("scope"), "{}", bad.text);

    // The audit log names the token id and the bootstrap admin, never a secret.
    let audit = c.call("GET", "/v1/audit", Some(ADMIN), Value::Null).await;
    assert_eq!(audit.status, StatusCode::OK, "{}", audit.text);
    let actions: Vec<(&str, &str)> = audit.json["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default(),
                e["actor"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        vec![
            ("token.revoke", "bootstrap:admin"),
            ("budget.create", id.as_str()),
            ("token.create", "bootstrap:admin"),
        ]
    );
    for secret in [secret.as_str(), ADMIN, READ, INGEST] {
        assert!(!audit.text.contains(secret), "audit shows a secret");
    }
    let entry = &audit.json["entries"][0];
    assert_eq!(entry["target"], format!("token:{id}"));
    assert_eq!(entry["before"]["revoked_at"], Value::Null);
    assert!(entry["after"]["revoked_at"].is_string());
    assert!(entry["request_id"].as_str().is_some_and(|r| !r.is_empty()));
}

#[tokio::test]
async fn audit_pages_filters_and_exports_csv() {
    let c = start();
    for i in 0..5 {
        let body = json!({"id": format!("b{i}"), "scope": {"team": "t"}, "period": "day",
                          "amount_usd": 1.0 + f64::from(i)});
        assert_eq!(
            c.call("POST", "/v1/budgets", Some(ADMIN), body)
                .await
                .status,
            StatusCode::CREATED
        );
    }
    let put = json!({"scope": {"team": "t"}, "period": "day", "amount_usd": 9.0});
    assert_eq!(
        c.call("PUT", "/v1/budgets/b1", Some(ADMIN), put)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        c.call("DELETE", "/v1/budgets/b2", Some(ADMIN), Value::Null)
            .await
            .status,
        StatusCode::OK
    );
    let page1 = c
        .call("GET", "/v1/audit?limit=3", Some(ADMIN), Value::Null)
        .await;
    let entries = page1.json["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0]["action"], "budget.delete");
    assert_eq!(entries[0]["before"]["id"], "b2");
    assert_eq!(entries[0]["after"], Value::Null);
    assert_eq!(entries[1]["action"], "budget.replace");
    assert_eq!(entries[1]["before"]["amount_usd"], 2.0);
    assert_eq!(entries[1]["after"]["amount_usd"], 9.0);
    let next = page1.json["next_before"]
        .as_i64()
        .expect("a full page has a cursor");
    let page2 = c
        .call(
            "GET",
            &format!("/v1/audit?limit=3&before={next}"),
            Some(ADMIN),
            Value::Null,
        )
        .await;
    let targets: Vec<&str> = page2.json["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["target"].as_str())
        .collect();
    assert_eq!(targets, ["budget:b3", "budget:b2", "budget:b1"]);
    let filtered = c
        .call(
            "GET",
            "/v1/audit?action=budget.create&target=budget:b4",
            Some(ADMIN),
            Value::Null,
        )
        .await;
    assert_eq!(filtered.json["entries"].as_array().map(Vec::len), Some(1));
    let csv = c
        .call(
            "GET",
            "/v1/audit?format=csv&action=budget.replace",
            Some(ADMIN),
            Value::Null,
        )
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    let lines: Vec<&str> = csv.text.lines().collect();
    assert_eq!(
        lines[0],
        "seq,at,actor,action,target,before,after,request_id"
    );
    assert_eq!(lines.len(), 2, "{}", csv.text);
    assert!(
        lines[1].contains(",bootstrap:admin,budget.replace,budget:b1,\"{"),
        "{}",
        lines[1]
    );
    let bad = c
        .call("GET", "/v1/audit?limit=0", Some(ADMIN), Value::Null)
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.text.contains("limit"));
}

#[tokio::test]
async fn a_scoped_viewer_sees_its_scope_on_every_read() {
    let c = start();
    c.ingest(vec![
        record("s1", "search"),
        record("s2", "search"),
        record("g1", "growth"),
    ])
    .await;
    for (id, team, amount) in [("b-search", "search", 0.01), ("b-growth", "growth", 0.01)] {
        let body = json!({"id": id, "scope": {"team": team}, "period": "month",
                          "amount_usd": amount});
        assert_eq!(
            c.call("POST", "/v1/budgets", Some(ADMIN), body)
                .await
                .status,
            StatusCode::CREATED
        );
    }
    let (_, viewer) = c.token("viewer", Some(json!({"team": "search"}))).await;
    let out_of_scope = |a: &Answer| {
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text);
        assert_eq!(a.json["error"]["code"], "out_of_scope", "{}", a.text);
    };

    // Usage: no filter → the scope only; the scope's filter → same; another → 403.
    let unscoped = c
        .call("GET", "/v1/usage?group_by=team", Some(READ), Value::Null)
        .await;
    assert_eq!(unscoped.json["totals"]["requests"], 3);
    for uri in [
        "/v1/usage?group_by=team",
        "/v1/usage?group_by=team&filter.team=search",
    ] {
        let a = c.call("GET", uri, Some(&viewer), Value::Null).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        assert_eq!(a.json["totals"]["requests"], 2, "{uri}: {}", a.text);
        assert_eq!(
            a.json["rows"].as_array().map(Vec::len),
            Some(1),
            "{}",
            a.text
        );
        assert_eq!(a.json["rows"][0]["team"], "search");
    }
    let csv = c
        .call(
            "GET",
            "/v1/usage?group_by=team&format=csv",
            Some(&viewer),
            Value::Null,
        )
        .await;
    assert!(!csv.text.contains("growth"), "{}", csv.text);
    out_of_scope(
        &c.call(
            "GET",
            "/v1/usage?filter.team=growth",
            Some(&viewer),
            Value::Null,
        )
        .await,
    );

    // Budgets: the list holds only its scope's; another budget is 403.
    let list = c
        .call("GET", "/v1/budgets", Some(&viewer), Value::Null)
        .await;
    let ids: Vec<&str> = list.json["budgets"]
        .as_array()
        .expect("budgets")
        .iter()
        .filter_map(|b| b["id"].as_str())
        .collect();
    assert_eq!(ids, ["b-search"]);
    assert_eq!(
        c.call("GET", "/v1/budgets/b-search", Some(&viewer), Value::Null)
            .await
            .status,
        StatusCode::OK
    );
    out_of_scope(
        &c.call("GET", "/v1/budgets/b-growth", Some(&viewer), Value::Null)
            .await,
    );

    // Caps: both budgets are hard; the viewer sees its scope's flag only.
    let all = c.call("GET", "/v1/caps", Some(READ), Value::Null).await;
    assert_eq!(
        all.json["caps"].as_array().map(Vec::len),
        Some(2),
        "{}",
        all.text
    );
    let scoped = c.call("GET", "/v1/caps", Some(&viewer), Value::Null).await;
    assert_eq!(scoped.status, StatusCode::OK);
    let flags = scoped.json["caps"].as_array().expect("caps");
    assert_eq!(flags.len(), 1, "{}", scoped.text);
    assert_eq!(flags[0]["budget_id"], "b-search");
    assert_ne!(scoped.json["version"], all.json["version"]);

    // Writes and the audit log stay closed to a viewer, scoped or not.
    for (method, uri) in [
        ("POST", "/v1/budgets"),
        ("GET", "/v1/audit"),
        ("GET", "/v1/overrides"),
    ] {
        let a = c.call(method, uri, Some(&viewer), json!({})).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{method} {uri}");
    }

    // Reports over every team: the unscoped read token gets them, the scoped
    // viewer is refused rather than shown other teams.
    for uri in [
        "/v1/reports/showback?month=2026-01",
        "/v1/reports/unattributed?month=2026-01",
    ] {
        let a = c.call("GET", uri, Some(READ), Value::Null).await;
        assert_eq!(a.status, StatusCode::OK, "{uri}: {}", a.text);
        out_of_scope(&c.call("GET", uri, Some(&viewer), Value::Null).await);
    }
}

#[tokio::test]
async fn an_override_needs_finance_and_admin_other_than_the_requester_and_expires() {
    let c = start();
    c.ingest(vec![record("s1", "search")]).await; // $0.045 spent
    let body = json!({"id": "b1", "scope": {"team": "search"}, "period": "month",
                      "amount_usd": 0.01});
    assert_eq!(
        c.call("POST", "/v1/budgets", Some(ADMIN), body)
            .await
            .status,
        StatusCode::CREATED
    );
    let hard = |a: &Answer| {
        a.json["caps"].as_array().is_some_and(|caps| {
            caps.iter()
                .any(|f| f["budget_id"] == "b1" && f["state"] == "hard")
        })
    };
    assert!(hard(
        &c.call("GET", "/v1/caps", Some(INGEST), Value::Null).await
    ));

    let (requester_id, requester) = c.token("finance", None).await;
    let (_, finance) = c.token("finance", None).await;
    let (_, admin) = c.token("admin", None).await;
    let expires = format_rfc3339_ms(c.state.now() + HOUR);
    let request = json!({"budget_id": "b1", "amount_usd": 1.0, "expires_at": expires,
                         "reason": "launch day"});
    let created = c
        .call("POST", "/v1/overrides", Some(&requester), request.clone())
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.json["state"], "pending");
    assert_eq!(created.json["requested_by"], requester_id.as_str());
    let id = created.json["id"].as_str().expect("id").to_owned();
    let approve = format!("/v1/overrides/{id}/approve");

    let own = c
        .call("POST", &approve, Some(&requester), Value::Null)
        .await;
    assert_eq!(own.status, StatusCode::FORBIDDEN);
    assert_eq!(own.json["error"]["code"], "self_approval");
    assert_eq!(
        c.call("POST", &approve, Some(READ), Value::Null)
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    let first = c.call("POST", &approve, Some(&finance), Value::Null).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!(first.json["state"], "pending");
    assert!(hard(
        &c.call("GET", "/v1/caps", Some(INGEST), Value::Null).await
    ));
    let again = c.call("POST", &approve, Some(&finance), Value::Null).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);

    let second = c.call("POST", &approve, Some(&admin), Value::Null).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text);
    assert_eq!(second.json["state"], "active");
    assert_eq!(second.json["approvals"].as_array().map(Vec::len), Some(2));
    let caps = c.call("GET", "/v1/caps", Some(INGEST), Value::Null).await;
    assert!(
        !hard(&caps),
        "active override lifts the hard flag: {}",
        caps.text
    );
    let budget = c
        .call("GET", "/v1/budgets/b1", Some(READ), Value::Null)
        .await;
    assert_eq!(budget.json["override_usd"], 1.0, "{}", budget.text);
    assert_ne!(budget.json["state"], "hard");

    // At expires_at it ends by itself.
    c.advance(HOUR);
    assert!(hard(
        &c.call("GET", "/v1/caps", Some(INGEST), Value::Null).await
    ));
    let listed = c
        .call("GET", "/v1/overrides", Some(&finance), Value::Null)
        .await;
    assert_eq!(listed.json["overrides"][0]["state"], "expired");
    let late = c.call("POST", &approve, Some(ADMIN), Value::Null).await;
    assert_eq!(late.status, StatusCode::CONFLICT);

    // Unknown budget, bad fields.
    let mut unknown = request.clone();
    unknown["budget_id"] = json!("nope");
    unknown["expires_at"] = json!(format_rfc3339_ms(c.state.now() + HOUR));
    assert_eq!(
        c.call("POST", "/v1/overrides", Some(&finance), unknown)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // Every step is in the audit log.
    let audit = c
        .call(
            "GET",
            &format!("/v1/audit?target=override:{id}"),
            Some(&finance),
            Value::Null,
        )
        .await;
    let actions: Vec<&str> = audit.json["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        ["override.approve", "override.approve", "override.request"]
    );
    assert_eq!(audit.json["entries"][0]["after"]["state"], "active");
}

#[tokio::test]
async fn whoami_answers_each_caller_its_role_scope_and_routes() {
    let c = start();
    let (_, scoped) = c.token("viewer", Some(json!({"team": "search"}))).await;
    let a = c
        .call("GET", "/v1/whoami", Some(&scoped), Value::Null)
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json["roles"], json!(["viewer"]), "{}", a.text);
    assert_eq!(a.json["scope"], json!({"team": "search"}), "{}", a.text);
    assert!(a.json["actor"].as_str().unwrap_or("").starts_with("tok_"));
    let routes: Vec<&str> = a.json["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(routes.contains(&"GET /v1/usage"), "{routes:?}");
    assert!(!routes.contains(&"GET /v1/keys"), "{routes:?}");
    // What whoami leaves out, the route refuses to this token.
    assert!(!routes.contains(&"GET /v1/reports/showback"), "{routes:?}");
    let a = c
        .call("GET", "/v1/reports/showback", Some(&scoped), Value::Null)
        .await;
    assert_eq!(a.json["error"]["code"], "out_of_scope", "{}", a.text);
    assert!(!a.text.contains(&scoped), "never the secret");
    let a = c.call("GET", "/v1/whoami", Some(ADMIN), Value::Null).await;
    assert_eq!(a.json["actor"], "bootstrap:admin");
    assert_eq!(a.json["scope"], Value::Null);
    assert_eq!(
        a.json["required_tags"],
        json!(["org", "team", "cost_center", "environment"])
    );
    let a = c
        .call("GET", "/v1/whoami", Some("ast-0000"), Value::Null)
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_dashboard_assets_are_served_without_a_token_and_hold_no_data() {
    let c = start();
    let page = c.call("GET", "/ui/", None, Value::Null).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.text.contains("<script src=\"/ui/app.js\""),
        "{}",
        page.text
    );
    let csp = page.headers["content-security-policy"]
        .to_str()
        .expect("csp");
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(
        c.call("GET", "/ui", None, Value::Null).await.text,
        page.text
    );
    for (path, kind) in [
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
    ] {
        let a = c.call("GET", path, None, Value::Null).await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        let ct = a.headers["content-type"].to_str().expect("content-type");
        assert!(ct.starts_with(kind), "{path}: {ct}");
        assert!(page.text.contains(path), "index.html links {path}");
    }
    // Everything the page shows comes from the API with the user's token.
    let js = c.call("GET", "/ui/app.js", None, Value::Null).await.text;
    assert!(js.contains("/v1/whoami") && js.contains("authorization"));
    let outside = js.replace("http://www.w3.org/2000/svg", ""); // a namespace, not a fetch
    assert!(
        !outside.contains("http://") && !outside.contains("https://"),
        "no external URL"
    );
    assert_eq!(
        c.call("GET", "/ui/other.js", None, Value::Null)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}
