//! The price table (LiteLLM's `model_prices_and_context_window.json` format)
//! and the cost of one record.

use std::collections::HashMap;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::record::{Tokens, UsageRecord};

/// The table compiled into the binary; `AISPEND_PRICES` replaces it.
pub const EMBEDDED_PRICES: &str = include_str!("../../../prices/model_prices.json");

/// Per-token prices of one model, in USD.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelPrice {
    pub input: f64,
    pub output: f64,
    pub cache_read: f64,
    pub cache_write: f64,
    /// The model's output limit (LiteLLM `max_output_tokens`), if known:
    /// bounds a strict budget's reservation when a call sets none.
    pub max_output_tokens: Option<u64>,
}

impl ModelPrice {
    /// Cost of the tokens of one call.
    ///
    /// `input` includes cache reads and cache writes (CONTRACTS §3), so only the
    /// remainder is billed at the plain input price; reasoning tokens are
    /// already part of `output` and are not added again.
    pub fn cost(&self, t: &Tokens) -> f64 {
        let uncached = t
            .input
            .saturating_sub(t.cached_input)
            .saturating_sub(t.cache_write_input);
        uncached as f64 * self.input
            + t.cached_input as f64 * self.cache_read
            + t.cache_write_input as f64 * self.cache_write
            + t.output as f64 * self.output
    }
}

/// The fields we read from one LiteLLM entry; the others are ignored.
#[derive(Deserialize)]
struct LiteLlmEntry {
    input_cost_per_token: Option<f64>,
    output_cost_per_token: Option<f64>,
    cache_read_input_token_cost: Option<f64>,
    cache_creation_input_token_cost: Option<f64>,
    /// Read leniently (some entries carry it as a float or text): a shape
    /// we cannot read leaves it unknown rather than dropping the model.
    max_output_tokens: Option<serde_json::Value>,
}

#[derive(Debug, Clone)]
pub struct PriceTable {
    version: String,
    models: HashMap<String, ModelPrice>,
}

impl PriceTable {
    /// The embedded default table.
    pub fn embedded() -> Result<Self, String> {
        Self::from_json(EMBEDDED_PRICES.as_bytes())
    }

    /// Parses a price file. Entries without an input price (LiteLLM's
    /// `sample_spec`, image-only models) are skipped; a negative or non-finite
    /// price is an error, since it would silently corrupt every cost.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let raw: HashMap<String, serde_json::Value> = serde_json::from_slice(bytes)
            .map_err(|e| format!("price file is not valid JSON: {e}"))?;
        let mut models = HashMap::with_capacity(raw.len());
        for (name, value) in raw {
            // LiteLLM documents its fields in a fake `sample_spec` model.
            if name == "sample_spec" {
                continue;
            }
            let Ok(entry) = serde_json::from_value::<LiteLlmEntry>(value) else {
                continue;
            };
            let Some(input) = entry.input_cost_per_token else {
                continue;
            };
            let price = ModelPrice {
                input,
                output: entry.output_cost_per_token.unwrap_or(0.0),
                cache_read: entry.cache_read_input_token_cost.unwrap_or(input),
                cache_write: entry.cache_creation_input_token_cost.unwrap_or(input),
                max_output_tokens: entry
                    .max_output_tokens
                    .as_ref()
                    .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f as u64)))
                    .filter(|n| *n > 0),
            };
            let all = [
                price.input,
                price.output,
                price.cache_read,
                price.cache_write,
            ];
            if all.iter().any(|p| !p.is_finite() || *p < 0.0) {
                return Err(format!(
                    "price of model {name:?} is negative or not a number"
                ));
            }
            models.insert(name, price);
        }
        if models.is_empty() {
            return Err(String::from(
                "price file holds no model with input_cost_per_token",
            ));
        }
        Ok(Self {
            version: version_of(bytes),
            models,
        })
    }

    /// Short hash of the file bytes: every price change is a new version.
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn len(&self) -> usize {
        self.models.len()
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// Finds the price of `model` as reported by `provider`: exact id, then
    /// `<provider>/<model>`, then the same two with a date or version suffix
    /// stripped (`gpt-4o-mini-2024-07-18` → `gpt-4o-mini`).
    pub fn lookup(&self, provider: &str, model: &str) -> Option<&ModelPrice> {
        // Gemini reports `models/gemini-2.5-flash` in some APIs.
        let model = model.strip_prefix("models/").unwrap_or(model);
        self.lookup_exact(provider, model).or_else(|| {
            let base = strip_version_suffix(model)?;
            self.lookup_exact(provider, base)
        })
    }

    fn lookup_exact(&self, provider: &str, model: &str) -> Option<&ModelPrice> {
        self.models
            .get(model)
            .or_else(|| self.models.get(&format!("{provider}/{model}")))
    }

    /// Cost of a record, or `None` when it has no model or the model is unknown.
    pub fn cost_of(&self, record: &UsageRecord) -> Option<f64> {
        let model = record
            .model
            .as_deref()
            .or(record.requested_model.as_deref())?;
        self.lookup(&record.provider, model)
            .map(|price| price.cost(&record.tokens))
    }
}

fn version_of(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// Strips one trailing date or version: `-2024-07-18`, `-20250929`, `@20250929`,
/// `-001`, `-0125`, `-latest`. Returns `None` when there is nothing to strip.
pub fn strip_version_suffix(model: &str) -> Option<&str> {
    // `-YYYY-MM-DD`
    if let Some(prefix) = model.get(..model.len().saturating_sub(11)) {
        let tail = &model[prefix.len()..];
        let b = tail.as_bytes();
        if b.len() == 11
            && b[0] == b'-'
            && b[5] == b'-'
            && b[8] == b'-'
            && [1, 2, 3, 4, 6, 7, 9, 10]
                .iter()
                .all(|&i| b[i].is_ascii_digit())
            && !prefix.is_empty()
        {
            return Some(prefix);
        }
    }
    let (prefix, tail) = model.rsplit_once(['-', '@'])?;
    if prefix.is_empty() {
        return None;
    }
    let is_digits = !tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit());
    let is_suffix = tail == "latest"
        || (is_digits && tail.len() == 8)
        // `-001`: a zero-led version, not a size such as `-405`.
        || (is_digits && tail.len() == 3 && tail.starts_with('0'))
        // `-0125`, `-1106`: a month-day snapshot.
        || (is_digits && tail.len() == 4 && is_month_day(tail));
    is_suffix.then_some(prefix)
}

fn is_month_day(mmdd: &str) -> bool {
    let month = mmdd.get(..2).and_then(|m| m.parse::<u8>().ok());
    let day = mmdd.get(2..).and_then(|d| d.parse::<u8>().ok());
    matches!((month, day), (Some(1..=12), Some(1..=31)))
}

#[cfg(test)]
mod tests;

pub mod book;
