//! Virtual keys in the store (CONTRACTS §8), written once for both backends:
//! what a write asks for, what it answers, and how the stored rows become
//! `Key`s. Tables (`schema.sql`, `0005_keys.sql`): `api_keys` (one row per
//! key, tags and limits as canonical JSON), `api_key_secrets` (sha256 of
//! every secret still valid, never the plain key) and `api_keys_state`
//! (one row: a counter every key write bumps, so a replica can tell cheaply
//! whether its cached registry snapshot is still current).

use std::collections::BTreeMap;

use crate::domain::keys::{Key, KeyStatus, Limits, Secret};
use crate::store::StoreError;

/// What the stored key must be before this write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// No key with this id exists yet.
    New,
    /// The stored key is at this revision (it was read, then changed).
    Revision(i64),
}

/// One key written wholesale: its row and its set of secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyWrite {
    pub key: Key,
    pub expect: Expect,
}

/// What `save_keys` did. Anything but `Saved` stored nothing at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaveKeys {
    Saved,
    /// A key created with `Expect::New` already exists.
    Exists(String),
    /// A key written with `Expect::Revision` is gone or was changed since.
    Changed(String),
}

pub(crate) const KEY_COLUMNS: &str =
    "key_id, tags, limits, status, created_at_ms, updated_at_ms, expires_at_ms, revision";
pub(crate) const SECRET_COLUMNS: &str = "key_id, sha256, last4, created_at_ms, not_after_ms";
/// Secrets in the order `Key::secrets` keeps: current first, then by end.
pub(crate) const SECRET_ORDER: &str =
    "key_id, (not_after_ms IS NOT NULL), not_after_ms DESC, sha256";

/// A key row before its text columns are decoded.
pub(crate) struct KeyRow {
    pub key_id: String,
    pub tags: String,
    pub limits: String,
    pub status: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub revision: i64,
}

impl KeyRow {
    /// The columns of `key`, in `KEY_COLUMNS` order.
    pub(crate) fn of(key: &Key) -> Self {
        KeyRow {
            key_id: key.key_id.clone(),
            tags: crate::domain::record::map_to_json(&key.tags),
            limits: serde_json::to_string(&key.limits).unwrap_or_else(|_| String::from("{}")),
            status: key.status.as_str().to_owned(),
            created_at_ms: key.created_at_ms,
            updated_at_ms: key.updated_at_ms,
            expires_at_ms: key.expires_at_ms,
            revision: key.revision,
        }
    }

    fn decode(self, secrets: Vec<Secret>) -> Result<Key, StoreError> {
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            StoreError::invalid(format!(
                "key {}: stored {what} is not valid: {e}",
                self.key_id
            ))
        };
        let tags: BTreeMap<String, String> =
            serde_json::from_str(&self.tags).map_err(|e| bad("tags", &e))?;
        let limits: Limits = serde_json::from_str(&self.limits).map_err(|e| bad("limits", &e))?;
        let status = KeyStatus::parse(&self.status).ok_or_else(|| bad("status", &self.status))?;
        Ok(Key {
            key_id: self.key_id,
            tags,
            limits,
            status,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
            expires_at_ms: self.expires_at_ms,
            revision: self.revision,
            secrets,
        })
    }
}

/// Joins key rows (any order) with secret rows `(key_id, secret)` in
/// `SECRET_ORDER`; the keys come back in the order of `rows`.
pub(crate) fn assemble(
    rows: Vec<KeyRow>,
    secrets: Vec<(String, Secret)>,
) -> Result<Vec<Key>, StoreError> {
    let mut by_key: BTreeMap<String, Vec<Secret>> = BTreeMap::new();
    for (key_id, secret) in secrets {
        by_key.entry(key_id).or_default().push(secret);
    }
    rows.into_iter()
        .map(|row| {
            let secrets = by_key.remove(&row.key_id).unwrap_or_default();
            row.decode(secrets)
        })
        .collect()
}
