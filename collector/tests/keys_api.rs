//! HTTP tests of the key API and the key registry (CONTRACTS §8) against
//! `app()` over a real SQLite file: every endpoint, every refusal, roles,
//! and the registry's ETag / 304.

mod common;

use std::time::Duration;

use aispend_collector::domain::keys::{sha256_hex, KeyPolicy};
use aispend_collector::domain::time::{format_rfc3339_ms, now_ms, parse_rfc3339_ms};
use axum::http::StatusCode;
use common::{Answer, Collector};
use common::{ADMIN_BEARER as ADMIN, INGEST_BEARER as INGEST, READ_BEARER as READ};
use serde_json::{json, Value};

const DAY_MS: i64 = 86_400_000;

fn start_with(policy: KeyPolicy) -> Collector {
    common::start_with(|state| state.with_key_policy(policy))
}

fn start() -> Collector {
    start_with(KeyPolicy::default())
}

impl Collector {
    async fn call(&self, method: &str, uri: &str, headers: &[(&str, &str)], body: Value) -> Answer {
        common::call_with(&self.router, method, uri, headers, body).await
    }

    async fn admin(&self, method: &str, uri: &str, body: Value) -> Answer {
        self.call(method, uri, &[("authorization", ADMIN)], body)
            .await
    }

    async fn registry(&self, token: &str, if_none_match: Option<&str>) -> Answer {
        let mut headers = vec![("authorization", token)];
        if let Some(tag) = if_none_match {
            headers.push(("if-none-match", tag));
        }
        self.call("GET", "/v1/keys/registry", &headers, Value::Null)
            .await
    }

    /// Creates a key with the full default tag set; answers the 201 body.
    async fn create(&self, body: Value) -> Value {
        let answer = self.admin("POST", "/v1/keys", body).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
        answer.json
    }

    /// The registry entries by sha256.
    async fn entries(&self) -> Vec<Value> {
        let answer = self.registry(INGEST, None).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        answer.json["keys"].as_array().cloned().unwrap_or_default()
    }
}

fn tags(team: &str) -> Value {
    json!({"org": "acme", "team": team, "cost_center": "CC-1", "environment": "prod"})
}

fn hash_of(created: &Value) -> String {
    sha256_hex(created["key"].as_str().expect("plain key").as_bytes())
}

fn error_code(answer: &Answer) -> &str {
    answer.json["error"]["code"].as_str().unwrap_or("?")
}

#[tokio::test]
async fn create_shows_the_key_once_and_reads_never_show_it() {
    let c = start();
    let created = c
        .create(json!({"key_id": "search-1", "tags": tags("search"),
            "limits": {"requests_per_minute": 60, "tokens_per_minute": 100000}}))
        .await;
    let plain = created["key"].as_str().expect("key").to_owned();
    // sk-aispend- and 40 hex characters: 160 bits.
    let random = plain.strip_prefix("sk-aispend-").expect("prefix");
    assert_eq!(random.len(), 40, "{plain}");
    assert!(random.bytes().all(|b| b.is_ascii_hexdigit()), "{plain}");
    assert_eq!(created["key_id"], json!("search-1"));
    assert_eq!(
        created["hint"],
        json!(format!("sk-aispend-…{}", &plain[plain.len() - 4..]))
    );
    assert_eq!(created["status"], json!("active"));
    assert_eq!(created["tags"], tags("search"));
    assert_eq!(
        created["limits"],
        json!({"requests_per_minute": 60, "tokens_per_minute": 100000})
    );
    assert_eq!(created["expires_at"], Value::Null);
    assert!(created["created_at"]
        .as_str()
        .and_then(parse_rfc3339_ms)
        .is_some());

    // A second key gets a different secret and a generated id.
    let other = c.create(json!({"tags": tags("search")})).await;
    assert_ne!(other["key"], created["key"]);
    let generated = other["key_id"].as_str().expect("id");
    assert!(
        generated.starts_with("key-") && generated.len() == 20,
        "{generated}"
    );

    for answer in [
        c.admin("GET", "/v1/keys", Value::Null).await,
        c.admin("GET", "/v1/keys/search-1", Value::Null).await,
    ] {
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        assert!(
            !answer.text.contains(&plain),
            "secret leaked: {}",
            answer.text
        );
        assert!(!answer.text.contains(&hash_of(&created)), "hash leaked");
        assert!(answer.text.contains("sk-aispend-…"), "{}", answer.text);
    }
    let list = c.admin("GET", "/v1/keys", Value::Null).await;
    let ids: Vec<&str> = list.json["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["key_id"].as_str())
        .collect();
    let mut sorted = vec!["search-1", generated];
    sorted.sort_unstable();
    assert_eq!(ids, sorted);
    let one = c.admin("GET", "/v1/keys/search-1", Value::Null).await;
    assert_eq!(one.json["hint"], created["hint"]);
    assert_eq!(one.json["limits"], created["limits"]);
}

async fn refused(c: &Collector, body: Value) -> Answer {
    let answer = c.admin("POST", "/v1/keys", body).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text);
    answer
}

#[tokio::test]
async fn issuance_refusals_name_the_field_or_tag() {
    let c = start_with(KeyPolicy::parse("org,team,cost_center,environment", "dev=30d").expect("p"));
    let answer = refused(
        &c,
        json!({"tags": {"org": "acme", "team": "x", "environment": "prod"}}),
    )
    .await;
    assert_eq!(error_code(&answer), "missing_tag");
    assert!(answer.text.contains("cost_center"), "{}", answer.text);

    let cases = [
        (json!({"tags": tags("x"), "owner": "bob"}), "`owner`"),
        (
            json!({"tags": {"org": "acme", "team": "a b", "cost_center": "c",
            "environment": "prod"}}),
            "tags.team",
        ),
        (
            json!({"tags": tags("x"), "limits": {"requests_per_minute": "many"}}),
            "limits.requests_per_minute",
        ),
        (
            json!({"tags": tags("x"), "limits": {"burst": 3}}),
            "limits.burst",
        ),
        (
            json!({"tags": tags("x"), "expires_at": "tomorrow"}),
            "expires_at",
        ),
        (
            json!({"tags": tags("x"), "expires_at": "2020-01-01T00:00:00Z"}),
            "expires_at",
        ),
        (json!({"tags": tags("x"), "key_id": "registry"}), "reserved"),
        (json!({"tags": tags("x"), "key_id": "no spaces"}), "key_id"),
    ];
    for (body, needle) in cases {
        let answer = refused(&c, body).await;
        assert_eq!(error_code(&answer), "bad_request");
        assert!(answer.text.contains(needle), "{needle}: {}", answer.text);
    }
    let answer = c
        .call(
            "POST",
            "/v1/keys",
            &[("authorization", ADMIN)],
            Value::String("{not json".into()),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);

    // Max lifetime per environment: a dev key beyond 30 days is refused; a
    // dev key without expires_at gets 30 days; prod keys are unbounded.
    let mut dev = tags("x");
    dev["environment"] = json!("dev");
    let too_late = format_rfc3339_ms(now_ms() + 31 * DAY_MS);
    let answer = refused(&c, json!({"tags": dev, "expires_at": too_late})).await;
    assert!(
        answer.text.contains("expires_at") && answer.text.contains("30d"),
        "{}",
        answer.text
    );
    let before = now_ms();
    let created = c.create(json!({"tags": dev})).await;
    let expires = created["expires_at"]
        .as_str()
        .and_then(parse_rfc3339_ms)
        .expect("a dev key gets an expiry");
    assert!((before + 30 * DAY_MS..=now_ms() + 30 * DAY_MS).contains(&expires));
    let id = created["key_id"].as_str().expect("id");
    // ... and cannot lose it in a PATCH.
    let answer = c
        .admin(
            "PATCH",
            &format!("/v1/keys/{id}"),
            json!({"expires_at": null}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text);
    assert!(answer.text.contains("expires_at"), "{}", answer.text);
    let prod = c.create(json!({"tags": tags("x")})).await;
    assert_eq!(prod["expires_at"], Value::Null);

    // A duplicate key_id is 409 and keeps the first key.
    c.create(json!({"key_id": "dup", "tags": tags("a")})).await;
    let answer = c
        .admin(
            "POST",
            "/v1/keys",
            json!({"key_id": "dup", "tags": tags("b")}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.text);
    let kept = c.admin("GET", "/v1/keys/dup", Value::Null).await;
    assert_eq!(kept.json["tags"]["team"], json!("a"));
}

#[tokio::test]
async fn patch_changes_limits_tags_status_and_expiry_live() {
    let c = start();
    let created = c
        .create(json!({"key_id": "k1", "tags": tags("search")}))
        .await;
    let hash = hash_of(&created);

    let answer = c
        .admin(
            "PATCH",
            "/v1/keys/k1",
            json!({"limits": {"requests_per_minute": 2}}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json["limits"], json!({"requests_per_minute": 2}));
    assert_eq!(answer.json["tags"], tags("search"), "untouched fields stay");
    let entry = c
        .entries()
        .await
        .into_iter()
        .find(|e| e["sha256"] == json!(hash));
    assert_eq!(
        entry.expect("listed")["limits"],
        json!({"requests_per_minute": 2}),
        "the registry carries the new limit at once"
    );

    let expires = format_rfc3339_ms(now_ms() + DAY_MS);
    let mut moved = tags("growth");
    moved["project"] = json!("chatbot");
    let answer = c
        .admin(
            "PATCH",
            "/v1/keys/k1",
            json!({"tags": moved, "expires_at": expires}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json["tags"], moved);
    assert_eq!(
        answer.json["expires_at"]
            .as_str()
            .and_then(parse_rfc3339_ms),
        parse_rfc3339_ms(&expires)
    );

    // Refusals: unknown field named, tags losing a required one, bad status,
    // unknown key.
    let answer = c.admin("PATCH", "/v1/keys/k1", json!({"name": "x"})).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.text.contains("`name`"), "{}", answer.text);
    let answer = c
        .admin("PATCH", "/v1/keys/k1", json!({"tags": {"org": "acme"}}))
        .await;
    assert_eq!(
        (answer.status, error_code(&answer)),
        (StatusCode::BAD_REQUEST, "missing_tag")
    );
    let answer = c
        .admin("PATCH", "/v1/keys/k1", json!({"status": "paused"}))
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.text.contains("status"), "{}", answer.text);
    let answer = c
        .admin("PATCH", "/v1/keys/nope", json!({"status": "revoked"}))
        .await;
    assert_eq!(
        (answer.status, error_code(&answer)),
        (StatusCode::NOT_FOUND, "not_found")
    );

    // Status: revoked leaves the registry, active brings it back.
    let answer = c
        .admin("PATCH", "/v1/keys/k1", json!({"status": "revoked"}))
        .await;
    assert_eq!(answer.json["status"], json!("revoked"));
    assert!(c.entries().await.is_empty());
    let answer = c
        .admin("PATCH", "/v1/keys/k1", json!({"status": "active"}))
        .await;
    assert_eq!(answer.json["status"], json!("active"));
    assert_eq!(c.entries().await.len(), 1);
}

#[tokio::test]
async fn rotation_keeps_the_old_secret_for_the_grace_and_revocation_ends_both() {
    let c = start();
    let created = c
        .create(json!({"key_id": "k1", "tags": tags("search")}))
        .await;
    let old = hash_of(&created);
    let answer = c
        .admin("POST", "/v1/keys/k1/rotate", json!({"grace_seconds": 3600}))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let new = hash_of(&answer.json);
    assert_ne!(new, old);
    assert_eq!(answer.json["key_id"], json!("k1"));
    let grace = answer.json["previous_secrets"]
        .as_array()
        .expect("previous");
    assert_eq!(grace.len(), 1);
    assert_eq!(grace[0]["hint"], created["hint"]);
    let entries = c.entries().await;
    let not_after = |hash: &str| {
        entries
            .iter()
            .find(|e| e["sha256"] == json!(hash))
            .map(|e| e["not_after"].clone())
    };
    assert_eq!(
        not_after(&new),
        Some(Value::Null),
        "the new secret has no end"
    );
    let old_end = not_after(&old)
        .and_then(|v| v.as_str().and_then(parse_rfc3339_ms))
        .expect("the old secret is listed with its grace end");
    assert!((now_ms() + 3_590_000..=now_ms() + 3_600_000).contains(&old_end));

    // Revoking revokes every secret, also the one in its grace period.
    let answer = c.admin("DELETE", "/v1/keys/k1", Value::Null).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json["status"], json!("revoked"));
    assert_eq!(answer.json["previous_secrets"], json!([]));
    assert!(c.entries().await.is_empty());
    // Still listed, for audit; a revoked key is not rotated.
    let list = c.admin("GET", "/v1/keys", Value::Null).await;
    assert_eq!(list.json["keys"][0]["status"], json!("revoked"));
    let answer = c.admin("POST", "/v1/keys/k1/rotate", Value::Null).await;
    assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.text);
    // Revoking again is harmless; unknown ids are 404.
    let answer = c.admin("DELETE", "/v1/keys/k1", Value::Null).await;
    assert_eq!(answer.status, StatusCode::OK);
    for (method, uri) in [
        ("DELETE", "/v1/keys/nope"),
        ("GET", "/v1/keys/nope"),
        ("POST", "/v1/keys/nope/rotate"),
    ] {
        let answer = c.admin(method, uri, Value::Null).await;
        assert_eq!(
            (answer.status, error_code(&answer)),
            (StatusCode::NOT_FOUND, "not_found"),
            "{method} {uri}"
        );
    }
    let answer = c
        .admin("POST", "/v1/keys/k1/rotate", json!({"grace_seconds": -5}))
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.text.contains("grace_seconds"), "{}", answer.text);
}

#[tokio::test]
async fn a_grace_period_ends_in_the_registry_on_time() {
    let c = start();
    let created = c
        .create(json!({"key_id": "k1", "tags": tags("search")}))
        .await;
    let old = hash_of(&created);
    let answer = c
        .admin("POST", "/v1/keys/k1/rotate", json!({"grace_seconds": 1}))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let first = c.registry(INGEST, None).await;
    assert!(first.text.contains(&old));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // No key changed, yet the cached snapshot is rebuilt at the grace end.
    let after = c.registry(INGEST, first.etag.as_deref()).await;
    assert_eq!(after.status, StatusCode::OK);
    assert!(!after.text.contains(&old), "{}", after.text);
    assert_ne!(after.etag, first.etag);
    // Rotating with no grace ends the old secret at once.
    let current = hash_of(&answer.json);
    c.admin("POST", "/v1/keys/k1/rotate", Value::Null).await;
    assert!(!c.registry(INGEST, None).await.text.contains(&current));
}

#[tokio::test]
async fn bulk_revocation_by_tag_offboards_a_team_in_one_call() {
    let c = start();
    for (id, team) in [("g1", "growth"), ("g2", "growth"), ("s1", "search")] {
        c.create(json!({"key_id": id, "tags": tags(team)})).await;
    }
    let mut other_org = tags("growth");
    other_org["org"] = json!("globex");
    c.create(json!({"key_id": "x1", "tags": other_org})).await;
    let answer = c
        .admin(
            "POST",
            "/v1/keys/revoke",
            json!({"tags": {"team": "growth", "org": "acme"}}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json, json!({"revoked": 2, "key_ids": ["g1", "g2"]}));
    let ids: Vec<String> = c
        .entries()
        .await
        .iter()
        .filter_map(|e| e["key_id"].as_str().map(str::to_owned))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(ids, vec!["s1", "x1"]);
    // Again: nothing left to revoke.
    let answer = c
        .admin(
            "POST",
            "/v1/keys/revoke",
            json!({"tags": {"team": "growth", "org": "acme"}}),
        )
        .await;
    assert_eq!(answer.json, json!({"revoked": 0, "key_ids": []}));
    for body in [json!({"tags": {}}), json!({}), json!({"team": "growth"})] {
        let answer = c.admin("POST", "/v1/keys/revoke", body.clone()).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            answer.text
        );
    }
}

#[tokio::test]
async fn the_registry_answers_304_for_its_etag_and_changes_with_content_only() {
    let c = start();
    let empty = c.registry(INGEST, None).await;
    assert_eq!(empty.status, StatusCode::OK);
    assert_eq!(empty.json["keys"], json!([]));
    let version = empty.json["version"].as_str().expect("version").to_owned();
    assert_eq!(empty.etag, Some(format!("\"{version}\"")));

    let created = c
        .create(json!({"key_id": "k1", "tags": tags("search"),
            "limits": {"tokens_per_minute": 500}}))
        .await;
    let full = c.registry(INGEST, empty.etag.as_deref()).await;
    assert_eq!(full.status, StatusCode::OK, "a change gives a new snapshot");
    assert_ne!(full.etag, empty.etag);
    assert_eq!(
        full.json["keys"],
        json!([{"sha256": hash_of(&created), "key_id": "k1", "tags": tags("search"),
            "limits": {"tokens_per_minute": 500}, "status": "active", "not_after": null}])
    );
    let same = c.registry(INGEST, full.etag.as_deref()).await;
    assert_eq!(same.status, StatusCode::NOT_MODIFIED);
    assert_eq!(same.text, "", "304 has no body");
    assert_eq!(same.etag, full.etag);
    // A write that changes nothing in the registry (a revoked key's limits)
    // keeps the version.
    c.create(json!({"key_id": "k2", "tags": tags("search")}))
        .await;
    c.admin("DELETE", "/v1/keys/k2", Value::Null).await;
    let back = c.registry(READ, full.etag.as_deref()).await;
    assert_eq!(
        back.status,
        StatusCode::NOT_MODIFIED,
        "same content, same version"
    );
    let back = c.registry(ADMIN, Some("\"stale\"")).await;
    assert_eq!(back.status, StatusCode::OK);
    assert_eq!(back.etag, full.etag);
}

#[tokio::test]
async fn roles_admin_writes_and_reads_keys_every_token_polls_the_registry() {
    let c = start();
    for token in [INGEST, READ] {
        for (method, uri, body) in [
            ("POST", "/v1/keys", json!({"tags": tags("x")})),
            ("GET", "/v1/keys", Value::Null),
            ("GET", "/v1/keys/k1", Value::Null),
            ("PATCH", "/v1/keys/k1", json!({"status": "revoked"})),
            ("DELETE", "/v1/keys/k1", Value::Null),
            ("POST", "/v1/keys/k1/rotate", Value::Null),
            ("POST", "/v1/keys/revoke", json!({"tags": {"team": "x"}})),
        ] {
            let answer = c.call(method, uri, &[("authorization", token)], body).await;
            assert_eq!(
                answer.status,
                StatusCode::FORBIDDEN,
                "{token} {method} {uri}"
            );
            assert_eq!(error_code(&answer), "insufficient_role");
        }
    }
    for headers in [vec![], vec![("authorization", "Bearer wrong")]] {
        let answer = c
            .call("GET", "/v1/keys/registry", &headers, Value::Null)
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        let answer = c.call("GET", "/v1/keys", &headers, Value::Null).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
    for token in [INGEST, READ, ADMIN] {
        assert_eq!(
            c.registry(token, None).await.status,
            StatusCode::OK,
            "{token}"
        );
    }
    assert!(c.admin("GET", "/v1/keys", Value::Null).await.json["keys"]
        .as_array()
        .is_some_and(Vec::is_empty));
}

#[tokio::test]
async fn every_key_change_is_in_the_audit_log_without_a_secret() {
    let c = start();
    let created = c
        .create(json!({"key_id": "k1", "tags": tags("search")}))
        .await;
    let patched = c
        .admin(
            "PATCH",
            "/v1/keys/k1",
            json!({"limits": {"requests_per_minute": 5}}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    let rotated = c
        .admin("POST", "/v1/keys/k1/rotate", json!({"grace_seconds": 60}))
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text);
    c.create(json!({"key_id": "k2", "tags": tags("growth")}))
        .await;
    let bulk = c
        .admin(
            "POST",
            "/v1/keys/revoke",
            json!({"tags": {"team": "growth"}}),
        )
        .await;
    assert_eq!(bulk.json["revoked"], json!(1), "{}", bulk.text);
    let revoked = c.admin("DELETE", "/v1/keys/k1", Value::Null).await;
    assert_eq!(revoked.status, StatusCode::OK);

    let audit = c.admin("GET", "/v1/audit?target=k1", Value::Null).await;
    assert_eq!(audit.status, StatusCode::OK, "{}", audit.text);
    let actions: Vec<&str> = audit.json["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .rev()
        .map(|e| e["action"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        actions,
        ["key.create", "key.update", "key.rotate", "key.revoke"]
    );
    let entries = &audit.json["entries"];
    assert_eq!(entries[0]["actor"], json!("bootstrap:admin"));
    assert_eq!(entries[0]["before"]["status"], json!("active"));
    assert_eq!(entries[0]["after"]["status"], json!("revoked"));
    assert_eq!(
        entries[2]["after"]["limits"]["requests_per_minute"],
        json!(5)
    );
    let bulk_entry = c.admin("GET", "/v1/audit?target=k2", Value::Null).await;
    assert_eq!(bulk_entry.json["entries"][0]["action"], json!("key.revoke"));

    // Neither plain key appears anywhere in the log, only hints.
    let all = c.admin("GET", "/v1/audit?format=csv", Value::Null).await;
    for secret in [&created["key"], &rotated.json["key"]] {
        let secret = secret.as_str().expect("plain key");
        assert!(!all.text.contains(secret), "a secret reached the audit log");
    }
}
