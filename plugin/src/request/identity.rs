//! Who is calling: the virtual-key registry (looked up by the sha256 of the
//! presented key), Envoy-verified JWT claims, or a trusted Kong consumer.
//! Produces a `Principal` whose tags become the canonical cost tags.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use crate::config::{self, Config, KeyStatus, Source, CANONICAL_TAGS};
use crate::host::profile::KONG_CONSUMER_HEADERS;
use crate::request::key_digest::DigestCache;
use crate::request::key_registry::KeyRegistry;

/// How the caller was identified; `as_str` is the record's `auth` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    ApiKey,
    Jwt,
    Consumer,
}

impl AuthKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthKind::ApiKey => "api_key",
            AuthKind::Jwt => "jwt",
            AuthKind::Consumer => "consumer",
        }
    }
}

/// The tag names this deployment knows, in a fixed order (canonical five,
/// then `tags.extra`), with their header names precomputed once.
#[derive(Debug, Clone)]
pub struct TagSchema {
    names: Vec<String>,
    headers: Vec<String>,
}

impl TagSchema {
    pub fn new(extra: &[String]) -> Self {
        let names: Vec<String> = CANONICAL_TAGS
            .iter()
            .map(|s| s.to_string())
            .chain(extra.iter().cloned())
            .collect();
        let headers = names
            .iter()
            .map(|n| format!("x-aispend-{}", n.replace('_', "-")))
            .collect();
        TagSchema { names, headers }
    }
    pub fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }
    pub fn name(&self, index: usize) -> &str {
        self.names.get(index).map(String::as_str).unwrap_or("")
    }
    pub fn header(&self, index: usize) -> &str {
        self.headers.get(index).map(String::as_str).unwrap_or("")
    }
    pub fn headers(&self) -> &[String] {
        &self.headers
    }
    /// Map `{tag: value}` from the config to schema indexes, sorted by index.
    /// Unknown names were rejected by config validation; skip them defensively.
    fn tag_set(&self, tags: &BTreeMap<String, String>) -> TagSet {
        let mut set: TagSet = tags
            .iter()
            .filter_map(|(n, v)| self.index(n).map(|i| (i, v.clone())))
            .collect();
        set.sort_by_key(|(i, _)| *i);
        set
    }
}

/// Tag values by schema index, sorted by index.
pub type TagSet = Vec<(usize, String)>;

/// One registered virtual key, ready for the hot path.
#[derive(Debug, Clone)]
struct KeyEntry {
    principal: Principal,
    revoked: bool,
}

/// The caller. On the API-key path it is a clone of the registry's `Rc`s, so
/// a request allocates nothing to know who it is, and the request keeps it
/// until its record is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub key_id: Rc<str>,
    pub auth: AuthKind,
    pub tags: Rc<TagSet>,
    /// Per-key rate limits (registry keys only).
    pub limits: Option<KeyLimits>,
}

/// A key's rate limits; a zero or absent limit is "unlimited".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyLimits {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
}

impl KeyLimits {
    fn from_config(c: &config::LimitsConfig) -> Option<Self> {
        let l = KeyLimits {
            requests_per_minute: c.requests_per_minute.filter(|n| *n > 0),
            tokens_per_minute: c.tokens_per_minute.filter(|n| *n > 0),
        };
        (l.requests_per_minute.is_some() || l.tokens_per_minute.is_some()).then_some(l)
    }
}

/// Why no principal was found; each one is a 401 (CONTRACTS §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    NoCredential,
    /// An `authorization` header without the `Bearer ` scheme (a key sent
    /// bare, `Basic …`): said so, rather than "no key".
    NotBearer,
    UnknownKey,
    RevokedKey,
    /// A registry key past its `not_after`.
    ExpiredKey,
    MissingTag(usize),
}

/// Verified JWT claims, read through the host (Envoy dynamic metadata).
pub trait ClaimSource {
    fn claim(&mut self, name: &str) -> Option<String>;
}

/// The identity part of the config, compiled for lookups.
#[derive(Debug, Clone)]
pub struct Identity {
    sources: Vec<Source>,
    keys: HashMap<[u8; 32], KeyEntry, DigestHash>,
    digests: DigestCache,
    jwt: Option<JwtMapping>,
    kong_trusted: bool,
    consumers: HashMap<String, Rc<TagSet>>,
    required: Vec<usize>,
}

#[derive(Debug, Clone)]
struct JwtMapping {
    key_id_claim: String,
    /// (tag index, claim name)
    claims: Vec<(usize, String)>,
}

/// Hashes a sha256 digest by its first eight bytes: they are already
/// uniform, so SipHash over all 32 would buy nothing on every call.
#[derive(Debug, Clone, Copy, Default)]
pub struct DigestHash;

impl std::hash::BuildHasher for DigestHash {
    type Hasher = DigestHasher;
    fn build_hasher(&self) -> DigestHasher {
        DigestHasher(0)
    }
}

#[derive(Debug, Default)]
pub struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 32]` hashes as its bytes, once (no length prefix for arrays).
        for &b in bytes.iter().take(8) {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
}

/// Headers that may carry a client credential (CONTRACTS §2, and
/// `proxy-authorization`, which some HTTP clients fill from the same key);
/// none of them reaches the provider with the client's value.
pub const CREDENTIAL_HEADERS: [&str; 5] = [
    "authorization",
    "x-api-key",
    "x-goog-api-key",
    "api-key",
    "proxy-authorization",
];

impl Identity {
    pub fn new(config: &Config, schema: &TagSchema) -> Self {
        let id = &config.identity;
        let keys = id
            .keys
            .iter()
            .filter_map(|k| {
                let digest = config::parse_sha256_hex(&k.sha256)?;
                let entry = KeyEntry {
                    principal: Principal {
                        key_id: Rc::from(k.key_id.as_str()),
                        auth: AuthKind::ApiKey,
                        tags: Rc::new(schema.tag_set(&k.tags)),
                        limits: k.limits.as_ref().and_then(KeyLimits::from_config),
                    },
                    revoked: k.status == KeyStatus::Revoked,
                };
                Some((digest, entry))
            })
            .collect();
        let jwt = id.jwt.as_ref().map(|j| JwtMapping {
            key_id_claim: j.key_id_claim.clone(),
            claims: j
                .claims
                .iter()
                .filter_map(|(tag, claim)| schema.index(tag).map(|i| (i, claim.clone())))
                .collect(),
        });
        let consumers = id
            .kong_consumer
            .tags_by_consumer
            .iter()
            .map(|(name, tags)| (name.clone(), Rc::new(schema.tag_set(tags))))
            .collect();
        Identity {
            sources: id.sources.clone(),
            keys,
            digests: DigestCache::default(),
            jwt,
            kong_trusted: id.kong_consumer.trusted,
            consumers,
            required: config
                .tags
                .required
                .iter()
                .filter_map(|t| schema.index(t))
                .collect(),
        }
    }

    pub fn uses(&self, source: Source) -> bool {
        self.sources.contains(&source)
    }

    /// Resolve the caller from the request headers (lowercase names, as the
    /// hosts deliver them) and, for JWT, the verified claims.
    pub fn resolve(
        &self,
        headers: &[(&str, &str)],
        claims: &mut dyn ClaimSource,
    ) -> Result<Principal, Rejection> {
        self.resolve_with(headers, claims, None, 0)
    }

    /// [`Identity::resolve`] with the worker's copy of the key registry
    /// (keys issued over the API), whose expiry is checked against `now_ms`.
    /// A static config key wins over a registry entry for the same secret.
    pub fn resolve_with(
        &self,
        headers: &[(&str, &str)],
        claims: &mut dyn ClaimSource,
        registry: Option<&KeyRegistry>,
        now_ms: u64,
    ) -> Result<Principal, Rejection> {
        // The most specific failure wins: a revoked key says more than "no key".
        let mut failure = Rejection::NoCredential;
        for source in &self.sources {
            let found = match source {
                Source::ApiKey => self.by_api_key(headers, registry, now_ms),
                Source::Jwt => self.by_jwt(claims),
                Source::KongConsumer => self.by_consumer(headers),
            };
            match found {
                Ok(p) => return self.check_required(p),
                Err(Rejection::NoCredential) => {}
                Err(other) => failure = other,
            }
        }
        Err(failure)
    }

    fn check_required(&self, p: Principal) -> Result<Principal, Rejection> {
        for &req in &self.required {
            if !p.tags.iter().any(|(i, _)| *i == req) {
                return Err(Rejection::MissingTag(req));
            }
        }
        Ok(p)
    }

    fn by_api_key(
        &self,
        headers: &[(&str, &str)],
        registry: Option<&KeyRegistry>,
        now_ms: u64,
    ) -> Result<Principal, Rejection> {
        let Some(key) = presented_key(headers) else {
            let bare = header(headers, "authorization").is_some_and(|v| !v.trim().is_empty());
            return Err(if bare {
                Rejection::NotBearer
            } else {
                Rejection::NoCredential
            });
        };
        let (digest, remembered) = self.digests.digest(key.as_bytes());
        let Some(entry) = self.keys.get(&digest) else {
            let entry = registry
                .and_then(|r| r.get(&digest))
                .ok_or(Rejection::UnknownKey)?;
            if !remembered {
                self.digests.remember(key.as_bytes(), digest);
            }
            return entry.admit(now_ms);
        };
        if !remembered {
            self.digests.remember(key.as_bytes(), digest);
        }
        if entry.revoked {
            return Err(Rejection::RevokedKey);
        }
        Ok(entry.principal.clone())
    }

    /// The registry entry of the presented key even when it is revoked: a
    /// refused call can still be recorded against the key it used.
    pub fn known_key(
        &self,
        headers: &[(&str, &str)],
        registry: Option<&KeyRegistry>,
    ) -> Option<Principal> {
        let key = presented_key(headers)?;
        let (digest, _) = self.digests.digest(key.as_bytes());
        match self.keys.get(&digest) {
            Some(e) => Some(e.principal.clone()),
            None => registry?.get(&digest).map(|e| e.principal),
        }
    }

    /// Whether the static config defines this secret or this key_id (then
    /// the registry's entry for it is left out: static config wins).
    pub fn defines(&self, digest: &[u8; 32], key_id: &str) -> bool {
        self.keys.contains_key(digest) || self.keys.values().any(|e| *e.principal.key_id == *key_id)
    }

    fn by_jwt(&self, claims: &mut dyn ClaimSource) -> Result<Principal, Rejection> {
        let jwt = self.jwt.as_ref().ok_or(Rejection::NoCredential)?;
        // Claims exist in metadata only after jwt_authn verified the token.
        let subject = claims
            .claim(&jwt.key_id_claim)
            .ok_or(Rejection::NoCredential)?;
        let key_id = format!("jwt:{subject}");
        if !config::valid_tag_value(&key_id) {
            return Err(Rejection::UnknownKey);
        }
        let tags: TagSet = jwt
            .claims
            .iter()
            .filter_map(|(i, claim)| {
                let value = claims.claim(claim)?;
                // An out-of-charset claim is not a tag; `tags.required` decides if that is fatal.
                config::valid_tag_value(&value).then_some((*i, value))
            })
            .collect();
        Ok(Principal {
            key_id: Rc::from(key_id),
            auth: AuthKind::Jwt,
            tags: Rc::new(tags),
            limits: None,
        })
    }

    fn by_consumer(&self, headers: &[(&str, &str)]) -> Result<Principal, Rejection> {
        if !self.kong_trusted {
            return Err(Rejection::NoCredential);
        }
        let [by_name, by_id, by_credential] = KONG_CONSUMER_HEADERS;
        let username = header(headers, by_name);
        let consumer = username
            .or_else(|| header(headers, by_id))
            .or_else(|| header(headers, by_credential))
            .ok_or(Rejection::NoCredential)?;
        let key_id = format!("consumer:{consumer}");
        if !config::valid_tag_value(&key_id) {
            return Err(Rejection::UnknownKey);
        }
        let tags = username
            .and_then(|u| self.consumers.get(u))
            .cloned()
            .unwrap_or_default();
        Ok(Principal {
            key_id: Rc::from(key_id),
            auth: AuthKind::Consumer,
            tags,
            limits: None,
        })
    }
}

/// First value of a header (names are lowercase on both hosts).
pub fn header<'h>(headers: &[(&'h str, &'h str)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| crate::ascii::eq_ignore_case(n, name))
        .map(|(_, v)| *v)
}

/// The virtual key wherever the provider's SDK puts it (CONTRACTS §2).
pub fn presented_key<'h>(headers: &[(&'h str, &'h str)]) -> Option<&'h str> {
    if let Some(auth) = header(headers, "authorization") {
        let auth = crate::ascii::trim(auth);
        if auth.len() > 7
            && auth
                .get(..7)
                .is_some_and(|s| crate::ascii::eq_ignore_case(s, "Bearer "))
        {
            let key = crate::ascii::trim(auth.get(7..).unwrap_or(""));
            if !key.is_empty() {
                return Some(key);
            }
        }
    }
    for name in ["x-api-key", "x-goog-api-key", "api-key"] {
        if let Some(v) = header(headers, name)
            .map(crate::ascii::trim)
            .filter(|v| !v.is_empty())
        {
            return Some(v);
        }
    }
    header(headers, ":path").and_then(query_key)
}

/// Query parameter names a client may put its key in: Gemini's `key`, and
/// the `api_key`/`apikey` spellings other clients use (any letter case).
pub fn is_key_param(name: &str) -> bool {
    ["key", "api_key", "apikey"]
        .iter()
        .any(|k| name.eq_ignore_ascii_case(k))
}

/// The key from the query string (Gemini). Keys are URL-safe in practice; a
/// percent-encoded key is not decoded and simply won't match.
pub fn query_key(path: &str) -> Option<&str> {
    let (_, query) = path.split_once('?')?;
    query
        .split('&')
        .find_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            is_key_param(name).then_some(value)
        })
        .filter(|k| !k.is_empty())
}

/// The query string without any parameter that may carry the virtual key
/// (by name, or whose value is `key` whatever its name), or None when there
/// is nothing to remove.
pub fn query_without_key<'a>(path: &'a str, key: Option<&str>) -> Option<(&'a str, String)> {
    let (base, query) = path.split_once('?')?;
    let carries_key = |pair: &str| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        is_key_param(name) || key.is_some_and(|k| !k.is_empty() && value == k)
    };
    if !query.split('&').any(carries_key) {
        return None;
    }
    let rest: Vec<&str> = query.split('&').filter(|p| !carries_key(p)).collect();
    Some((base, rest.join("&")))
}

/// `path` without its key-carrying query parameters, or None when it has none.
pub fn path_without_key(path: &str) -> Option<String> {
    let (base, rest) = query_without_key(path, None)?;
    Some(if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{rest}")
    })
}

#[cfg(test)]
mod tests;
