use super::*;
use crate::config::parse_sha256_hex;
use sha2::{Digest, Sha256};

fn sha_hex(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn digest(key: &str) -> [u8; 32] {
    parse_sha256_hex(&sha_hex(key)).unwrap()
}

fn entry(key: &str, key_id: &str, status: &str, not_after: &str) -> String {
    format!(
        r#"{{"sha256":"{}","key_id":"{key_id}","tags":{{"team":"search","org":"acme","region":"eu"}},"limits":{{"requests_per_minute":5,"tokens_per_minute":null}},"status":"{status}","not_after":{not_after}}}"#,
        sha_hex(key)
    )
}

fn doc(entries: &[String]) -> Vec<u8> {
    format!(r#"{{"version":"v7","keys":[{}]}}"#, entries.join(",")).into_bytes()
}

fn none(_: &[u8; 32], _: &str) -> bool {
    false
}

#[test]
fn a_snapshot_decodes_to_principals_by_hash() {
    let body = doc(&[
        entry("sk-a", "a", "active", "null"),
        entry("sk-old", "b", "active", r#""2026-01-02T03:04:05.5Z""#),
        entry("sk-new", "b", "active", "null"),
        entry("sk-gone", "c", "revoked", "null"),
    ]);
    let snap = from_collector(&body, 1 << 20).unwrap();
    assert_eq!((snap.version.as_str(), snap.keys), ("v7", 4));
    let schema = TagSchema::new(&[]);
    let reg = KeyRegistry::decode(&snap.lines, &schema, &none);
    assert_eq!(reg.len(), 4);
    let a = reg.get(&digest("sk-a")).unwrap().admit(0).unwrap();
    assert_eq!(&*a.key_id, "a");
    // Canonical tags by schema index, sorted; `region` is unknown here.
    assert_eq!(
        *a.tags,
        vec![(0, "acme".to_string()), (1, "search".to_string())]
    );
    assert_eq!(
        a.limits,
        Some(KeyLimits {
            requests_per_minute: Some(5),
            tokens_per_minute: None
        })
    );
    // A rotated key: two secrets, one key_id; equal tags share one set.
    let old = reg.get(&digest("sk-old")).unwrap();
    let new = reg.get(&digest("sk-new")).unwrap();
    assert_eq!(old.principal.key_id, new.principal.key_id);
    assert!(Rc::ptr_eq(&old.principal.tags, &new.principal.tags));
    // Decoded once: the next lookup answers the same entry.
    let again = reg.get(&digest("sk-old")).unwrap();
    assert!(Rc::ptr_eq(&old.principal.key_id, &again.principal.key_id));
    let grace_end = 1_767_323_045_500;
    assert_eq!(old.not_after_ms, Some(grace_end));
    assert!(old.admit(grace_end - 1).is_ok());
    assert_eq!(old.admit(grace_end), Err(Rejection::ExpiredKey));
    assert!(new.admit(grace_end + 1).is_ok());
    assert_eq!(
        reg.get(&digest("sk-gone")).unwrap().admit(0),
        Err(Rejection::RevokedKey)
    );
    assert!(reg.get(&digest("sk-unknown")).is_none());
    // With `region` in the schema it is kept.
    let schema = TagSchema::new(&["region".to_string()]);
    let reg = KeyRegistry::decode(&snap.lines, &schema, &none);
    let a = reg.get(&digest("sk-a")).unwrap();
    assert!(a.principal.tags.iter().any(|(_, v)| v == "eu"));
}

#[test]
fn static_config_wins_for_its_secret_and_key_id() {
    let body = doc(&[
        entry("sk-a", "a", "active", "null"),
        entry("sk-b", "static-b", "active", "null"),
    ]);
    let snap = from_collector(&body, 1 << 20).unwrap();
    let taken = digest("sk-a");
    let is_static = |d: &[u8; 32], id: &str| *d == taken || id == "static-b";
    let reg = KeyRegistry::decode(&snap.lines, &TagSchema::new(&[]), &is_static);
    assert!(reg.is_empty());
    assert_eq!(reg.shadowed, 2);
}

#[test]
fn a_bad_entry_refuses_the_whole_snapshot() {
    let good = entry("sk-a", "a", "active", "null");
    let bad_cases = [
        entry("sk-b", "b c", "active", "null"),
        entry("sk-b", "b", "paused", "null"),
        entry("sk-b", "b", "active", r#""tomorrow""#),
        entry("sk-b", "b", "active", "-5"),
        entry("sk-a", "dup", "active", "null"),
        good.replace(&sha_hex("sk-a"), "xyz"),
        good.replace("\"search\"", "\"bad value!\""),
        good.replace("\"search\"", "\"line\\nbreak\""),
        good.replace("\"team\"", "\"Team=x\""),
        good.replace("\"search\"", "5"),
    ];
    for bad in bad_cases {
        let body = doc(&[good.clone(), bad.clone()]);
        assert!(from_collector(&body, 1 << 20).is_err(), "accepted {bad}");
    }
    for body in [
        &b"not json"[..],
        br#"{"keys":[]}"#,
        br#"{"version":"","keys":[]}"#,
        br#"{"version":"a b","keys":[]}"#,
        br#"{"version":"v","keys":{}}"#,
    ] {
        assert!(from_collector(body, 1 << 20).is_err());
    }
    let body = doc(&[good]);
    let err = from_collector(&body, body.len() - 1).unwrap_err();
    assert!(err.contains("max_bytes"), "{err}");
    assert!(from_collector(&body, body.len()).is_ok());
    // An empty registry is a valid answer (every key revoked and dropped).
    let empty = from_collector(br#"{"version":3,"keys":[]}"#, 1024).unwrap();
    assert_eq!((empty.version.as_str(), empty.keys), ("3", 0));
}

#[test]
fn rfc3339_times() {
    assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(
        parse_rfc3339_ms("2026-12-04T08:51:00.123Z"),
        Some(1_796_374_260_123)
    );
    assert_eq!(
        parse_rfc3339_ms("2026-12-04T10:51:00+02:00"),
        parse_rfc3339_ms("2026-12-04T08:51:00Z")
    );
    assert_eq!(
        parse_rfc3339_ms("2026-12-04T08:51:00.1234567Z"),
        Some(1_796_374_260_123)
    );
    for bad in [
        "",
        "2026-12-04",
        "2026-13-04T08:51:00Z",
        "2026-12-04T08:51:00",
        "2026-12-04T08:51:00Zjunk",
        "2026-12-04T08:51:00.Z",
        "1969-12-31T23:59:59Z",
    ] {
        assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
    }
}

#[test]
fn the_view_decodes_only_when_the_version_changes() {
    let snap = from_collector(&doc(&[entry("sk-a", "a", "active", "null")]), 1 << 20).unwrap();
    let schema = TagSchema::new(&[]);
    let mut view = RegistryView::default();
    assert!(matches!(view.check_meta(None), Sync::Current));
    let meta = encode_meta(5, "v7");
    assert!(matches!(view.check_meta(Some(&meta)), Sync::NeedData));
    assert_eq!(view.fetched_at_ms(), Some(5));
    assert!(!view.take_data(None, &schema, &none), "evicted data");
    let data = encode_data(&snap.version, &snap.lines);
    assert!(view.take_data(Some(&data), &schema, &none));
    assert_eq!((view.version(), view.keys().len()), ("v7", 1));
    let decoded = Rc::as_ptr(&view.registry);
    assert!(view.keys().get(&digest("sk-a")).is_some());
    assert!(matches!(
        view.check_meta(Some(&encode_meta(9, "v7"))),
        Sync::Current
    ));
    assert_eq!(view.fetched_at_ms(), Some(9));
    // The same version again is not decoded again.
    assert!(view.take_data(Some(&data), &schema, &none));
    assert_eq!(Rc::as_ptr(&view.registry), decoded);
    view.invalidate();
    assert!(matches!(view.check_meta(Some(&meta)), Sync::NeedData));
    assert!(view.take_data(Some(&data), &schema, &none));
    assert_ne!(Rc::as_ptr(&view.registry), decoded, "decoded afresh");
    // A blanked meta (the data was evicted) keeps the copy.
    assert!(matches!(
        view.check_meta(Some(&encode_meta(0, ""))),
        Sync::Current
    ));
    assert_eq!(view.keys().len(), 1);
}

#[test]
fn tags_with_escapes_are_read_and_a_repeated_tag_is_refused() {
    // `\/` is a legal JSON escape of `/`, which the tag charset allows.
    let body = doc(&[entry("sk-a", "a", "active", "null").replace("\"acme\"", "\"ac\\/me\"")]);
    let snap = from_collector(&body, 1 << 20).unwrap();
    let reg = KeyRegistry::decode(&snap.lines, &TagSchema::new(&[]), &none);
    let a = reg.get(&digest("sk-a")).unwrap();
    assert!(a.principal.tags.iter().any(|(_, v)| v == "ac/me"));
    let twice = doc(&[entry("sk-a", "a", "active", "null").replace("\"org\"", "\"team\"")]);
    let err = from_collector(&twice, 1 << 20).unwrap_err();
    assert!(err.contains("twice"), "{err}");
}
