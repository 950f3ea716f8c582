//! Virtual keys as data (CONTRACTS §8): what a key is, how the API bodies are
//! validated, the issuance policy (required tags, maximum lifetime per
//! environment), and how rotation and revocation change a key. Plain logic:
//! the secret is generated and hashed by `service::keys`, kept by the store;
//! `registry` builds the snapshot gateways poll.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::time::{format_rfc3339_ms, parse_rfc3339_ms};
use super::validate::{is_tag_value, tag_map};

pub mod registry;

/// Every plain key starts with this (and hints show it).
pub const KEY_PREFIX: &str = "sk-aispend-";
/// The tags a key must carry unless `AISPEND_REQUIRED_TAGS` says otherwise.
pub const DEFAULT_REQUIRED_TAGS: &[&str] = &["org", "team", "cost_center", "environment"];
/// Key ids that would collide with the fixed routes under `/v1/keys/`.
pub const RESERVED_KEY_IDS: &[&str] = &["registry", "revoke"];
/// The longest rotation grace period accepted: 30 days.
pub const MAX_GRACE_SECONDS: u64 = 30 * 86_400;
/// Per-key limits above this are certainly a mistake (and stay far from
/// overflow in the filter's counters).
pub const MAX_LIMIT: u64 = 1_000_000_000_000;
const MAX_KEY_ID_LEN: usize = 128;
/// More tags than this on one key is a mistake (every gateway holds them).
const MAX_TAGS: usize = 32;

/// `active` keys pass the gateway; `revoked` ones are refused (401).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Active,
    Revoked,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Revoked => "revoked",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(KeyStatus::Active),
            "revoked" => Some(KeyStatus::Revoked),
            _ => None,
        }
    }
}

/// Per-key rate limits the filter enforces (CONTRACTS §6); absent = none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Limits {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub requests_per_minute: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tokens_per_minute: Option<u64>,
}

/// One secret of a key: only its sha256 is kept. The current secret has no
/// `not_after` of its own (it lives as long as the key); a secret rotated
/// out keeps working until `not_after` (the grace end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    /// Lowercase hex sha256 of the plain key.
    pub sha256: String,
    /// The plain key's last 4 characters, for the hint.
    pub last4: String,
    pub created_at_ms: i64,
    pub not_after_ms: Option<i64>,
}

impl Secret {
    /// The stored form of a plain key, made at `now`.
    pub fn of_plain(plain: &str, now_ms: i64) -> Self {
        let start = plain.len().saturating_sub(4);
        Secret {
            sha256: sha256_hex(plain.as_bytes()),
            last4: plain.get(start..).unwrap_or_default().to_owned(),
            created_at_ms: now_ms,
            not_after_ms: None,
        }
    }

    /// `sk-aispend-…` and the last 4 characters.
    pub fn hint(&self) -> String {
        format!("{KEY_PREFIX}…{}", self.last4)
    }

    /// Whether it still opens the gateway at `now` (ignoring key status).
    pub fn valid_at(&self, now_ms: i64) -> bool {
        self.not_after_ms.is_none_or(|end| now_ms < end)
    }
}

/// Lowercase hex sha256, the form gateways look keys up by.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A virtual key as stored: never its plain secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub key_id: String,
    pub tags: BTreeMap<String, String>,
    pub limits: Limits,
    pub status: KeyStatus,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    /// Bumped by every change; a write names the revision it read, so two
    /// concurrent changes of one key cannot both win silently.
    pub revision: i64,
    /// The current secret first, then those still in a grace period.
    pub secrets: Vec<Secret>,
}

impl Key {
    /// The current secret (the one created last).
    pub fn current(&self) -> Option<&Secret> {
        self.secrets.iter().find(|s| s.not_after_ms.is_none())
    }

    /// Whether every `filter` pair is among the key's tags.
    pub fn matches(&self, filter: &BTreeMap<String, String>) -> bool {
        filter.iter().all(|(k, v)| self.tags.get(k) == Some(v))
    }

    /// The key once revoked at `now`: status `revoked`, and every secret in
    /// a grace period dropped, so un-revoking later brings back only the
    /// current one.
    pub fn revoked(&self, now_ms: i64) -> Key {
        Key {
            status: KeyStatus::Revoked,
            secrets: self
                .secrets
                .iter()
                .filter(|s| s.not_after_ms.is_none())
                .cloned()
                .collect(),
            ..self.touched(now_ms)
        }
    }

    /// The key with `fresh` as its current secret: every earlier secret now
    /// ends at `now + grace` (or earlier, if it already ended sooner), and
    /// one that has ended is dropped.
    pub fn rotated(&self, fresh: Secret, grace_seconds: u64, now_ms: i64) -> Key {
        let grace_ms = i64::try_from(grace_seconds.min(MAX_GRACE_SECONDS))
            .unwrap_or(0)
            .saturating_mul(1000);
        let grace_end = now_ms.saturating_add(grace_ms);
        let mut secrets = vec![fresh];
        for old in &self.secrets {
            let end = old.not_after_ms.map_or(grace_end, |e| e.min(grace_end));
            if end > now_ms {
                secrets.push(Secret {
                    not_after_ms: Some(end),
                    ..old.clone()
                });
            }
        }
        Key {
            secrets,
            ..self.touched(now_ms)
        }
    }

    /// A copy with the next revision, changed at `now`, secrets whose grace
    /// has ended removed (housekeeping on every write).
    pub fn touched(&self, now_ms: i64) -> Key {
        Key {
            updated_at_ms: now_ms,
            revision: self.revision.saturating_add(1),
            secrets: self
                .secrets
                .iter()
                .filter(|s| s.valid_at(now_ms))
                .cloned()
                .collect(),
            ..self.clone()
        }
    }
}

/// Why a key body is refused: the message names the field or tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// 400 `bad_request`.
    Invalid(String),
    /// 400 `missing_tag`: a required tag is absent.
    MissingTag(String),
}

fn invalid(message: impl Into<String>) -> KeyError {
    KeyError::Invalid(message.into())
}

/// Issuance rules from the settings: the tags every key must carry, and the
/// longest lifetime of a key per `environment` tag value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPolicy {
    pub required_tags: Vec<String>,
    /// `environment` value → longest lifetime in ms. A key of such an
    /// environment created without `expires_at` gets `now + lifetime`; one
    /// asking for later (or, in a PATCH, for no expiry) is refused.
    pub max_lifetime_ms: BTreeMap<String, i64>,
}

impl Default for KeyPolicy {
    fn default() -> Self {
        Self {
            required_tags: DEFAULT_REQUIRED_TAGS
                .iter()
                .map(|t| (*t).to_owned())
                .collect(),
            max_lifetime_ms: BTreeMap::new(),
        }
    }
}

impl KeyPolicy {
    /// Parses the settings: `required` a comma list of tag names (blank:
    /// none), `lifetimes` a comma list of `environment=duration` with
    /// durations like `30d`, `12h`, `90m`, `3600s`.
    pub fn parse(required: &str, lifetimes: &str) -> Result<Self, String> {
        let mut required_tags = Vec::new();
        for name in required.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if !super::validate::is_tag_key(name) {
                return Err(format!(
                    "required_tags: {name:?} is not a tag name ([a-z0-9_]{{1,64}})"
                ));
            }
            if !required_tags.iter().any(|t| t == name) {
                required_tags.push(name.to_owned());
            }
        }
        let mut max_lifetime_ms = BTreeMap::new();
        for pair in lifetimes
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (env, duration) = pair.split_once('=').ok_or_else(|| {
                format!("key_max_lifetime: {pair:?} is not environment=duration (e.g. dev=30d)")
            })?;
            let env = env.trim();
            if !is_tag_value(env) {
                return Err(format!(
                    "key_max_lifetime: {env:?} is not a valid environment value"
                ));
            }
            let ms = parse_duration_ms(duration.trim()).ok_or_else(|| {
                format!(
                    "key_max_lifetime: {duration:?} for {env} is not a duration \
                     (a positive number followed by d, h, m or s, e.g. 30d)"
                )
            })?;
            max_lifetime_ms.insert(env.to_owned(), ms);
        }
        Ok(Self {
            required_tags,
            max_lifetime_ms,
        })
    }

    /// Refuses tags that lack a required one; decides `expires_at` for the
    /// key's environment. `default_expiry`: on creation a missing
    /// `expires_at` becomes the longest lifetime; in a change it is refused.
    pub fn check(
        &self,
        tags: &BTreeMap<String, String>,
        expires_at_ms: Option<i64>,
        now_ms: i64,
        default_expiry: bool,
    ) -> Result<Option<i64>, KeyError> {
        if let Some(missing) = self.required_tags.iter().find(|t| !tags.contains_key(*t)) {
            return Err(KeyError::MissingTag(format!(
                "tag `{missing}` is required on every key (required tags: {})",
                self.required_tags.join(", ")
            )));
        }
        if let Some(at) = expires_at_ms {
            if at <= now_ms {
                return Err(invalid(format!(
                    "field `expires_at`: {} is not in the future",
                    format_rfc3339_ms(at)
                )));
            }
        }
        let Some((env, &max_ms)) = tags
            .get("environment")
            .and_then(|env| self.max_lifetime_ms.get_key_value(env))
        else {
            return Ok(expires_at_ms);
        };
        let latest = now_ms.saturating_add(max_ms);
        match expires_at_ms {
            None if default_expiry => Ok(Some(latest)),
            None => Err(invalid(format!(
                "field `expires_at`: keys of environment {env} must expire within {} \
                 (key_max_lifetime); null is not allowed",
                format_duration(max_ms)
            ))),
            Some(at) if at > latest => Err(invalid(format!(
                "field `expires_at`: keys of environment {env} must expire within {} \
                 (key_max_lifetime), by {} at the latest",
                format_duration(max_ms),
                format_rfc3339_ms(latest)
            ))),
            Some(at) => Ok(Some(at)),
        }
    }
}

/// `30d`, `12h`, `90m`, `3600s` → ms; `None` for anything else or zero.
pub fn parse_duration_ms(text: &str) -> Option<i64> {
    let unit_ms: i64 = match text.chars().last()? {
        'd' => 86_400_000,
        'h' => 3_600_000,
        'm' => 60_000,
        's' => 1_000,
        _ => return None,
    };
    let number: i64 = text.get(..text.len() - 1)?.parse().ok()?;
    (number > 0).then(|| number.checked_mul(unit_ms)).flatten()
}

fn format_duration(ms: i64) -> String {
    for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)] {
        if ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{}s", ms / 1000)
}

/// A `POST /v1/keys` body, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    pub key_id: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub limits: Limits,
    pub expires_at_ms: Option<i64>,
}

/// A `PATCH /v1/keys/{id}` body: only the fields present change.
/// `expires_at: null` removes the expiry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPatch {
    pub tags: Option<BTreeMap<String, String>>,
    pub limits: Option<Limits>,
    pub status: Option<KeyStatus>,
    pub expires_at_ms: Option<Option<i64>>,
}

fn object<'a>(body: &'a Value, allowed: &[&str]) -> Result<&'a Map<String, Value>, KeyError> {
    let obj = body
        .as_object()
        .ok_or_else(|| invalid("body must be a JSON object"))?;
    if let Some(unknown) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(invalid(format!(
            "unknown field `{unknown}` (allowed: {})",
            allowed.join(", ")
        )));
    }
    Ok(obj)
}

/// The tags of a body: required, an object of valid tags, at most 32.
fn tags_field(obj: &Map<String, Value>) -> Result<BTreeMap<String, String>, KeyError> {
    match obj.get("tags") {
        Some(Value::Object(_)) => {}
        None | Some(Value::Null) => return Err(invalid("field `tags` is required")),
        Some(_) => return Err(invalid("field `tags`: expected an object")),
    }
    let tags = tag_map(obj, "tags").map_err(KeyError::Invalid)?;
    if tags.len() > MAX_TAGS {
        return Err(invalid(format!(
            "field `tags`: at most {MAX_TAGS} tags per key"
        )));
    }
    Ok(tags)
}

fn limits_field(value: &Value) -> Result<Limits, KeyError> {
    let obj = match value {
        Value::Null => return Ok(Limits::default()),
        Value::Object(obj) => obj,
        _ => return Err(invalid("field `limits`: expected an object or null")),
    };
    let allowed = ["requests_per_minute", "tokens_per_minute"];
    if let Some(unknown) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(invalid(format!(
            "unknown field `limits.{unknown}` (allowed: {})",
            allowed.join(", ")
        )));
    }
    let one = |name: &str| -> Result<Option<u64>, KeyError> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .map(Some)
                .ok_or_else(|| {
                    invalid(format!(
                        "field `limits.{name}`: expected an integer 1..={MAX_LIMIT} or null"
                    ))
                }),
        }
    };
    Ok(Limits {
        requests_per_minute: one("requests_per_minute")?,
        tokens_per_minute: one("tokens_per_minute")?,
    })
}

fn expires_field(value: &Value) -> Result<Option<i64>, KeyError> {
    match value {
        Value::Null => Ok(None),
        Value::String(text) => parse_rfc3339_ms(text).map(Some).ok_or_else(|| {
            invalid(format!(
                "field `expires_at`: expected an RFC 3339 timestamp, got {text:?}"
            ))
        }),
        _ => Err(invalid(
            "field `expires_at`: expected an RFC 3339 timestamp or null",
        )),
    }
}

/// Checks a key id: a tag value (it travels in records as `key_id`), not a
/// reserved route name.
pub fn check_key_id(id: &str) -> Result<(), KeyError> {
    if !is_tag_value(id) || id.len() > MAX_KEY_ID_LEN {
        return Err(invalid(format!(
            "field `key_id`: expected 1..={MAX_KEY_ID_LEN} characters of [A-Za-z0-9._:/-]"
        )));
    }
    if RESERVED_KEY_IDS.contains(&id) {
        return Err(invalid(format!(
            "field `key_id`: {id:?} is reserved (it names a route under /v1/keys/)"
        )));
    }
    Ok(())
}

/// Validates a `POST /v1/keys` body (the policy is applied by the caller).
pub fn parse_new_key(body: &Value) -> Result<NewKey, KeyError> {
    let obj = object(body, &["key_id", "tags", "limits", "expires_at"])?;
    let key_id = match obj.get("key_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => {
            check_key_id(id)?;
            Some(id.clone())
        }
        Some(_) => return Err(invalid("field `key_id`: expected a string")),
    };
    Ok(NewKey {
        key_id,
        tags: tags_field(obj)?,
        limits: obj
            .get("limits")
            .map_or(Ok(Limits::default()), limits_field)?,
        expires_at_ms: obj.get("expires_at").map_or(Ok(None), expires_field)?,
    })
}

/// Validates a `PATCH /v1/keys/{id}` body.
pub fn parse_patch(body: &Value) -> Result<KeyPatch, KeyError> {
    let obj = object(body, &["tags", "limits", "status", "expires_at"])?;
    let status = match obj.get("status") {
        None => None,
        Some(Value::String(s)) => Some(KeyStatus::parse(s).ok_or_else(|| {
            invalid(format!(
                "field `status`: expected \"active\" or \"revoked\", got {s:?}"
            ))
        })?),
        Some(_) => {
            return Err(invalid(
                "field `status`: expected \"active\" or \"revoked\"",
            ))
        }
    };
    Ok(KeyPatch {
        tags: obj
            .contains_key("tags")
            .then(|| tags_field(obj))
            .transpose()?,
        limits: obj.get("limits").map(limits_field).transpose()?,
        status,
        expires_at_ms: obj.get("expires_at").map(expires_field).transpose()?,
    })
}

/// Validates a rotate body: `{"grace_seconds": n}`; an empty body or no
/// field is 0 (the old secret stops at once).
pub fn parse_grace_seconds(body: &Value) -> Result<u64, KeyError> {
    if body.is_null() {
        return Ok(0);
    }
    let obj = object(body, &["grace_seconds"])?;
    match obj.get("grace_seconds") {
        None | Some(Value::Null) => Ok(0),
        Some(v) => v
            .as_u64()
            .filter(|n| *n <= MAX_GRACE_SECONDS)
            .ok_or_else(|| {
                invalid(format!(
                    "field `grace_seconds`: expected an integer 0..={MAX_GRACE_SECONDS} (30 days)"
                ))
            }),
    }
}

/// Validates a bulk revocation body `{"tags":{…}}`: at least one pair (an
/// empty filter would revoke every key).
pub fn parse_tag_filter(body: &Value) -> Result<BTreeMap<String, String>, KeyError> {
    let obj = object(body, &["tags"])?;
    let tags = tags_field(obj)?;
    if tags.is_empty() {
        return Err(invalid(
            "field `tags`: give at least one tag (an empty filter would revoke every key)",
        ));
    }
    Ok(tags)
}

#[cfg(test)]
mod tests;
