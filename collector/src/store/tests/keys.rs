//! The virtual key part of the store suite (CONTRACTS §8): run on every
//! backend by `store_suite!`.

use std::collections::BTreeMap;

use crate::domain::keys::{Key, KeyStatus, Limits, Secret};
use crate::store::{Expect, KeyWrite, SaveKeys, Store};

const NOW: i64 = 1_800_000_000_000;

fn key(id: &str, team: &str) -> Key {
    Key {
        key_id: id.to_owned(),
        tags: BTreeMap::from([
            ("org".to_owned(), "acme".to_owned()),
            ("team".to_owned(), team.to_owned()),
        ]),
        limits: Limits {
            requests_per_minute: Some(60),
            tokens_per_minute: None,
        },
        status: KeyStatus::Active,
        created_at_ms: NOW,
        updated_at_ms: NOW,
        expires_at_ms: Some(NOW + 86_400_000),
        revision: 1,
        secrets: vec![Secret::of_plain(&format!("sk-aispend-{id}-secret1"), NOW)],
    }
}

fn new(key: &Key) -> KeyWrite {
    KeyWrite {
        key: key.clone(),
        expect: Expect::New,
    }
}

fn change(before: &Key, after: &Key) -> KeyWrite {
    KeyWrite {
        key: after.clone(),
        expect: Expect::Revision(before.revision),
    }
}

pub async fn keys_round_trip_and_change_by_revision(store: &dyn Store) {
    assert_eq!(store.keys_revision().await.expect("revision"), 0);
    assert!(store.list_keys().await.expect("list").is_empty());
    let b = key("k-b", "growth");
    let a = key("k-a", "search");
    assert_eq!(
        store.save_keys(vec![new(&b), new(&a)]).await.expect("save"),
        SaveKeys::Saved
    );
    assert_eq!(store.keys_revision().await.expect("revision"), 1);
    assert_eq!(
        store.get_key("k-a".into()).await.expect("get"),
        Some(a.clone())
    );
    assert_eq!(store.get_key("nope".into()).await.expect("get"), None);
    assert_eq!(
        store.list_keys().await.expect("list"),
        vec![a.clone(), b.clone()],
        "sorted by id, every field round-trips"
    );

    // Rotation: the new secret first, the old one with its grace end.
    let rotated = a.rotated(
        Secret::of_plain("sk-aispend-k-a-secret2", NOW + 5),
        60,
        NOW + 5,
    );
    assert_eq!(
        store
            .save_keys(vec![change(&a, &rotated)])
            .await
            .expect("rotate"),
        SaveKeys::Saved
    );
    let stored = store
        .get_key("k-a".into())
        .await
        .expect("get")
        .expect("k-a");
    assert_eq!(stored, rotated);
    assert_eq!(stored.secrets.len(), 2);
    assert_eq!(stored.secrets[1].not_after_ms, Some(NOW + 5 + 60_000));
    assert_eq!(store.keys_revision().await.expect("revision"), 2);

    // A write from a stale read, or of a key that does not exist, or a
    // create of an existing id: refused, and nothing of the batch is kept.
    let stale = a.revoked(NOW + 6);
    let revoke_b = b.revoked(NOW + 6);
    assert_eq!(
        store
            .save_keys(vec![change(&b, &revoke_b), change(&a, &stale)])
            .await
            .expect("stale"),
        SaveKeys::Changed("k-a".into())
    );
    assert_eq!(
        store.get_key("k-b".into()).await.expect("get"),
        Some(b.clone()),
        "the first write of a refused batch is rolled back"
    );
    let ghost = key("k-ghost", "x");
    assert_eq!(
        store
            .save_keys(vec![change(&ghost, &ghost)])
            .await
            .expect("ghost"),
        SaveKeys::Changed("k-ghost".into())
    );
    let clash = key("k-b", "other");
    assert_eq!(
        store.save_keys(vec![new(&clash)]).await.expect("clash"),
        SaveKeys::Exists("k-b".into())
    );
    assert_eq!(
        store.keys_revision().await.expect("revision"),
        2,
        "nothing saved"
    );

    // Revocation keeps the key listed, with only its current secret.
    let revoked = rotated.revoked(NOW + 7);
    let revoke_b = b.revoked(NOW + 7);
    assert_eq!(
        store
            .save_keys(vec![change(&rotated, &revoked), change(&b, &revoke_b)])
            .await
            .expect("revoke"),
        SaveKeys::Saved
    );
    let listed = store.list_keys().await.expect("list");
    assert_eq!(listed, vec![revoked.clone(), revoke_b]);
    assert_eq!(listed[0].status, KeyStatus::Revoked);
    assert_eq!(listed[0].secrets.len(), 1);
    assert_eq!(store.keys_revision().await.expect("revision"), 3);

    // Changing tags, limits and expiry; clearing the expiry.
    let edited = Key {
        tags: BTreeMap::from([("team".to_owned(), "infra".to_owned())]),
        limits: Limits::default(),
        expires_at_ms: None,
        status: KeyStatus::Active,
        ..revoked.touched(NOW + 8)
    };
    assert_eq!(
        store
            .save_keys(vec![change(&revoked, &edited)])
            .await
            .expect("edit"),
        SaveKeys::Saved
    );
    assert_eq!(
        store.get_key("k-a".into()).await.expect("get"),
        Some(edited)
    );
}

pub async fn many_keys_in_one_write(store: &dyn Store) {
    let keys: Vec<Key> = (0..500).map(|i| key(&format!("k{i:04}"), "bulk")).collect();
    let writes = keys.iter().map(new).collect();
    assert_eq!(
        store.save_keys(writes).await.expect("save"),
        SaveKeys::Saved
    );
    let listed = store.list_keys().await.expect("list");
    assert_eq!(listed, keys);
    assert_eq!(store.keys_revision().await.expect("revision"), 1);
}
