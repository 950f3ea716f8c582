//! The key registry gateways poll (`GET /v1/keys/registry`, CONTRACTS §8):
//! one entry per secret that opens the gateway now, in a canonical order, and
//! a version derived from the content alone, so every replica answers the
//! same version (and `ETag`) for the same keys.
//!
//! Revoked keys, expired keys and secrets whose grace has ended are left out
//! (a gateway refuses a key it does not find, 401): the snapshot only grows
//! with the keys that work. `not_after` lets a gateway refuse an expiring
//! key on time even while it cannot fetch a newer snapshot.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{sha256_hex, Key, KeyStatus, Limits};
use crate::domain::time::format_rfc3339_ms;

/// One valid secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry<'a> {
    pub sha256: &'a str,
    pub key_id: &'a str,
    pub tags: &'a BTreeMap<String, String>,
    pub limits: Limits,
    pub status: KeyStatus,
    /// RFC 3339: the key's `expires_at` or the secret's grace end, whichever
    /// comes first; null when neither.
    pub not_after: Option<String>,
}

/// A serialized snapshot, ready to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// 32 hex characters: the start of the sha256 of the `keys` array.
    pub version: String,
    /// `{"version":…,"keys":[…]}`.
    pub body: Vec<u8>,
    /// Entries in it.
    pub entries: usize,
    /// When an entry in it stops being valid (its `not_after`): the
    /// snapshot must be rebuilt then even if no key changed.
    pub valid_until_ms: Option<i64>,
}

impl Snapshot {
    /// The snapshot of `keys` at `now`.
    pub fn build(keys: &[Key], now_ms: i64) -> Snapshot {
        let mut valid_until_ms: Option<i64> = None;
        let mut entries = Vec::new();
        for key in keys {
            if key.status != KeyStatus::Active || key.expires_at_ms.is_some_and(|e| e <= now_ms) {
                continue;
            }
            for secret in key.secrets.iter().filter(|s| s.valid_at(now_ms)) {
                let not_after = match (key.expires_at_ms, secret.not_after_ms) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                if let Some(end) = not_after {
                    valid_until_ms = Some(valid_until_ms.map_or(end, |v| v.min(end)));
                }
                entries.push(Entry {
                    sha256: &secret.sha256,
                    key_id: &key.key_id,
                    tags: &key.tags,
                    limits: key.limits,
                    status: KeyStatus::Active,
                    not_after: not_after.map(format_rfc3339_ms),
                });
            }
        }
        entries.sort_unstable_by(|a, b| a.sha256.cmp(b.sha256));
        // Serializing plain strings, maps and integers cannot fail; an empty
        // array keeps the no-panic rule anyway.
        let keys_json = serde_json::to_vec(&entries).unwrap_or_else(|_| b"[]".to_vec());
        let version: String = sha256_hex(&keys_json).chars().take(32).collect();
        let mut body = Vec::with_capacity(keys_json.len() + 64);
        body.extend_from_slice(b"{\"version\":\"");
        body.extend_from_slice(version.as_bytes());
        body.extend_from_slice(b"\",\"keys\":");
        body.extend_from_slice(&keys_json);
        body.push(b'}');
        Snapshot {
            version,
            body,
            entries: entries.len(),
            valid_until_ms,
        }
    }

    /// The `ETag` header value: the version, quoted.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }

    /// Whether an `If-None-Match` header value names this snapshot (a list
    /// of entity tags, weak or strong, or `*`).
    pub fn matches(&self, if_none_match: &str) -> bool {
        if_none_match.split(',').map(str::trim).any(|tag| {
            tag == "*" || tag.strip_prefix("W/").unwrap_or(tag).trim_matches('"') == self.version
        })
    }
}
