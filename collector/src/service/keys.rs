//! Virtual keys (CONTRACTS §8): issue, read, change, rotate and revoke keys,
//! and the registry snapshot gateways poll.
//!
//! Every change of a key goes through `commit`, which has the actor, the
//! action and each key before and after at hand: the one place where a
//! change is stored, logged (never a secret) and, once the audit log exists,
//! appended to it.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::domain::keys::registry::Snapshot;
use crate::domain::keys::{
    parse_grace_seconds, parse_new_key, parse_patch, parse_tag_filter, Key, KeyError, KeyPolicy,
    KeyStatus, Limits, Secret, KEY_PREFIX,
};
use crate::domain::time::{format_rfc3339_ms, now_ms};
use crate::error::AppError;
use crate::service::access::RequestContext;
use crate::service::audit;
use crate::state::AppState;
use crate::store::{Expect, KeyWrite, SaveKeys, StoreError};

/// Random bytes in a plain key: 160 bits, shown as 40 hex characters.
pub const SECRET_BYTES: usize = 20;
/// Random bytes in a generated key id (`key-` and 16 hex characters).
const KEY_ID_BYTES: usize = 8;

/// The key service's own state: the issuance policy (from the settings) and
/// the registry snapshot cache.
pub struct Keys {
    pub policy: KeyPolicy,
    registry: Mutex<Option<Cached>>,
}

/// A snapshot and what it was built from: the store's key revision, and
/// until when (the first `not_after` in it) it stays right.
struct Cached {
    revision: i64,
    snapshot: Arc<Snapshot>,
}

impl Keys {
    pub fn new(policy: KeyPolicy) -> Self {
        Self {
            policy,
            registry: Mutex::new(None),
        }
    }
}

impl Default for Keys {
    fn default() -> Self {
        Self::new(KeyPolicy::default())
    }
}

/// A secret still in its rotation grace period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreviousSecret {
    pub hint: String,
    pub not_after: String,
}

/// A key as the API answers it: never a secret, never a hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyView {
    pub key_id: String,
    /// `sk-aispend-…` and the current secret's last 4 characters.
    pub hint: String,
    pub tags: std::collections::BTreeMap<String, String>,
    pub limits: Limits,
    pub status: KeyStatus,
    pub created_at: String,
    pub updated_at: String,
    pub expires_at: Option<String>,
    /// Secrets rotated out that still work until their `not_after`.
    pub previous_secrets: Vec<PreviousSecret>,
}

impl KeyView {
    pub fn of(key: &Key) -> Self {
        let now = now_ms();
        KeyView {
            key_id: key.key_id.clone(),
            hint: key.current().map(Secret::hint).unwrap_or_default(),
            tags: key.tags.clone(),
            limits: key.limits,
            status: key.status,
            created_at: format_rfc3339_ms(key.created_at_ms),
            updated_at: format_rfc3339_ms(key.updated_at_ms),
            expires_at: key.expires_at_ms.map(format_rfc3339_ms),
            previous_secrets: key
                .secrets
                .iter()
                .filter(|s| s.valid_at(now))
                .filter_map(|s| {
                    s.not_after_ms.map(|end| PreviousSecret {
                        hint: s.hint(),
                        not_after: format_rfc3339_ms(end),
                    })
                })
                .collect(),
        }
    }
}

/// The answer that carries a plain key: creation and rotation only.
#[derive(Debug, Clone, Serialize)]
pub struct WithSecret {
    /// The plain key, shown in this answer only.
    pub key: String,
    #[serde(flatten)]
    pub view: KeyView,
}

#[derive(Debug, Serialize)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

/// What a bulk revocation did.
#[derive(Debug, Serialize)]
pub struct Revoked {
    /// Keys that were active and are now revoked.
    pub revoked: usize,
    pub key_ids: Vec<String>,
}

/// One key before (`None`: new) and after a change.
struct Change {
    before: Option<Key>,
    after: Key,
}

impl From<KeyError> for AppError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Invalid(m) => AppError::BadRequest(m),
            KeyError::MissingTag(m) => AppError::MissingTag(m),
        }
    }
}

/// Stores every change in one transaction, then logs it. THE place every
/// key change passes: the audit log entry (actor, action, target, before,
/// after) is appended here.
async fn commit(
    state: &AppState,
    ctx: &RequestContext,
    action: &str,
    changes: Vec<Change>,
) -> Result<(), AppError> {
    if changes.is_empty() {
        return Ok(());
    }
    let writes = changes
        .iter()
        .map(|c| KeyWrite {
            key: c.after.clone(),
            expect: c
                .before
                .as_ref()
                .map_or(Expect::New, |b| Expect::Revision(b.revision)),
        })
        .collect();
    let saved = state
        .store
        .save_keys(writes)
        .await
        .inspect_err(|e| state.count_store_error(e))?;
    match saved {
        SaveKeys::Saved => {}
        SaveKeys::Exists(id) => {
            return Err(AppError::Conflict(format!(
                "a key with key_id {id:?} already exists"
            )))
        }
        SaveKeys::Changed(id) => {
            return Err(AppError::Conflict(format!(
                "key {id:?} was changed by another request at the same time; retry"
            )))
        }
    }
    for change in &changes {
        let before = change
            .before
            .as_ref()
            .map(|b| serde_json::to_value(KeyView::of(b)))
            .transpose()
            .map_err(|e| AppError::Store(StoreError::internal(format!("key view: {e}"))))?;
        let after = serde_json::to_value(KeyView::of(&change.after))
            .map_err(|e| AppError::Store(StoreError::internal(format!("key view: {e}"))))?;
        audit::record(
            state,
            ctx,
            action,
            &change.after.key_id,
            before,
            Some(after),
        )
        .await?;
        tracing::info!(
            actor = %ctx.principal.actor,
            action,
            key_id = %change.after.key_id,
            status = change.after.status.as_str(),
            "key changed"
        );
    }
    Ok(())
}

/// `n` bytes from the OS generator, as lowercase hex.
fn random_hex(n: usize) -> Result<String, AppError> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(|e| {
        AppError::Store(StoreError::internal(format!(
            "the OS random generator failed: {e}"
        )))
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A new plain key: `sk-aispend-` and 160 random bits.
fn new_plain_key() -> Result<String, AppError> {
    Ok(format!("{KEY_PREFIX}{}", random_hex(SECRET_BYTES)?))
}

fn not_found(id: &str) -> AppError {
    AppError::NotFound(format!("no key with key_id {id:?}"))
}

async fn existing(state: &AppState, id: &str) -> Result<Key, AppError> {
    state
        .store
        .get_key(id.to_owned())
        .await
        .inspect_err(|e| state.count_store_error(e))?
        .ok_or_else(|| not_found(id))
}

/// `POST /v1/keys`: issues a key; the plain key is in this answer only.
pub async fn create(
    state: &AppState,
    ctx: &RequestContext,
    body: &Value,
) -> Result<WithSecret, AppError> {
    let new = parse_new_key(body)?;
    let now = now_ms();
    let expires_at_ms = state
        .keys
        .policy
        .check(&new.tags, new.expires_at_ms, now, true)?;
    let key_id = match new.key_id {
        Some(id) => id,
        None => format!("key-{}", random_hex(KEY_ID_BYTES)?),
    };
    let plain = new_plain_key()?;
    let key = Key {
        key_id,
        tags: new.tags,
        limits: new.limits,
        status: KeyStatus::Active,
        created_at_ms: now,
        updated_at_ms: now,
        expires_at_ms,
        revision: 1,
        secrets: vec![Secret::of_plain(&plain, now)],
    };
    let view = KeyView::of(&key);
    commit(
        state,
        ctx,
        "key.create",
        vec![Change {
            before: None,
            after: key,
        }],
    )
    .await?;
    Ok(WithSecret { key: plain, view })
}

/// `GET /v1/keys`: every key, revoked ones too, sorted by id.
pub async fn list(state: &AppState) -> Result<KeyList, AppError> {
    let keys = state
        .store
        .list_keys()
        .await
        .inspect_err(|e| state.count_store_error(e))?;
    Ok(KeyList {
        keys: keys.iter().map(KeyView::of).collect(),
    })
}

/// `GET /v1/keys/{id}`.
pub async fn get(state: &AppState, id: &str) -> Result<KeyView, AppError> {
    Ok(KeyView::of(&existing(state, id).await?))
}

/// `PATCH /v1/keys/{id}`: changes the fields given; the result must still
/// meet the policy (required tags, lifetime of its environment).
pub async fn patch(
    state: &AppState,
    ctx: &RequestContext,
    id: &str,
    body: &Value,
) -> Result<KeyView, AppError> {
    let patch = parse_patch(body)?;
    // Re-check the policy only when tags or expiry change: a key issued
    // under an older policy can still be revoked or have its limits edited.
    let recheck = patch.tags.is_some() || patch.expires_at_ms.is_some();
    let before = existing(state, id).await?;
    let now = now_ms();
    let mut after = before.touched(now);
    if let Some(tags) = patch.tags {
        after.tags = tags;
    }
    if let Some(limits) = patch.limits {
        after.limits = limits;
    }
    if let Some(expires_at_ms) = patch.expires_at_ms {
        after.expires_at_ms = expires_at_ms;
    }
    if recheck {
        after.expires_at_ms =
            state
                .keys
                .policy
                .check(&after.tags, after.expires_at_ms, now, false)?;
    }
    match patch.status {
        Some(KeyStatus::Revoked) if before.status == KeyStatus::Active => {
            after = after.revoked(now);
        }
        Some(status) => after.status = status,
        None => {}
    }
    let view = KeyView::of(&after);
    commit(
        state,
        ctx,
        "key.update",
        vec![Change {
            before: Some(before),
            after,
        }],
    )
    .await?;
    Ok(view)
}

/// `POST /v1/keys/{id}/rotate`: a new secret; the old ones keep working for
/// `grace_seconds` (default 0). A revoked key cannot be rotated (409).
pub async fn rotate(
    state: &AppState,
    ctx: &RequestContext,
    id: &str,
    body: &Value,
) -> Result<WithSecret, AppError> {
    let grace_seconds = parse_grace_seconds(body)?;
    let before = existing(state, id).await?;
    if before.status == KeyStatus::Revoked {
        return Err(AppError::Conflict(format!(
            "key {id:?} is revoked; PATCH its status to active before rotating it"
        )));
    }
    let now = now_ms();
    let plain = new_plain_key()?;
    let after = before.rotated(Secret::of_plain(&plain, now), grace_seconds, now);
    let view = KeyView::of(&after);
    commit(
        state,
        ctx,
        "key.rotate",
        vec![Change {
            before: Some(before),
            after,
        }],
    )
    .await?;
    Ok(WithSecret { key: plain, view })
}

/// `DELETE /v1/keys/{id}`: revokes (every secret, also one in a grace
/// period); the key stays listed. Revoking a revoked key changes nothing.
pub async fn revoke(state: &AppState, ctx: &RequestContext, id: &str) -> Result<KeyView, AppError> {
    let before = existing(state, id).await?;
    if before.status == KeyStatus::Revoked {
        return Ok(KeyView::of(&before));
    }
    let after = before.revoked(now_ms());
    let view = KeyView::of(&after);
    commit(
        state,
        ctx,
        "key.revoke",
        vec![Change {
            before: Some(before),
            after,
        }],
    )
    .await?;
    Ok(view)
}

/// `POST /v1/keys/revoke` `{"tags":{…}}`: revokes every active key carrying
/// all the given tags, in one transaction.
pub async fn revoke_by_tags(
    state: &AppState,
    ctx: &RequestContext,
    body: &Value,
) -> Result<Revoked, AppError> {
    let filter = parse_tag_filter(body)?;
    let keys = state
        .store
        .list_keys()
        .await
        .inspect_err(|e| state.count_store_error(e))?;
    let now = now_ms();
    let changes: Vec<Change> = keys
        .into_iter()
        .filter(|k| k.status == KeyStatus::Active && k.matches(&filter))
        .map(|before| Change {
            after: before.revoked(now),
            before: Some(before),
        })
        .collect();
    let key_ids: Vec<String> = changes.iter().map(|c| c.after.key_id.clone()).collect();
    commit(state, ctx, "key.revoke", changes).await?;
    Ok(Revoked {
        revoked: key_ids.len(),
        key_ids,
    })
}

/// `GET /v1/keys/registry`: the snapshot of every valid secret. Rebuilt only
/// when a key changed (the store's revision, shared by every replica) or an
/// entry's `not_after` passed; concurrent polls wait for one rebuild.
pub async fn registry(state: &AppState) -> Result<Arc<Snapshot>, AppError> {
    let revision = state
        .store
        .keys_revision()
        .await
        .inspect_err(|e| state.count_store_error(e))?;
    let mut cached = state.keys.registry.lock().await;
    let now = now_ms();
    if let Some(c) = cached.as_ref() {
        let fresh = c.revision == revision && c.snapshot.valid_until_ms.is_none_or(|t| now < t);
        if fresh {
            return Ok(Arc::clone(&c.snapshot));
        }
    }
    let keys = state
        .store
        .list_keys()
        .await
        .inspect_err(|e| state.count_store_error(e))?;
    let snapshot = Arc::new(Snapshot::build(&keys, now));
    *cached = Some(Cached {
        revision,
        snapshot: Arc::clone(&snapshot),
    });
    Ok(snapshot)
}
