use std::collections::BTreeMap;

use serde_json::json;

use super::registry::Snapshot;
use super::*;

const NOW: i64 = 1_800_000_000_000;
const DAY: i64 = 86_400_000;

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn full_tags() -> BTreeMap<String, String> {
    tags(&[
        ("org", "acme"),
        ("team", "search"),
        ("cost_center", "CC-1"),
        ("environment", "prod"),
    ])
}

fn key(id: &str, plain: &str) -> Key {
    Key {
        key_id: id.to_owned(),
        tags: full_tags(),
        limits: Limits::default(),
        status: KeyStatus::Active,
        created_at_ms: NOW,
        updated_at_ms: NOW,
        expires_at_ms: None,
        revision: 1,
        secrets: vec![Secret::of_plain(plain, NOW)],
    }
}

#[test]
fn secrets_are_hashed_and_hinted_by_their_last_four() {
    let s = Secret::of_plain("sk-aispend-abcdef0123", NOW);
    assert_eq!(s.sha256, sha256_hex(b"sk-aispend-abcdef0123"));
    assert_eq!(s.sha256.len(), 64);
    assert_eq!(s.hint(), "sk-aispend-…0123");
    // A known vector: sha256("abc").
    assert_eq!(
        sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn new_key_bodies_refuse_unknown_fields_and_bad_values_naming_them() {
    let ok = parse_new_key(&json!({"tags": {"team": "a"}, "key_id": "k-1",
        "limits": {"requests_per_minute": 5}, "expires_at": "2030-01-01T00:00:00Z"}))
    .expect("valid");
    assert_eq!(ok.key_id.as_deref(), Some("k-1"));
    assert_eq!(ok.limits.requests_per_minute, Some(5));
    assert_eq!(ok.limits.tokens_per_minute, None);
    assert!(ok.expires_at_ms.is_some());
    let refused = |body: serde_json::Value, needle: &str| {
        let KeyError::Invalid(message) = parse_new_key(&body).expect_err("must refuse") else {
            panic!("expected Invalid for {body}");
        };
        assert!(message.contains(needle), "{message} lacks {needle}");
    };
    refused(json!({"tags": {"team": "a"}, "colour": 1}), "`colour`");
    refused(
        json!({"tags": {"team": "a"}, "limits": {"rpm": 1}}),
        "limits.rpm",
    );
    refused(
        json!({"tags": {"team": "a"}, "limits": {"tokens_per_minute": 0}}),
        "limits.tokens_per_minute",
    );
    refused(json!({"tags": {"team": "a b"}}), "tags.team");
    refused(json!({"tags": {"Team": "a"}}), "tags");
    refused(json!({}), "`tags` is required");
    refused(json!({"tags": {"team": "a"}, "key_id": "a b"}), "key_id");
    refused(
        json!({"tags": {"team": "a"}, "key_id": "registry"}),
        "reserved",
    );
    refused(
        json!({"tags": {"team": "a"}, "expires_at": "soon"}),
        "expires_at",
    );
    refused(json!([1]), "JSON object");
}

#[test]
fn patches_only_carry_what_is_given_and_null_clears() {
    let p = parse_patch(&json!({"status": "revoked"})).expect("valid");
    assert_eq!(p.status, Some(KeyStatus::Revoked));
    assert_eq!((p.tags, p.limits, p.expires_at_ms), (None, None, None));
    let p = parse_patch(&json!({"expires_at": null, "limits": null})).expect("valid");
    assert_eq!(p.expires_at_ms, Some(None));
    assert_eq!(p.limits, Some(Limits::default()));
    let err = parse_patch(&json!({"status": "paused"})).expect_err("bad status");
    assert!(matches!(err, KeyError::Invalid(m) if m.contains("status")));
    let err = parse_patch(&json!({"key_id": "x"})).expect_err("key_id is not patchable");
    assert!(matches!(err, KeyError::Invalid(m) if m.contains("`key_id`")));
}

#[test]
fn grace_and_tag_filters_are_bounded() {
    assert_eq!(parse_grace_seconds(&json!(null)), Ok(0));
    assert_eq!(parse_grace_seconds(&json!({})), Ok(0));
    assert_eq!(parse_grace_seconds(&json!({"grace_seconds": 60})), Ok(60));
    assert!(parse_grace_seconds(&json!({"grace_seconds": -1})).is_err());
    assert!(parse_grace_seconds(&json!({"grace_seconds": MAX_GRACE_SECONDS + 1})).is_err());
    assert!(parse_grace_seconds(&json!({"grace": 1})).is_err());
    assert_eq!(
        parse_tag_filter(&json!({"tags": {"team": "growth"}})),
        Ok(tags(&[("team", "growth")]))
    );
    assert!(
        parse_tag_filter(&json!({"tags": {}})).is_err(),
        "empty filter"
    );
    assert!(parse_tag_filter(&json!({"team": "growth"})).is_err());
}

#[test]
fn policy_requires_tags_and_bounds_lifetime_per_environment() {
    let policy = KeyPolicy::parse("org,team", "dev=30d, staging=12h").expect("policy");
    assert_eq!(policy.required_tags, vec!["org", "team"]);
    assert_eq!(policy.max_lifetime_ms.get("dev"), Some(&(30 * DAY)));
    let err = policy
        .check(&tags(&[("org", "a")]), None, NOW, true)
        .expect_err("team missing");
    assert!(
        matches!(&err, KeyError::MissingTag(m) if m.contains("`team`")),
        "{err:?}"
    );
    let prod = tags(&[("org", "a"), ("team", "b"), ("environment", "prod")]);
    assert_eq!(policy.check(&prod, None, NOW, true), Ok(None), "no bound");
    let dev = tags(&[("org", "a"), ("team", "b"), ("environment", "dev")]);
    assert_eq!(
        policy.check(&dev, None, NOW, true),
        Ok(Some(NOW + 30 * DAY)),
        "a dev key without expires_at gets the longest lifetime"
    );
    assert_eq!(
        policy.check(&dev, Some(NOW + DAY), NOW, true),
        Ok(Some(NOW + DAY))
    );
    assert!(policy.check(&dev, Some(NOW + 31 * DAY), NOW, true).is_err());
    assert!(
        policy.check(&dev, None, NOW, false).is_err(),
        "a change may not remove the expiry"
    );
    assert!(
        policy.check(&prod, Some(NOW - 1), NOW, true).is_err(),
        "past"
    );
    assert!(KeyPolicy::parse("Org", "").is_err());
    assert!(KeyPolicy::parse("", "dev").is_err());
    assert!(KeyPolicy::parse("", "dev=30x").is_err());
    assert!(KeyPolicy::parse("", "dev=0d").is_err());
    assert_eq!(
        KeyPolicy::parse(" ", "").expect("none").required_tags,
        Vec::<String>::new()
    );
    assert_eq!(
        KeyPolicy::default().required_tags,
        vec!["org", "team", "cost_center", "environment"]
    );
    assert_eq!(parse_duration_ms("90m"), Some(90 * 60_000));
    assert_eq!(parse_duration_ms("3600s"), Some(3_600_000));
}

#[test]
fn rotation_keeps_the_old_secret_until_the_grace_ends_and_revocation_drops_it() {
    let k = key("k1", "sk-aispend-old1");
    let fresh = Secret::of_plain("sk-aispend-new2", NOW + 10);
    let r = k.rotated(fresh.clone(), 60, NOW + 10);
    assert_eq!(r.revision, 2);
    assert_eq!(r.current(), Some(&fresh));
    assert_eq!(r.secrets.len(), 2);
    assert_eq!(r.secrets[1].not_after_ms, Some(NOW + 10 + 60_000));
    // A second rotation with no grace ends every earlier secret now.
    let again = r.rotated(Secret::of_plain("sk-aispend-new3", NOW + 20), 0, NOW + 20);
    assert_eq!(again.secrets.len(), 1);
    // Revoking drops the secret in grace, keeps the current one (for an undo).
    let revoked = r.revoked(NOW + 20);
    assert_eq!(revoked.status, KeyStatus::Revoked);
    assert_eq!(revoked.secrets, vec![fresh]);
    // Housekeeping: a grace that ended is dropped on the next write.
    assert_eq!(r.touched(NOW + 10 + 60_000).secrets.len(), 1);
}

#[test]
fn registry_lists_each_valid_secret_and_leaves_out_revoked_and_expired() {
    let mut expiring = key("b-exp", "sk-aispend-exp1");
    expiring.expires_at_ms = Some(NOW + DAY);
    let rotated = key("a-rot", "sk-aispend-rot1").rotated(
        Secret::of_plain("sk-aispend-rot2", NOW),
        3600,
        NOW,
    );
    let revoked = key("c-rev", "sk-aispend-rev1").revoked(NOW);
    let mut expired = key("d-old", "sk-aispend-old1");
    expired.expires_at_ms = Some(NOW - 1);
    let keys = vec![expiring, rotated, revoked, expired];
    let snap = Snapshot::build(&keys, NOW);
    assert_eq!(snap.entries, 3);
    assert_eq!(snap.valid_until_ms, Some(NOW + 3_600_000));
    let body: serde_json::Value = serde_json::from_slice(&snap.body).expect("json");
    assert_eq!(body["version"], json!(snap.version));
    let entries = body["keys"].as_array().expect("keys");
    let ids: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["key_id"].as_str())
        .collect();
    assert!(
        !ids.contains(&"c-rev") && !ids.contains(&"d-old"),
        "{ids:?}"
    );
    let old = entries
        .iter()
        .find(|e| e["sha256"] == json!(sha256_hex(b"sk-aispend-rot1")))
        .expect("old secret listed during its grace");
    assert_eq!(old["not_after"], json!("2027-01-15T09:00:00Z"));
    assert_eq!(old["status"], json!("active"));
    assert_eq!(old["tags"]["team"], json!("search"));
    assert_eq!(old["limits"], json!({}));
    // Sorted by sha256: the same keys in another order give the same bytes.
    let mut shuffled = keys.clone();
    shuffled.reverse();
    assert_eq!(Snapshot::build(&shuffled, NOW), snap);
    // Any change of content changes the version; after the grace the old
    // secret is gone.
    let later = Snapshot::build(&keys, NOW + 3_600_000);
    assert_eq!(later.entries, 2);
    assert_ne!(later.version, snap.version);
    assert_eq!(snap.etag(), format!("\"{}\"", snap.version));
    assert!(snap.matches(&snap.etag()));
    assert!(snap.matches(&format!("W/{}, \"x\"", snap.etag())));
    assert!(snap.matches("*"));
    assert!(!snap.matches("\"other\""));
    let empty = Snapshot::build(&[], NOW);
    assert_eq!(
        String::from_utf8(empty.body).expect("utf-8"),
        format!("{{\"version\":\"{}\",\"keys\":[]}}", empty.version)
    );
}
