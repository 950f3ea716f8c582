//! Who is calling (CONTRACTS §9): the bearer token to a `Principal`, and the
//! `/v1/tokens` API.
//!
//! A presented token is hashed (sha256) once; the hash is compared in
//! constant time with each bootstrap token's hash, then looked up among the
//! API tokens. Those come from a cache of the whole token table, reloaded
//! when older than `TOKEN_TTL` and at once after this replica creates or
//! revokes one: no database round trip per request at ingest rates, and a
//! revocation on another replica takes effect there within `TOKEN_TTL`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::domain::access::{allowed_routes, validate_new_token, ApiToken, Principal, Role};
use crate::domain::budgets::Scope;
use crate::error::AppError;
use crate::metrics::Metrics;
use crate::service::audit;
use crate::state::{AppState, Tokens};
use crate::store::StoreError;

/// How long another replica's token change may take to be seen here.
pub const TOKEN_TTL: Duration = Duration::from_secs(5);

/// The prefix of every API token secret.
pub const TOKEN_PREFIX: &str = "ast-";

/// One request's caller and id, put in the request's extensions by
/// `http::auth` for the handlers (scopes, the audit log).
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub principal: Principal,
    pub request_id: String,
}

struct Loaded {
    at: Instant,
    generation: u64,
    by_hash: Arc<HashMap<[u8; 32], ApiToken>>,
}

/// The token table, cached (see the module doc).
#[derive(Default)]
pub struct TokenCache {
    generation: AtomicU64,
    loaded: tokio::sync::Mutex<Option<Loaded>>,
    /// Reads of the token table (`aispend_token_cache_loads_total`).
    loads: AtomicU64,
}

impl TokenCache {
    /// How many times the token table was read from the store.
    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }

    /// A token was created or revoked here: reload on the next lookup.
    pub fn changed(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    async fn current(
        &self,
        state: &AppState,
    ) -> Result<Arc<HashMap<[u8; 32], ApiToken>>, StoreError> {
        let mut loaded = self.loaded.lock().await;
        let generation = self.generation.load(Ordering::Relaxed);
        if let Some(l) = loaded.as_ref() {
            if l.generation == generation && l.at.elapsed() < TOKEN_TTL {
                return Ok(Arc::clone(&l.by_hash));
            }
        }
        self.loads.fetch_add(1, Ordering::Relaxed);
        match state.store.list_tokens().await {
            Ok(tokens) => {
                let by_hash = Arc::new(tokens.into_iter().map(|t| (t.sha256, t)).collect());
                *loaded = Some(Loaded {
                    at: Instant::now(),
                    generation,
                    by_hash: Arc::clone(&by_hash),
                });
                Ok(by_hash)
            }
            Err(e) => {
                state.count_store_error(&e);
                // The last table known stays in use while the store is away.
                match loaded.as_ref() {
                    Some(l) => {
                        tracing::warn!(error = %e, "cannot reload API tokens; using the last ones");
                        Ok(Arc::clone(&l.by_hash))
                    }
                    None => Err(e),
                }
            }
        }
    }
}

pub fn sha256(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Compares without an early exit, so timing says nothing about how much matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The bootstrap tokens with their roles (set ones only).
fn bootstrap(tokens: &Tokens) -> [(Option<&String>, Role); 3] {
    [
        (tokens.ingest.as_ref(), Role::Gateway),
        (tokens.read.as_ref(), Role::Viewer),
        (tokens.admin.as_ref(), Role::Admin),
    ]
}

/// The roles left open to callers without a token (bootstrap token unset,
/// only possible with `--insecure-no-auth`).
pub fn open_roles(tokens: &Tokens) -> Vec<Role> {
    bootstrap(tokens)
        .into_iter()
        .filter(|(t, _)| t.is_none())
        .map(|(_, r)| r)
        .collect()
}

/// The caller presenting `secret`: a bootstrap token or a live API token.
/// `Ok(None)`: unknown, revoked or expired (401).
pub async fn authenticate(state: &AppState, secret: &str) -> Result<Option<Principal>, AppError> {
    let digest = sha256(secret);
    let mut found = None;
    // Every bootstrap hash is compared, whichever matches.
    for (token, role) in bootstrap(&state.tokens) {
        if let Some(token) = token {
            if constant_time_eq(&sha256(token), &digest) {
                found = Some(Principal {
                    actor: format!("bootstrap:{}", role.as_str()),
                    roles: vec![role],
                    scope: None,
                });
            }
        }
    }
    if found.is_some() {
        return Ok(found);
    }
    if !secret.starts_with(TOKEN_PREFIX) {
        return Ok(None);
    }
    let tokens = state.token_cache.current(state).await?;
    // The map is keyed by the hash: the lookup's timing depends on the hash
    // of the guess, never on how much of a secret was right.
    Ok(tokens
        .get(&digest)
        .filter(|t| t.is_live(state.now()))
        .map(ApiToken::principal))
}

/// Counts a refused authentication (`aispend_auth_failures_total`).
pub fn count_failure(state: &AppState, reason: &'static str) {
    let counter = match reason {
        "invalid_token" => &state.metrics.auth_invalid_token,
        _ => &state.metrics.auth_insufficient_role,
    };
    Metrics::add(counter, 1);
}

/// `n` bytes from the operating system's generator, as lowercase hex.
pub fn random_hex(n: usize) -> Result<String, AppError> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(|e| {
        AppError::Store(StoreError::internal(format!(
            "the OS random generator failed: {e}"
        )))
    })?;
    Ok(crate::domain::access::hex(&bytes))
}

/// The answer to `POST /v1/tokens`: the token and, this once, its secret.
#[derive(Debug, Serialize)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub token: ApiToken,
    /// `ast-` + 192 random bits; shown here only, stored as sha256.
    #[serde(rename = "token")]
    pub secret: String,
}

#[derive(Debug, Serialize)]
pub struct TokenList {
    pub tokens: Vec<TokenView>,
}

/// A listed token: never the secret, with whether it works now.
#[derive(Debug, Serialize)]
pub struct TokenView {
    #[serde(flatten)]
    pub token: ApiToken,
    pub active: bool,
}

pub async fn create(
    state: &AppState,
    ctx: &RequestContext,
    body: &Value,
) -> Result<CreatedToken, AppError> {
    let now = state.now();
    let new = validate_new_token(body, now).map_err(AppError::BadRequest)?;
    let secret = format!("{TOKEN_PREFIX}{}", random_hex(24)?);
    let token = ApiToken {
        id: format!("tok_{}", random_hex(8)?),
        sha256: sha256(&secret),
        role: new.role,
        scope: new.scope,
        label: new.label,
        created_at: now,
        expires_at: new.expires_at,
        revoked_at: None,
        created_by: ctx.principal.actor.clone(),
    };
    let created = state
        .store
        .create_token(token.clone())
        .await
        .inspect_err(|e| state.count_store_error(e))?;
    if !created {
        return Err(AppError::Conflict(String::from(
            "a token with this id already exists; retry",
        )));
    }
    state.token_cache.changed();
    let after = serde_json::to_value(&token).ok();
    audit::record(
        state,
        ctx,
        "token.create",
        &format!("token:{}", token.id),
        None,
        after,
    )
    .await?;
    Ok(CreatedToken { token, secret })
}

/// `GET /v1/whoami`: the caller as the collector sees it. Never a secret.
#[derive(Debug, Serialize)]
pub struct WhoAmI {
    /// A token id (`tok_…`), `bootstrap:<role>` or `anonymous`.
    pub actor: String,
    pub roles: Vec<Role>,
    /// A scoped viewer's scope (`null` when unscoped).
    pub scope: Option<Scope>,
    /// Every route of the access table this caller may call (`"GET /v1/usage"`).
    pub routes: Vec<String>,
    /// The tags a key must carry (`POST /v1/keys` refuses one without them).
    pub required_tags: Vec<String>,
}

pub fn whoami(state: &AppState, ctx: &RequestContext) -> WhoAmI {
    let p = &ctx.principal;
    WhoAmI {
        actor: p.actor.clone(),
        roles: p.roles.clone(),
        scope: p.scope.clone(),
        routes: allowed_routes(p),
        required_tags: state.required_tags.to_vec(),
    }
}

pub async fn list(state: &AppState) -> Result<TokenList, AppError> {
    let now = state.now();
    let tokens = state
        .store
        .list_tokens()
        .await
        .inspect_err(|e| state.count_store_error(e))?;
    Ok(TokenList {
        tokens: tokens
            .into_iter()
            .map(|t| TokenView {
                active: t.is_live(now),
                token: t,
            })
            .collect(),
    })
}

/// Revokes token `id` (it stays listed); answers it as it now is. Revoking
/// a revoked token answers it unchanged.
pub async fn revoke(
    state: &AppState,
    ctx: &RequestContext,
    id: &str,
) -> Result<TokenView, AppError> {
    let find = |tokens: Vec<ApiToken>| tokens.into_iter().find(|t| t.id == id);
    let before = find(
        state
            .store
            .list_tokens()
            .await
            .inspect_err(|e| state.count_store_error(e))?,
    )
    .ok_or_else(|| AppError::NotFound(format!("no token with id {id:?}")))?;
    let now = state.now();
    let revoked = state
        .store
        .revoke_token(id.to_owned(), now)
        .await
        .inspect_err(|e| state.count_store_error(e))?;
    let mut after = before.clone();
    if revoked {
        after.revoked_at = Some(now);
        state.token_cache.changed();
        audit::record(
            state,
            ctx,
            "token.revoke",
            &format!("token:{id}"),
            serde_json::to_value(&before).ok(),
            serde_json::to_value(&after).ok(),
        )
        .await?;
    }
    Ok(TokenView {
        active: after.is_live(now),
        token: after,
    })
}
