//! Prices in time (SPEC §13): the base table (embedded or `AISPEND_PRICES`,
//! in effect since always) plus price changes per provider + model, each in
//! effect from its `effective_from`, and contract discounts per provider or
//! per model. A record is priced by what is in effect at its `ts`; a change
//! never reprices stored records (only `POST /v1/prices/recompute` does).

use std::sync::{Arc, RwLock};

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::{strip_version_suffix, ModelPrice, PriceTable};
use crate::domain::record::UsageRecord;
use crate::domain::time::{format_rfc3339_ms, parse_rfc3339_ms, DAY_MS};

/// A new list price of one provider's model, from `effective_from_ms` on.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceChange {
    pub provider: String,
    pub model: String,
    pub effective_from_ms: i64,
    pub price: ModelPrice,
}

/// A contract discount (a fraction of the list price, `0 <= fraction < 1`)
/// on every model of a provider (`model` `None`) or on one model, from
/// `effective_from_ms` (a UTC day start) on.
#[derive(Debug, Clone, PartialEq)]
pub struct Discount {
    pub provider: String,
    pub model: Option<String>,
    pub effective_from_ms: i64,
    pub fraction: f64,
}

fn short_hash(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .take(5)
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl PriceChange {
    /// The change's `price_version`: `p-` and a hash of its content.
    pub fn version(&self) -> String {
        let p = &self.price;
        format!(
            "p-{}",
            short_hash(&format!(
                "{}|{}|{}|{}|{}|{}|{}",
                self.provider,
                self.model,
                self.effective_from_ms,
                p.input,
                p.output,
                p.cache_read,
                p.cache_write
            ))
        )
    }

    pub fn to_json(&self) -> Value {
        json!({
            "version": self.version(),
            "provider": self.provider,
            "model": self.model,
            "effective_from": format_rfc3339_ms(self.effective_from_ms),
            "input_cost_per_token": self.price.input,
            "output_cost_per_token": self.price.output,
            "cache_read_input_token_cost": self.price.cache_read,
            "cache_creation_input_token_cost": self.price.cache_write,
        })
    }
}

impl Discount {
    /// The discount's part of a `price_version`: `d-` and a content hash.
    pub fn version(&self) -> String {
        format!(
            "d-{}",
            short_hash(&format!(
                "{}|{}|{}|{}",
                self.provider,
                self.model.as_deref().unwrap_or("*"),
                self.effective_from_ms,
                self.fraction
            ))
        )
    }

    pub fn to_json(&self) -> Value {
        json!({
            "version": self.version(),
            "provider": self.provider,
            "model": self.model,
            "effective_from": format_rfc3339_ms(self.effective_from_ms),
            "discount": self.fraction,
        })
    }
}

/// The changes and discounts a body or file asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceChanges {
    pub prices: Vec<PriceChange>,
    pub discounts: Vec<Discount>,
}

/// The `model` names a record's model may be priced under, most precise first.
fn model_candidates(model: &str) -> Vec<&str> {
    let model = model.strip_prefix("models/").unwrap_or(model);
    let mut out = vec![model];
    if let Some(base) = strip_version_suffix(model) {
        out.push(base);
    }
    out
}

/// The base table and every change and discount, each list sorted by
/// `effective_from_ms`.
#[derive(Debug, Clone)]
pub struct PriceBook {
    base: Arc<PriceTable>,
    changes: Vec<PriceChange>,
    discounts: Vec<Discount>,
}

/// What prices one record: the list price, its discount, the version.
#[derive(Debug, Clone, PartialEq)]
pub struct Quote {
    pub list: ModelPrice,
    /// The discount fraction in effect (0 without one).
    pub discount: f64,
    pub version: String,
}

impl PriceBook {
    pub fn new(
        base: Arc<PriceTable>,
        mut changes: Vec<PriceChange>,
        mut discounts: Vec<Discount>,
    ) -> Self {
        changes.sort_by_key(|c| c.effective_from_ms);
        discounts.sort_by_key(|d| d.effective_from_ms);
        Self {
            base,
            changes,
            discounts,
        }
    }

    /// The base table alone (no change, no discount).
    pub fn base_only(base: Arc<PriceTable>) -> Self {
        Self::new(base, Vec::new(), Vec::new())
    }

    pub fn base(&self) -> &PriceTable {
        &self.base
    }

    pub fn changes(&self) -> &[PriceChange] {
        &self.changes
    }

    pub fn discounts(&self) -> &[Discount] {
        &self.discounts
    }

    /// The latest change of (provider, model) in effect at `ts_ms`.
    fn change_at(&self, provider: &str, model: &str, ts_ms: i64) -> Option<&PriceChange> {
        let names = model_candidates(model);
        names.iter().find_map(|name| {
            self.changes.iter().rev().find(|c| {
                c.provider == provider && c.model == *name && c.effective_from_ms <= ts_ms
            })
        })
    }

    /// The discount in effect at `ts_ms`: one naming the model wins over a
    /// provider-wide one.
    pub fn discount_at(
        &self,
        provider: &str,
        model: Option<&str>,
        ts_ms: i64,
    ) -> Option<&Discount> {
        let in_effect = |d: &&Discount| d.provider == provider && d.effective_from_ms <= ts_ms;
        let by_model = model.and_then(|m| {
            let names = model_candidates(m);
            names.iter().find_map(|name| {
                self.discounts
                    .iter()
                    .rev()
                    .filter(in_effect)
                    .find(|d| d.model.as_deref() == Some(*name))
            })
        });
        by_model.or_else(|| {
            self.discounts
                .iter()
                .rev()
                .filter(in_effect)
                .find(|d| d.model.is_none())
        })
    }

    /// The price of (provider, model) in effect at `ts_ms`, if known.
    pub fn quote(&self, provider: &str, model: &str, ts_ms: i64) -> Option<Quote> {
        let (list, version) = match self.change_at(provider, model, ts_ms) {
            Some(c) => (c.price, c.version()),
            None => (
                *self.base.lookup(provider, model)?,
                self.base.version().to_owned(),
            ),
        };
        let (discount, version) = match self.discount_at(provider, Some(model), ts_ms) {
            Some(d) => (d.fraction, format!("{version}+{}", d.version())),
            None => (0.0, version),
        };
        Some(Quote {
            list,
            discount,
            version,
        })
    }

    /// The cost of a record (after discount) and the `price_version` that
    /// priced it (the base table's version when the record has no price).
    pub fn cost_of(&self, record: &UsageRecord) -> (Option<f64>, String) {
        let model = record
            .model
            .as_deref()
            .or(record.requested_model.as_deref());
        match model.and_then(|m| self.quote(&record.provider, m, record.ts_ms)) {
            Some(q) => (
                Some(q.list.cost(&record.tokens) * (1.0 - q.discount)),
                q.version,
            ),
            None => (None, self.base.version().to_owned()),
        }
    }

    /// A fingerprint of everything in the book, for recompute versions.
    pub fn fingerprint(&self) -> String {
        let mut text = self.base.version().to_owned();
        for c in &self.changes {
            text.push('|');
            text.push_str(&c.version());
        }
        for d in &self.discounts {
            text.push('|');
            text.push_str(&d.version());
        }
        short_hash(&text)
    }
}

/// A record holding only what pricing reads (repricing stored records).
pub fn pricing_input(
    ts_ms: i64,
    provider: String,
    model: Option<String>,
    requested_model: Option<String>,
    tokens: crate::domain::record::Tokens,
) -> UsageRecord {
    UsageRecord {
        id: String::new(),
        ts_ms,
        duration_ms: None,
        ttft_ms: None,
        gateway: String::new(),
        key_id: String::new(),
        auth: None,
        tags: Default::default(),
        labels: Default::default(),
        provider,
        operation: String::new(),
        model,
        requested_model,
        stream: None,
        status: 200,
        error: None,
        tokens,
    }
}

/// The book in use, swapped whole when a change is stored.
#[derive(Debug)]
pub struct PriceBookCell(RwLock<Arc<PriceBook>>);

impl PriceBookCell {
    pub fn new(book: PriceBook) -> Self {
        Self(RwLock::new(Arc::new(book)))
    }

    pub fn get(&self) -> Arc<PriceBook> {
        match self.0.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn set(&self, book: PriceBook) {
        match self.0.write() {
            Ok(mut guard) => *guard = Arc::new(book),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(book),
        }
    }
}

// ---- Parsing a body or a file --------------------------------------------

fn field<'a>(obj: &'a Map<String, Value>, at: &str, name: &str) -> Result<&'a Value, String> {
    obj.get(name)
        .ok_or_else(|| format!("{at}.{name}: required"))
}

fn text_field(obj: &Map<String, Value>, at: &str, name: &str) -> Result<String, String> {
    match field(obj, at, name)? {
        Value::String(s) if !s.is_empty() && s.len() <= 256 && !s.contains(char::is_control) => {
            Ok(s.clone())
        }
        _ => Err(format!(
            "{at}.{name}: expected a non-empty string (at most 256 bytes)"
        )),
    }
}

fn price_field(obj: &Map<String, Value>, at: &str, name: &str) -> Result<Option<f64>, String> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_f64() {
            Some(p) if p.is_finite() && p >= 0.0 => Ok(Some(p)),
            _ => Err(format!(
                "{at}.{name}: expected a number >= 0 (USD per token)"
            )),
        },
    }
}

fn time_field(obj: &Map<String, Value>, at: &str) -> Result<i64, String> {
    match field(obj, at, "effective_from")? {
        Value::String(s) => parse_rfc3339_ms(s)
            .ok_or_else(|| format!("{at}.effective_from: expected an RFC 3339 time")),
        _ => Err(format!("{at}.effective_from: expected an RFC 3339 time")),
    }
}

fn check_fields(obj: &Map<String, Value>, at: &str, allowed: &[&str]) -> Result<(), String> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(other) => Err(format!(
            "{at}.{other}: unknown field (allowed: {})",
            allowed.join(", ")
        )),
        None => Ok(()),
    }
}

const PRICE_FIELDS: [&str; 7] = [
    "provider",
    "model",
    "effective_from",
    "input_cost_per_token",
    "output_cost_per_token",
    "cache_read_input_token_cost",
    "cache_creation_input_token_cost",
];

const DISCOUNT_FIELDS: [&str; 4] = ["provider", "model", "effective_from", "discount"];

/// Most entries one body or file may hold.
pub const MAX_CHANGES: usize = 10_000;

impl PriceChanges {
    /// Reads `{"prices":[…],"discounts":[…]}` (either list may be absent);
    /// an error names the field (`prices[2].effective_from: …`).
    pub fn parse(body: &Value) -> Result<Self, String> {
        let Some(obj) = body.as_object() else {
            return Err(String::from(
                "body: expected a JSON object {\"prices\": […], \"discounts\": […]}",
            ));
        };
        check_fields(obj, "body", &["prices", "discounts"])?;
        let list = |name: &str| -> Result<Vec<Value>, String> {
            match obj.get(name) {
                None => Ok(Vec::new()),
                Some(Value::Array(a)) if a.len() <= MAX_CHANGES => Ok(a.clone()),
                Some(Value::Array(_)) => Err(format!("{name}: at most {MAX_CHANGES} entries")),
                Some(_) => Err(format!("{name}: expected an array")),
            }
        };
        let mut out = PriceChanges::default();
        for (i, item) in list("prices")?.iter().enumerate() {
            let at = format!("prices[{i}]");
            let Some(o) = item.as_object() else {
                return Err(format!("{at}: expected an object"));
            };
            check_fields(o, &at, &PRICE_FIELDS)?;
            let input = price_field(o, &at, "input_cost_per_token")?
                .ok_or_else(|| format!("{at}.input_cost_per_token: required"))?;
            let output = price_field(o, &at, "output_cost_per_token")?
                .ok_or_else(|| format!("{at}.output_cost_per_token: required"))?;
            out.prices.push(PriceChange {
                provider: text_field(o, &at, "provider")?,
                model: text_field(o, &at, "model")?,
                effective_from_ms: time_field(o, &at)?,
                price: ModelPrice {
                    input,
                    output,
                    cache_read: price_field(o, &at, "cache_read_input_token_cost")?
                        .unwrap_or(input),
                    cache_write: price_field(o, &at, "cache_creation_input_token_cost")?
                        .unwrap_or(input),
                    max_output_tokens: None,
                },
            });
        }
        for (i, item) in list("discounts")?.iter().enumerate() {
            let at = format!("discounts[{i}]");
            let Some(o) = item.as_object() else {
                return Err(format!("{at}: expected an object"));
            };
            check_fields(o, &at, &DISCOUNT_FIELDS)?;
            let model = match o.get("model") {
                None | Some(Value::Null) => None,
                Some(_) => Some(text_field(o, &at, "model")?),
            };
            let fraction = match field(o, &at, "discount")?.as_f64() {
                Some(f) if (0.0..1.0).contains(&f) => f,
                _ => {
                    return Err(format!(
                        "{at}.discount: expected a fraction, 0 <= discount < 1"
                    ))
                }
            };
            let effective_from_ms = time_field(o, &at)?;
            // FOCUS rows are per day: a discount starts on a UTC day.
            if effective_from_ms.rem_euclid(DAY_MS) != 0 {
                return Err(format!(
                    "{at}.effective_from: a discount starts at 00:00:00Z of a day"
                ));
            }
            out.discounts.push(Discount {
                provider: text_field(o, &at, "provider")?,
                model,
                effective_from_ms,
                fraction,
            });
        }
        if out.prices.is_empty() && out.discounts.is_empty() {
            return Err(String::from("body: prices and discounts are both empty"));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
