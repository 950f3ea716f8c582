//! The usage record (CONTRACTS §4) as the collector keeps it, after validation.

use std::collections::BTreeMap;

/// The five normalized token counts of CONTRACTS §3.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    /// All prompt tokens billed, cache reads and cache writes included.
    pub input: u64,
    /// Prompt tokens served from cache (a share of `input`).
    pub cached_input: u64,
    /// Prompt tokens written to cache (a share of `input`).
    pub cache_write_input: u64,
    /// All generated tokens, reasoning included.
    pub output: u64,
    /// The reasoning share of `output`.
    pub reasoning: u64,
}

/// One validated call record. Field names follow the wire format.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRecord {
    pub id: String,
    /// Request start, milliseconds since the Unix epoch (UTC).
    pub ts_ms: i64,
    pub duration_ms: Option<u64>,
    pub ttft_ms: Option<u64>,
    pub gateway: String,
    pub key_id: String,
    pub auth: Option<String>,
    /// Canonical and operator tags; a `BTreeMap` so the serialized form is
    /// canonical (sorted keys) and can be used as a grouping key.
    pub tags: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub provider: String,
    pub operation: String,
    pub model: Option<String>,
    pub requested_model: Option<String>,
    pub stream: Option<bool>,
    pub status: u16,
    pub error: Option<String>,
    pub tokens: Tokens,
}

impl UsageRecord {
    /// A call counts as an error when the upstream answered >= 400 or the
    /// filter recorded an error code (e.g. a stream cut short with a 200).
    pub fn is_error(&self) -> bool {
        self.status >= 400 || self.error.is_some()
    }

    /// A call the gateway filter refused itself (it never reached a
    /// provider): its `error` is one of `DENIED_ERRORS`.
    pub fn is_denied(&self) -> bool {
        self.error
            .as_deref()
            .is_some_and(|e| DENIED_ERRORS.contains(&e))
    }
}

/// The `error` codes of the calls the filter refuses and still records
/// (401 with a known key id, 429, 402, 503): `denied` in usage counts them.
/// The stores' SQL (raw sums, migrations) spells the same list; the store
/// suite checks every code on both.
pub const DENIED_ERRORS: [&str; 4] = [
    "invalid_api_key",
    "rate_limit_exceeded",
    "budget_exceeded",
    "caps_unavailable",
];

/// A record with the price applied at ingest.
#[derive(Debug, Clone, PartialEq)]
pub struct PricedRecord {
    pub record: UsageRecord,
    /// `None` when the model is not in the price table (kept, never dropped).
    pub cost_usd: Option<f64>,
    /// Which price table produced `cost_usd`.
    pub price_version: String,
}

#[cfg(test)]
impl UsageRecord {
    /// A bare record for tests: key `k`, envoy, openai chat, status 200, no
    /// tags, labels, model or tokens. A test sets what it checks with
    /// `UsageRecord { tokens, ..UsageRecord::bare(id, ts_ms) }`.
    pub(crate) fn bare(id: &str, ts_ms: i64) -> Self {
        UsageRecord {
            id: id.to_owned(),
            ts_ms,
            duration_ms: None,
            ttft_ms: None,
            gateway: "envoy".into(),
            key_id: "k".into(),
            auth: None,
            tags: BTreeMap::new(),
            labels: BTreeMap::new(),
            provider: "openai".into(),
            operation: "chat".into(),
            model: None,
            requested_model: None,
            stream: None,
            status: 200,
            error: None,
            tokens: Tokens::default(),
        }
    }
}

/// Canonical JSON text of a tag or label map (sorted keys, no spaces).
pub fn map_to_json(map: &BTreeMap<String, String>) -> String {
    // Serializing a map of strings cannot fail; fall back to `{}` anyway so
    // there is no panic path.
    serde_json::to_string(map).unwrap_or_else(|_| String::from("{}"))
}
