//! The filter's one JSON config (plugin/CONFIG.md): types, defaults and
//! validation. Every error names the field path, because the only feedback an
//! operator gets is one log line when the plugin refuses to start.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

/// Canonical tags every deployment knows (CONTRACTS §2); `tags.extra` adds more.
pub const CANONICAL_TAGS: [&str; 5] = ["org", "team", "project", "cost_center", "environment"];

/// Longest tag value (CONTRACTS §2).
pub const MAX_TAG_VALUE: usize = 128;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub gateway: Gateway,
    #[serde(default)]
    pub identity: IdentityConfig,
    #[serde(default)]
    pub tags: TagsConfig,
    #[serde(default)]
    pub providers: ProvidersConfig,
    pub collector: CollectorConfig,
    #[serde(default)]
    pub usage: UsageConfig,
    #[serde(default)]
    pub caps: CapsConfig,
    #[serde(default)]
    pub limits: RateLimitsConfig,
    /// Signed tags (`x-aispend-signature`); absent: no signature.
    #[serde(default)]
    pub signing: Option<SigningConfig>,
}

/// The keys of the tag signature (README "Signed tags"): the first signs;
/// the others are checked like it, so a rotation is a reorder.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SigningConfig {
    pub keys: Vec<SigningKey>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SigningKey {
    pub id: String,
    pub secret: Secret,
}

/// A secret string: its `Debug` form never shows it.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.0.len())
    }
}

/// Shortest signing secret (HMAC-SHA256: a key shorter than the digest
/// weakens it).
pub const MIN_SIGNING_SECRET: usize = 32;

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Gateway {
    #[default]
    Envoy,
    Kong,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    ApiKey,
    Jwt,
    KongConsumer,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    #[serde(default = "default_sources")]
    pub sources: Vec<Source>,
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    #[serde(default)]
    pub jwt: Option<JwtConfig>,
    #[serde(default)]
    pub kong_consumer: KongConsumerConfig,
    /// Keys issued over the collector's API (`GET /v1/keys/registry`), polled.
    #[serde(default)]
    pub registry: Option<RegistryConfig>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            sources: default_sources(),
            keys: Vec::new(),
            jwt: None,
            kong_consumer: KongConsumerConfig::default(),
            registry: None,
        }
    }
}

/// The key registry poll (SPEC §8): where, with which token, how often.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Default: `collector.cluster`.
    #[serde(default)]
    pub cluster: Option<String>,
    /// Default: `identity.registry.cluster` if set, else `collector.authority`.
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default = "default_registry_path")]
    pub path: String,
    /// Gateway-role token; default `collector.token` (the ingest token).
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default = "default_poll_interval_ms")]
    pub poll_ms: u64,
    /// A larger snapshot is refused whole (the last good one stays).
    #[serde(default = "default_registry_max_bytes")]
    pub max_bytes: usize,
}

impl RegistryConfig {
    pub fn cluster<'a>(&'a self, collector: &'a CollectorConfig) -> &'a str {
        collector.poll_cluster(self.cluster.as_deref())
    }

    pub fn authority<'a>(&'a self, collector: &'a CollectorConfig) -> &'a str {
        collector.poll_authority(self.authority.as_deref(), self.cluster.as_deref())
    }

    pub fn token<'a>(&'a self, collector: &'a CollectorConfig) -> &'a str {
        self.token.as_deref().unwrap_or(&collector.token)
    }
}

fn default_registry_path() -> String {
    "/v1/keys/registry".into()
}
/// Room for about 200,000 keys (about 330 bytes each in the collector's JSON).
pub const DEFAULT_REGISTRY_MAX_BYTES: usize = 64 << 20;
fn default_registry_max_bytes() -> usize {
    DEFAULT_REGISTRY_MAX_BYTES
}

fn default_sources() -> Vec<Source> {
    vec![Source::ApiKey]
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    #[default]
    Active,
    Revoked,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    pub key_id: String,
    pub sha256: String,
    #[serde(default)]
    pub status: KeyStatus,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub limits: Option<LimitsConfig>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    #[serde(default)]
    pub requests_per_minute: Option<u64>,
    #[serde(default)]
    pub tokens_per_minute: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    #[serde(default = "default_jwt_namespace")]
    pub metadata_namespace: String,
    #[serde(default = "default_jwt_payload_key")]
    pub payload_key: String,
    #[serde(default = "default_key_id_claim")]
    pub key_id_claim: String,
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
}

fn default_jwt_namespace() -> String {
    "envoy.filters.http.jwt_authn".into()
}
fn default_jwt_payload_key() -> String {
    "jwt_payload".into()
}
fn default_key_id_claim() -> String {
    "sub".into()
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KongConsumerConfig {
    #[serde(default)]
    pub trusted: bool,
    #[serde(default)]
    pub tags_by_consumer: BTreeMap<String, BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    #[default]
    Strip,
    Reject,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TagsConfig {
    #[serde(default)]
    pub required: Vec<String>,
    #[serde(default)]
    pub extra: Vec<String>,
    #[serde(default)]
    pub on_conflict: OnConflict,
    #[serde(default)]
    pub labels: LabelsConfig,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LabelsConfig {
    #[serde(default)]
    pub allow: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProvidersConfig {
    #[serde(default)]
    pub openai: Option<ProviderConfig>,
    #[serde(default)]
    pub azure: Option<ProviderConfig>,
    #[serde(default)]
    pub anthropic: Option<ProviderConfig>,
    #[serde(default)]
    pub gemini: Option<ProviderConfig>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    #[serde(default)]
    pub credential: Option<CredentialConfig>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CredentialConfig {
    pub header: String,
    pub value: String,
    /// The provider's id of this credential (an API key id, a project):
    /// recorded as `credential_id` so that reconciliation can match the
    /// provider's bill per credential (SPEC §13). Never the secret.
    #[serde(default)]
    pub id: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    pub cluster: String,
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default = "default_collector_path")]
    pub path: String,
    pub token: String,
    #[serde(default = "default_flush_interval_ms")]
    pub flush_interval_ms: u64,
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Upper bound of one batch body in bytes (the collector refuses bodies
    /// over 8 MiB with 413).
    #[serde(default = "default_max_batch_bytes")]
    pub max_batch_bytes: usize,
    #[serde(default = "default_max_buffer")]
    pub max_buffer: usize,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
}

impl CollectorConfig {
    pub fn authority(&self) -> &str {
        self.authority.as_deref().unwrap_or(&self.cluster)
    }

    /// Where a poller that may name its own cluster (caps, key registry)
    /// sends: its own cluster, else the collector's.
    pub fn poll_cluster<'a>(&'a self, own: Option<&'a str>) -> &'a str {
        own.unwrap_or(&self.cluster)
    }

    /// That poller's `:authority`: its own, else its own cluster when set,
    /// else the collector's authority.
    pub fn poll_authority<'a>(
        &'a self,
        own: Option<&'a str>,
        own_cluster: Option<&'a str>,
    ) -> &'a str {
        own.or(own_cluster).unwrap_or_else(|| self.authority())
    }
}

fn default_collector_path() -> String {
    "/v1/records".into()
}
fn default_flush_interval_ms() -> u64 {
    1000
}
fn default_max_batch() -> usize {
    500
}
fn default_max_batch_bytes() -> usize {
    1 << 20
}
/// The collector's request body limit.
pub const COLLECTOR_MAX_BODY_BYTES: usize = 8 << 20;
fn default_max_buffer() -> usize {
    10_000
}
fn default_timeout_ms() -> u64 {
    5000
}
fn default_max_backoff_ms() -> u64 {
    30_000
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UsageConfig {
    #[serde(default = "yes")]
    pub openai_stream_usage: bool,
    #[serde(default = "yes")]
    pub strip_accept_encoding: bool,
    #[serde(default)]
    pub unknown_paths: UnknownPaths,
    /// Largest request body that passes (413 above).
    #[serde(default = "default_max_request_body_bytes")]
    pub max_request_body_bytes: usize,
    /// Largest request body the host is asked to hold so it can be rewritten
    /// (`openai_stream_usage`); larger ones stream through unbuffered.
    #[serde(default = "default_max_buffered_body_bytes")]
    pub max_buffered_body_bytes: usize,
    /// Statuses of refused calls that still leave a record (zero tokens,
    /// `error` = the refusal's code): any of 401 (a known key), 402, 429, 503.
    #[serde(default = "default_record_refusals")]
    pub record_refusals: RefusalSet,
}

/// A small set of refusal statuses (bit per status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusalSet(u8);

impl RefusalSet {
    pub const STATUSES: [u32; 4] = [401, 402, 429, 503];

    pub fn contains(self, status: u32) -> bool {
        Self::STATUSES
            .iter()
            .position(|s| *s == status)
            .is_some_and(|i| self.0 & (1 << i) != 0)
    }
}

impl<'de> Deserialize<'de> for RefusalSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let statuses = Vec::<u32>::deserialize(d)?;
        let mut bits = 0u8;
        for status in statuses {
            let Some(i) = Self::STATUSES.iter().position(|s| *s == status) else {
                return Err(serde::de::Error::custom(format!(
                    "{status} is not a refusal the filter records (401, 402, 429, 503)"
                )));
            };
            bits |= 1 << i;
        }
        Ok(RefusalSet(bits))
    }
}

fn default_record_refusals() -> RefusalSet {
    RefusalSet(0b0110) // 402 and 429
}

fn default_max_request_body_bytes() -> usize {
    32 << 20
}
/// Half of Envoy's default `per_connection_buffer_limit_bytes` (1 MiB): the
/// host may add a large read to the held body before the filter sees it.
fn default_max_buffered_body_bytes() -> usize {
    512 << 10
}

impl Default for UsageConfig {
    fn default() -> Self {
        UsageConfig {
            openai_stream_usage: true,
            strip_accept_encoding: true,
            unknown_paths: UnknownPaths::Meter,
            max_request_body_bytes: default_max_request_body_bytes(),
            max_buffered_body_bytes: default_max_buffered_body_bytes(),
            record_refusals: default_record_refusals(),
        }
    }
}

/// A path on the filter's route that is no known LLM call.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UnknownPaths {
    /// Forward it and record it as provider/operation `unknown`.
    #[default]
    Meter,
    /// Answer 404 `unknown_path`; nothing goes upstream.
    Reject,
}

fn yes() -> bool {
    true
}

/// What to do when a control cannot be enforced (caps too old, shared data
/// refusing writes): keep serving and count it, or refuse.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    #[default]
    FailOpen,
    FailClosed,
}

/// Budget cap flags polled from the collector (`GET /v1/caps`, CONTRACTS §6).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CapsConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Default: `collector.cluster`.
    #[serde(default)]
    pub cluster: Option<String>,
    /// Default: `caps.cluster` if set, else `collector.authority`.
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default = "default_caps_path")]
    pub path: String,
    /// Read token; without one the poll carries no `authorization`.
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    #[serde(default = "default_stale_after_ms")]
    pub stale_after_ms: u64,
    #[serde(default)]
    pub failure_mode: FailureMode,
    /// Strict budgets: leases, reservations, output-limit clamping (SPEC §6).
    #[serde(default)]
    pub strict: StrictConfig,
}

/// What a strict call does with a model the collector has no price for.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Unpriced {
    /// 402 once the collector said it has no price; 503 + `retry-after`
    /// while its price has not been fetched yet.
    #[default]
    Refuse,
    /// Reserve `unpriced_reserve_usd` and settle to 0 (no price, no cost):
    /// such calls are outside the guarantee.
    Reserve,
}

/// `caps.strict`: how this gateway takes part in strict budgets.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StrictConfig {
    /// Hold leases of strict budgets (the caps poll then names this host).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// This gateway host's id on the poll; default: a random id shared by
    /// the workers of one host (a restart is a new host).
    #[serde(default)]
    pub host_id: Option<String>,
    /// A call whose output limit cannot be at least this is refused (402).
    #[serde(default = "default_min_output_tokens")]
    pub min_output_tokens: u64,
    /// The output limit set on a call that has none and whose model's
    /// maximum is unknown (the reservation's bound; the body then carries it).
    #[serde(default = "default_output_tokens")]
    pub default_output_tokens: u64,
    /// Input tokens counted per image, file or audio part in the body.
    #[serde(default = "default_media_tokens")]
    pub media_tokens: u64,
    /// Input tokens counted for context the provider keeps between calls
    /// and the body does not hold (the Responses API's
    /// `previous_response_id`, `conversation` or stored `prompt`, Gemini's
    /// `cachedContent`).
    #[serde(default = "default_context_tokens")]
    pub context_tokens: u64,
    #[serde(default)]
    pub unpriced: Unpriced,
    #[serde(default)]
    pub unpriced_reserve_usd: f64,
    /// Models (`<provider>:<model>`, e.g. `openai:gpt-4o-mini`) whose prices
    /// every poll fetches, so their first strict call need not wait for one.
    #[serde(default)]
    pub models: Vec<String>,
}

impl Default for StrictConfig {
    fn default() -> Self {
        StrictConfig {
            enabled: true,
            host_id: None,
            min_output_tokens: default_min_output_tokens(),
            default_output_tokens: default_output_tokens(),
            media_tokens: default_media_tokens(),
            context_tokens: default_context_tokens(),
            unpriced: Unpriced::Refuse,
            unpriced_reserve_usd: 0.0,
            models: Vec::new(),
        }
    }
}

fn default_min_output_tokens() -> u64 {
    16
}
fn default_output_tokens() -> u64 {
    4096
}
fn default_media_tokens() -> u64 {
    3000
}
fn default_context_tokens() -> u64 {
    128_000
}

impl Default for CapsConfig {
    fn default() -> Self {
        CapsConfig {
            enabled: true,
            cluster: None,
            authority: None,
            path: default_caps_path(),
            token: None,
            poll_interval_ms: default_poll_interval_ms(),
            stale_after_ms: default_stale_after_ms(),
            failure_mode: FailureMode::FailOpen,
            strict: StrictConfig::default(),
        }
    }
}

impl CapsConfig {
    /// Where to poll: `caps.cluster`, else the collector's cluster.
    pub fn cluster<'a>(&'a self, collector: &'a CollectorConfig) -> &'a str {
        collector.poll_cluster(self.cluster.as_deref())
    }

    /// `:authority` of the poll: `caps.authority`, else `caps.cluster` when
    /// set, else the collector's authority.
    pub fn authority<'a>(&'a self, collector: &'a CollectorConfig) -> &'a str {
        collector.poll_authority(self.authority.as_deref(), self.cluster.as_deref())
    }
}

fn default_caps_path() -> String {
    "/v1/caps".into()
}
fn default_poll_interval_ms() -> u64 {
    2000
}
fn default_stale_after_ms() -> u64 {
    10_000
}

/// Settings shared by every key's rate limits (the limits themselves are
/// per key: `identity.keys[].limits`).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsConfig {
    #[serde(default)]
    pub failure_mode: FailureMode,
}

/// A config error: where (`identity.keys[1].sha256`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid config at {}: {}", self.path, self.message)
    }
}

impl std::error::Error for ConfigError {}

pub(crate) fn err(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.into(),
        message: message.into(),
    }
}

/// Parse and validate the config document.
pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        // serde_json appends "at line L column C"; keep it, it helps with big files.
        err(
            // An unknown field named "" at the top has an empty path (fuzzing).
            if path == "." || path.is_empty() {
                "(root)".into()
            } else {
                path
            },
            e.into_inner().to_string(),
        )
    })?;
    validate(&config)?;
    Ok(config)
}

/// `[A-Za-z0-9._:/-]`, 1..=128 bytes (CONTRACTS §2).
pub fn valid_tag_value(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_TAG_VALUE
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'-'))
}

/// Tag names become header names (`x-aispend-<name>` with `_` → `-`), so
/// they are lowercase identifiers.
fn valid_tag_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && name
            .as_bytes()
            .first()
            .is_some_and(|b| b.is_ascii_lowercase())
}

fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn validate(c: &Config) -> Result<(), ConfigError> {
    let known_tag =
        |name: &str| CANONICAL_TAGS.contains(&name) || c.tags.extra.iter().any(|e| e == name);

    for (i, name) in c.tags.extra.iter().enumerate() {
        let path = format!("tags.extra[{i}]");
        if !valid_tag_name(name) {
            return Err(err(path, "expected a lowercase tag name ([a-z][a-z0-9_]*)"));
        }
        // `key-id`, `request-id` and `label-*` are the filter's own headers.
        if CANONICAL_TAGS.contains(&name.as_str())
            || matches!(name.as_str(), "key_id" | "request_id")
            || name.starts_with("label")
        {
            return Err(err(path, format!("`{name}` is reserved")));
        }
    }
    for (i, name) in c.tags.required.iter().enumerate() {
        if !known_tag(name) {
            return Err(err(
                format!("tags.required[{i}]"),
                format!("unknown tag `{name}` (add it to tags.extra)"),
            ));
        }
    }
    for (i, header) in c.tags.labels.allow.iter().enumerate() {
        let suffix = header.strip_prefix("x-aispend-label-").unwrap_or("");
        if suffix.is_empty() || !valid_header_name(header) {
            return Err(err(
                format!("tags.labels.allow[{i}]"),
                "expected a lowercase header name x-aispend-label-<name>",
            ));
        }
    }

    let id = &c.identity;
    if id.sources.is_empty() {
        return Err(err("identity.sources", "at least one source is needed"));
    }
    if id.sources.contains(&Source::Jwt) && id.jwt.is_none() {
        return Err(err(
            "identity.jwt",
            "required when identity.sources has \"jwt\"",
        ));
    }
    let check_tags = |path: &str, tags: &BTreeMap<String, String>| -> Result<(), ConfigError> {
        for (name, value) in tags {
            if !known_tag(name) {
                return Err(err(
                    format!("{path}.{name}"),
                    format!("unknown tag `{name}` (add it to tags.extra)"),
                ));
            }
            if !valid_tag_value(value) {
                return Err(err(
                    format!("{path}.{name}"),
                    "expected 1..128 characters of [A-Za-z0-9._:/-]",
                ));
            }
        }
        Ok(())
    };
    let mut seen_hashes = std::collections::HashSet::new();
    let mut seen_ids = std::collections::HashSet::new();
    for (i, key) in id.keys.iter().enumerate() {
        let base = format!("identity.keys[{i}]");
        if !valid_tag_value(&key.key_id) {
            return Err(err(
                format!("{base}.key_id"),
                "expected 1..128 characters of [A-Za-z0-9._:/-]",
            ));
        }
        if !seen_ids.insert(key.key_id.as_str()) {
            return Err(err(
                format!("{base}.key_id"),
                format!("duplicate key_id `{}`", key.key_id),
            ));
        }
        if parse_sha256_hex(&key.sha256).is_none() {
            return Err(err(format!("{base}.sha256"), "expected 64 hex characters"));
        }
        if !seen_hashes.insert(key.sha256.to_ascii_lowercase()) {
            return Err(err(format!("{base}.sha256"), "duplicate key hash"));
        }
        check_tags(&format!("{base}.tags"), &key.tags)?;
    }
    if let Some(jwt) = &id.jwt {
        for (tag, claim) in &jwt.claims {
            let path = format!("identity.jwt.claims.{tag}");
            if !known_tag(tag) {
                return Err(err(
                    path,
                    format!("unknown tag `{tag}` (add it to tags.extra)"),
                ));
            }
            if claim.is_empty() {
                return Err(err(path, "empty claim name"));
            }
        }
        if jwt.key_id_claim.is_empty() {
            return Err(err("identity.jwt.key_id_claim", "empty claim name"));
        }
    }
    for (consumer, tags) in &id.kong_consumer.tags_by_consumer {
        check_tags(
            &format!("identity.kong_consumer.tags_by_consumer.{consumer}"),
            tags,
        )?;
    }

    let providers = [
        ("openai", &c.providers.openai),
        ("azure", &c.providers.azure),
        ("anthropic", &c.providers.anthropic),
        ("gemini", &c.providers.gemini),
    ];
    for (name, p) in providers {
        if let Some(cred) = p.as_ref().and_then(|p| p.credential.as_ref()) {
            if !valid_header_name(&cred.header) {
                return Err(err(
                    format!("providers.{name}.credential.header"),
                    "expected a lowercase header name",
                ));
            }
            if cred.id.as_deref().is_some_and(|id| !valid_tag_value(id)) {
                return Err(err(
                    format!("providers.{name}.credential.id"),
                    "expected 1..128 characters of [A-Za-z0-9._:/-]",
                ));
            }
        }
    }

    let col = &c.collector;
    if col.cluster.is_empty() {
        return Err(err("collector.cluster", "must not be empty"));
    }
    if col.token.is_empty() {
        return Err(err("collector.token", "must not be empty"));
    }
    if !col.path.starts_with('/') {
        return Err(err("collector.path", "must start with /"));
    }
    if col.flush_interval_ms < 10 {
        return Err(err("collector.flush_interval_ms", "must be at least 10"));
    }
    if !(1..=10_000).contains(&col.max_batch) {
        return Err(err("collector.max_batch", "must be between 1 and 10000"));
    }
    let usage = &c.usage;
    if usage.max_request_body_bytes < 1024 {
        return Err(err("usage.max_request_body_bytes", "must be at least 1024"));
    }
    if usage.max_buffered_body_bytes > usage.max_request_body_bytes {
        return Err(err(
            "usage.max_buffered_body_bytes",
            "must be at most usage.max_request_body_bytes",
        ));
    }
    if !(1024..=COLLECTOR_MAX_BODY_BYTES).contains(&col.max_batch_bytes) {
        return Err(err(
            "collector.max_batch_bytes",
            "must be between 1024 and 8388608 (the collector's body limit)",
        ));
    }
    if col.max_buffer < col.max_batch {
        return Err(err(
            "collector.max_buffer",
            "must be at least collector.max_batch",
        ));
    }
    if col.timeout_ms == 0 {
        return Err(err("collector.timeout_ms", "must be positive"));
    }
    if col.max_backoff_ms < col.flush_interval_ms {
        return Err(err(
            "collector.max_backoff_ms",
            "must be at least collector.flush_interval_ms",
        ));
    }
    validate_caps(c)?;
    validate_registry(c)?;
    validate_signing(c)?;
    // What only one host can do (Kong: no clusters, no JWT metadata).
    crate::host::profile::Profile::new(c.gateway).check_config(c)
}

fn validate_strict(s: &StrictConfig) -> Result<(), ConfigError> {
    if let Some(id) = &s.host_id {
        let ok = !id.is_empty()
            && id.len() <= 128
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        if !ok {
            return Err(err(
                "caps.strict.host_id",
                "must match [A-Za-z0-9._:-]{1,128}",
            ));
        }
    }
    for (i, m) in s.models.iter().enumerate() {
        let ok = m
            .split_once(':')
            .is_some_and(|(p, model)| !p.is_empty() && !model.is_empty())
            && !m.chars().any(char::is_control);
        if !ok {
            return Err(err(
                format!("caps.strict.models[{i}]"),
                "must be <provider>:<model>, e.g. openai:gpt-4o-mini",
            ));
        }
    }
    if s.models.len() > crate::controls::lease::MAX_WANTS {
        return Err(err("caps.strict.models", "at most 64 models"));
    }
    if s.min_output_tokens == 0 {
        return Err(err("caps.strict.min_output_tokens", "must be at least 1"));
    }
    if s.default_output_tokens < s.min_output_tokens {
        return Err(err(
            "caps.strict.default_output_tokens",
            "must be at least caps.strict.min_output_tokens",
        ));
    }
    let reserve = s.unpriced_reserve_usd;
    if !reserve.is_finite() || reserve < 0.0 {
        return Err(err(
            "caps.strict.unpriced_reserve_usd",
            "must be a number >= 0",
        ));
    }
    if s.unpriced == Unpriced::Reserve && reserve <= 0.0 {
        return Err(err(
            "caps.strict.unpriced_reserve_usd",
            "must be > 0 when caps.strict.unpriced is \"reserve\"",
        ));
    }
    Ok(())
}

fn validate_caps(c: &Config) -> Result<(), ConfigError> {
    let caps = &c.caps;
    if caps.cluster.as_deref() == Some("") {
        return Err(err("caps.cluster", "must not be empty"));
    }
    if !caps.path.starts_with('/') {
        return Err(err("caps.path", "must start with /"));
    }
    if caps.token.as_deref() == Some("") {
        return Err(err(
            "caps.token",
            "must not be empty (leave it out instead)",
        ));
    }
    if caps.poll_interval_ms < 10 {
        return Err(err("caps.poll_interval_ms", "must be at least 10"));
    }
    if caps.stale_after_ms < caps.poll_interval_ms {
        return Err(err(
            "caps.stale_after_ms",
            "must be at least caps.poll_interval_ms",
        ));
    }
    validate_strict(&caps.strict)?;
    Ok(())
}

fn validate_registry(c: &Config) -> Result<(), ConfigError> {
    let Some(r) = &c.identity.registry else {
        return Ok(());
    };
    if !c.identity.sources.contains(&Source::ApiKey) {
        return Err(err(
            "identity.registry",
            "registry keys are API keys: add \"api_key\" to identity.sources",
        ));
    }
    if r.cluster.as_deref() == Some("") {
        return Err(err("identity.registry.cluster", "must not be empty"));
    }
    if r.authority.as_deref() == Some("") {
        return Err(err("identity.registry.authority", "must not be empty"));
    }
    if !r.path.starts_with('/') {
        return Err(err("identity.registry.path", "must start with /"));
    }
    if r.token.as_deref() == Some("") {
        return Err(err(
            "identity.registry.token",
            "must not be empty (leave it out to use collector.token)",
        ));
    }
    if !(100..=3_600_000).contains(&r.poll_ms) {
        return Err(err(
            "identity.registry.poll_ms",
            "must be between 100 and 3600000",
        ));
    }
    if !(1024..=(256 << 20)).contains(&r.max_bytes) {
        return Err(err(
            "identity.registry.max_bytes",
            "must be between 1024 and 268435456",
        ));
    }
    Ok(())
}

fn validate_signing(c: &Config) -> Result<(), ConfigError> {
    let Some(s) = &c.signing else {
        return Ok(());
    };
    if s.keys.is_empty() {
        return Err(err("signing.keys", "at least one key is needed"));
    }
    for (i, key) in s.keys.iter().enumerate() {
        let base = format!("signing.keys[{i}]");
        let id_ok = !key.id.is_empty()
            && key.id.len() <= 64
            && key
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !id_ok {
            return Err(err(
                format!("{base}.id"),
                "expected 1..64 characters of [A-Za-z0-9._-]",
            ));
        }
        if s.keys.iter().take(i).any(|k| k.id == key.id) {
            return Err(err(
                format!("{base}.id"),
                format!("duplicate key id `{}`", key.id),
            ));
        }
        // The message names the length, never the secret.
        let len = key.secret.expose().len();
        if len < MIN_SIGNING_SECRET {
            return Err(err(
                format!("{base}.secret"),
                format!("must be at least {MIN_SIGNING_SECRET} bytes (got {len}); e.g. `openssl rand -hex 32`"),
            ));
        }
    }
    Ok(())
}

/// `host:port` with a 1..65535 port; host is a name, IPv4 or `[IPv6]`.
pub fn is_host_port(target: &str) -> bool {
    let Some((host, port)) = target.rsplit_once(':') else {
        return false;
    };
    let port_ok = !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u32>().is_ok_and(|p| (1..=65_535).contains(&p));
    let host_ok = if let Some(inner) = host.strip_prefix('[') {
        inner.strip_suffix(']').is_some_and(|ip| {
            !ip.is_empty() && ip.bytes().all(|b| b.is_ascii_hexdigit() || b == b':')
        })
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    };
    port_ok && host_ok
}

/// 64 hex characters (either case) → the 32-byte digest.
pub fn parse_sha256_hex(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (slot, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let hi = hex_value(*pair.first()?)?;
        let lo = hex_value(*pair.get(1)?)?;
        *slot = (hi << 4) | lo;
    }
    Some(out)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
