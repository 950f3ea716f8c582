use super::*;
use std::collections::HashSet;

#[test]
fn rfc3339_formats_known_instants() {
    let f = |ms| String::from_utf8(rfc3339_millis(ms).to_vec()).unwrap();
    assert_eq!(f(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(f(951_782_400_000), "2000-02-29T00:00:00.000Z");
    assert_eq!(f(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    assert_eq!(f(1_795_503_000_123), "2026-11-24T06:50:00.123Z");
    assert_eq!(f(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
}

/// The text kept for the last second is used only within that second:
/// calls in any order, forward and back in time, read as if computed anew.
#[test]
fn rfc3339_reuses_the_last_second_only_within_it() {
    let fresh = |ms: u64| {
        let mut text = String::from_utf8(rfc3339_seconds(ms / 1000).to_vec()).unwrap();
        text.replace_range(20..23, &format!("{:03}", ms % 1000));
        text
    };
    let mut ms = 1_795_503_599_990u64;
    for step in [0u64, 3, 7, 1, 999, 1000, 4, 86_399_000, 1] {
        ms += step;
        for t in [ms, ms - 1, ms + 1, ms - 1000, ms] {
            assert_eq!(
                String::from_utf8(rfc3339_millis(t).to_vec()).unwrap(),
                fresh(t),
                "{t}"
            );
        }
    }
}

#[test]
fn ids_are_32_lowercase_hex_and_unique() {
    let mut g = IdGen::new([1; 16]);
    let mut seen = HashSet::new();
    for _ in 0..100_000 {
        let id = g.next_id(1_795_503_000_123);
        assert!(id
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)));
        assert!(seen.insert(id));
    }
}

#[test]
fn hex_digits_match_format() {
    for x in [
        0u32,
        9,
        10,
        15,
        16,
        0xdead_beef,
        0x0123_4567,
        0x89ab_cdef,
        u32::MAX,
    ] {
        assert_eq!(hex8(x), *format!("{x:08x}").as_bytes(), "{x:#x}");
    }
    let mut g = IdGen::new([9; 16]);
    for t in [0, 1, 1_795_503_000_123, (1 << 48) - 1] {
        let id = g.next_id(t);
        assert_eq!(&id[..12], format!("{t:012x}").as_bytes());
    }
}

#[test]
fn different_seeds_give_different_ids() {
    let a = IdGen::new([1; 16]).next_id(5);
    let b = IdGen::new([2; 16]).next_id(5);
    assert_ne!(a, b);
    let c = IdGen::from_time(123_456_789, 1).next_id(5);
    let d = IdGen::from_time(123_456_790, 1).next_id(5);
    assert_ne!(c, d);
}

#[test]
fn ids_start_with_the_time_so_they_sort_by_it() {
    let mut g = IdGen::new([3; 16]);
    let early = g.next_id(1_795_503_000_123);
    let late = g.next_id(1_795_503_000_124);
    let later = IdGen::new([4; 16]).next_id(1_795_503_060_000);
    assert_eq!(
        &early[..12],
        format!("{:012x}", 1_795_503_000_123u64).as_bytes()
    );
    assert!(early < late && late < later);
}

#[test]
fn record_serializes_every_field() {
    let schema = TagSchema::new(&["region".to_string()]);
    let set: TagSet = vec![(1, "search".into()), (5, "eu \"west\"\n".into())];
    let labels = vec![("feature".to_string(), "summarize".to_string())];
    let r = Record {
        id: "0123456789abcdef0123456789abcdef",
        ts: 1_795_503_000_123,
        duration_ms: 12,
        ttft_ms: Some(5),
        gateway: "envoy",
        key_id: "demo-search",
        auth: "api_key",
        tags: Tags {
            schema: &schema,
            set: &set,
        },
        labels: &labels,
        provider: "openai",
        operation: "chat",
        model: Some("gpt-4o-mini-2024-07-18"),
        requested_model: Some("gpt-4o-mini"),
        stream: false,
        status: 200,
        error: None,
        input_tokens: 12,
        cached_input_tokens: 1,
        cache_write_input_tokens: 2,
        output_tokens: 7,
        reasoning_tokens: 3,
        reservation: None,
        credential_id: None,
    };
    let mut out = Vec::new();
    r.write_json(&mut out);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert!(
        v.get("reserved_usd").is_none(),
        "only strict calls carry it"
    );
    let mut strict = Vec::new();
    Record {
        reservation: Some((0.0125, 0.000_75)),
        ..r
    }
    .write_json(&mut strict);
    let s: serde_json::Value = serde_json::from_slice(&strict).unwrap();
    assert_eq!(s["reserved_usd"], 0.0125);
    // A call sent with a configured provider credential names its id.
    let mut with_id = Vec::new();
    Record {
        credential_id: Some("key_gateway"),
        tags: Tags {
            schema: &schema,
            set: &set,
        },
        ..r
    }
    .write_json(&mut with_id);
    let c: serde_json::Value = serde_json::from_slice(&with_id).unwrap();
    assert_eq!(c["credential_id"], "key_gateway");
    assert!(v.get("credential_id").is_none(), "only when configured");
    assert_eq!(s["settled_usd"], 0.000_75);
    assert_eq!(v["ts"], "2026-11-24T06:50:00.123Z");
    assert_eq!(
        v["tags"],
        serde_json::json!({"team":"search","region":"eu \"west\"\n"})
    );
    assert_eq!(v["labels"], serde_json::json!({"feature":"summarize"}));
    assert_eq!(v["error"], serde_json::Value::Null);
    assert_eq!(v["ttft_ms"], 5);
    assert_eq!(v["reasoning_tokens"], 3);
    assert_eq!(v.as_object().unwrap().len(), 21);
}

#[test]
fn a_kept_principal_part_writes_the_same_record() {
    let schema = TagSchema::new(&[]);
    let route = crate::usage::detect("/v1/chat/completions").unwrap();
    let request = crate::usage::RequestInfo::default();
    let usage = Usage {
        input_tokens: 12,
        output_tokens: 5,
        model: Some("gpt-4o-mini".into()),
        ..Usage::default()
    };
    let principal = |key: &str, auth, team: &str| Principal {
        key_id: Rc::from(key),
        auth,
        tags: Rc::new(vec![(0, "acme".into()), (1, team.into())]),
        limits: None,
    };
    let search = principal("demo-search", AuthKind::ApiKey, "search");
    let growth = principal("demo-growth", AuthKind::ApiKey, "gro\"wth");
    let jwt = principal("jwt:alice", AuthKind::Jwt, "search");
    let cache = PrincipalJson::default();
    let write = |p: &Principal, cache: Option<&PrincipalJson>| {
        let call = Call {
            id: "0123456789abcdef0123456789abcdef",
            start_ms: 1_795_503_000_123,
            end_ms: 1_795_503_000_223,
            ttft_ms: Some(40),
            gateway: "envoy",
            schema: &schema,
            principal: p,
            labels: &[],
            route: &route,
            request: &request,
            status: 200,
            usage: &usage,
            principal_json: cache,
            reservation: None,
            credential_id: None,
        };
        let mut out = Vec::new();
        call.write_record(&mut out);
        String::from_utf8(out).unwrap()
    };
    for p in [&search, &growth, &search, &jwt, &growth, &jwt] {
        let plain = write(p, None);
        assert_eq!(write(p, Some(&cache)), plain, "first use and reuse");
        assert_eq!(write(p, Some(&cache)), plain);
        let v: serde_json::Value = serde_json::from_str(&plain).unwrap();
        assert_eq!(v["key_id"], &*p.key_id);
        assert_eq!(v["tags"]["team"], p.tags[1].1.as_str());
    }
    // Same key id text, another registry (a new config): not the kept part.
    let reloaded = principal("demo-search", AuthKind::ApiKey, "other");
    assert!(write(&reloaded, Some(&cache)).contains("\"team\":\"other\""));
}
