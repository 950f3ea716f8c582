//! What both stores write and read back the same way: record ids as 16
//! bytes, a record's series (its grouping dimensions) and the cache of
//! series ids, and the decoding of stored series and budget rows.

use std::collections::BTreeMap;
use std::hash::Hasher;

use super::hash::{FastHasher, PrehashedMap};
use super::StoreError;
use crate::domain::budgets::{alerts_field, Budget, Enforce, Period, Scope};
use crate::domain::record::UsageRecord;

/// The 16 bytes of exactly 32 lowercase hex digits (the filter's record ids),
/// else `None`. Uppercase is left to the text form so that two different ids
/// never map to one stored value. Both stores keep such ids as 16 bytes.
pub(crate) fn hex16(text: &str) -> Option<[u8; 16]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    let digits = text.as_bytes();
    if digits.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        let [high, low] = pair else { return None };
        *byte = (nibble(*high)? << 4) | nibble(*low)?;
    }
    Some(bytes)
}

/// A record's series, borrowed from the record (`model` '' when none): the
/// key under which both stores intern series rows.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SeriesRef<'a> {
    pub key_id: &'a str,
    pub tags: &'a BTreeMap<String, String>,
    pub model: &'a str,
    pub provider: &'a str,
    pub operation: &'a str,
}

impl<'a> SeriesRef<'a> {
    pub(crate) fn of(r: &'a UsageRecord) -> Self {
        Self {
            key_id: &r.key_id,
            tags: &r.tags,
            model: r.model.as_deref().unwrap_or_default(),
            provider: &r.provider,
            operation: &r.operation,
        }
    }

    /// One `write` per string: `FastHasher` folds each write's length into
    /// its last word, so field boundaries still count.
    pub(crate) fn hash_code(&self) -> u64 {
        let mut h = FastHasher::default();
        h.write(self.key_id.as_bytes());
        h.write(self.model.as_bytes());
        h.write(self.provider.as_bytes());
        h.write(self.operation.as_bytes());
        for (name, value) in self.tags {
            h.write(name.as_bytes());
            h.write(value.as_bytes());
        }
        h.finish()
    }

    fn matches(&self, owned: &SeriesKey) -> bool {
        self.key_id == owned.key_id
            && self.model == owned.model
            && self.provider == owned.provider
            && self.operation == owned.operation
            && *self.tags == owned.tags
    }

    fn to_owned_key(self) -> SeriesKey {
        SeriesKey {
            key_id: self.key_id.to_owned(),
            tags: self.tags.clone(),
            model: self.model.to_owned(),
            provider: self.provider.to_owned(),
            operation: self.operation.to_owned(),
        }
    }
}

/// A series key, owned (what the id cache keeps).
struct SeriesKey {
    key_id: String,
    tags: BTreeMap<String, String>,
    model: String,
    provider: String,
    operation: String,
}

/// Series ids by series, looked up from a record's borrowed fields: a series
/// already seen costs one cheap hash and one comparison, with no allocation
/// and no tag serialization. Series rows are only ever added, so an id once
/// committed stays valid.
#[derive(Default)]
pub(crate) struct SeriesIds(PrehashedMap<Vec<(SeriesKey, i64)>>);

impl SeriesIds {
    pub(crate) fn get(&self, series: &SeriesRef<'_>) -> Option<i64> {
        self.get_coded(series.hash_code(), series)
    }

    fn get_coded(&self, code: u64, series: &SeriesRef<'_>) -> Option<i64> {
        self.0
            .get(&code)?
            .iter()
            .find(|(owned, _)| series.matches(owned))
            .map(|(_, id)| *id)
    }

    /// Remembers `id` for `series` (a no-op when it is known already).
    pub(crate) fn insert(&mut self, series: &SeriesRef<'_>, id: i64) {
        self.insert_coded(series.hash_code(), series, id);
    }

    fn insert_coded(&mut self, code: u64, series: &SeriesRef<'_>, id: i64) {
        let bucket = self.0.entry(code).or_default();
        if !bucket.iter().any(|(owned, _)| series.matches(owned)) {
            bucket.push((series.to_owned_key(), id));
        }
    }

    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }
}

/// The grouping dimensions of one series (one distinct key_id, tags, model,
/// provider, operation), as both stores keep them, decoded for the aggregator.
pub(crate) struct Series {
    pub key_id: String,
    pub tags: BTreeMap<String, String>,
    pub model: Option<String>,
    pub provider: String,
    pub operation: String,
}

impl Series {
    /// From the stored columns: `tags` canonical JSON, `model` '' for none.
    pub(crate) fn decode(
        key_id: String,
        tags: &str,
        model: String,
        provider: String,
        operation: String,
    ) -> Result<Self, StoreError> {
        Ok(Series {
            key_id,
            tags: serde_json::from_str(tags).map_err(|e| {
                StoreError::invalid(format!("stored tags are not a JSON object: {e}"))
            })?,
            model: (!model.is_empty()).then_some(model),
            provider,
            operation,
        })
    }
}

/// The budget columns both stores keep, in this order.
pub(crate) const BUDGET_COLUMNS: &str =
    "id, scope, period, amount_usd, soft, hard, alerts, enforce";

/// A budget row as stored, before its text columns are decoded.
pub(crate) struct BudgetRow {
    pub id: String,
    pub scope: String,
    pub period: String,
    pub amount_usd: f64,
    pub soft: f64,
    pub hard: f64,
    /// The alert tiers as JSON; NULL (rows written before schema 10): defaults.
    pub alerts: Option<String>,
    pub enforce: String,
}

/// The `alerts` column of a budget: its tiers as a JSON object.
pub(crate) fn budget_alerts_json(budget: &Budget) -> String {
    serde_json::to_string(&budget.alerts).unwrap_or_default()
}

impl BudgetRow {
    pub(crate) fn decode(self) -> Result<Budget, StoreError> {
        let scope: Scope = serde_json::from_str(&self.scope).map_err(|e| {
            StoreError::invalid(format!(
                "budget {}: stored scope is not valid: {e}",
                self.id
            ))
        })?;
        let period = Period::parse(&self.period).ok_or_else(|| {
            StoreError::invalid(format!(
                "budget {}: unknown stored period {:?}",
                self.id, self.period
            ))
        })?;
        let alerts = match &self.alerts {
            None => None,
            Some(text) => Some(
                serde_json::from_str::<serde_json::Value>(text).map_err(|e| {
                    StoreError::invalid(format!(
                        "budget {}: stored alerts are not JSON: {e}",
                        self.id
                    ))
                })?,
            ),
        };
        let alerts = alerts_field(alerts.as_ref())
            .map_err(|e| StoreError::invalid(format!("budget {}: stored alerts: {e}", self.id)))?;
        let enforce = Enforce::parse(&self.enforce).ok_or_else(|| {
            StoreError::invalid(format!(
                "budget {}: unknown stored enforce {:?}",
                self.id, self.enforce
            ))
        })?;
        Ok(Budget {
            id: self.id,
            scope,
            period,
            amount_usd: self.amount_usd,
            soft: self.soft,
            hard: self.hard,
            alerts,
            enforce,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn series<'a>(
        key_id: &'a str,
        model: &'a str,
        tags: &'a BTreeMap<String, String>,
    ) -> SeriesRef<'a> {
        SeriesRef {
            key_id,
            tags,
            model,
            provider: "p",
            operation: "o",
        }
    }

    #[test]
    fn field_boundaries_and_tags_change_the_hash_code() {
        let (t1, t2) = (tags(&[("team", "a")]), tags(&[("team", "ab")]));
        let codes = [
            series("k", "ab", &t1).hash_code(),
            series("ka", "b", &t1).hash_code(),
            series("k", "ab", &t2).hash_code(),
        ];
        assert_ne!(codes[0], codes[1]);
        assert_ne!(codes[0], codes[2]);
        assert_eq!(codes[0], series("k", "ab", &t1).hash_code());
    }

    #[test]
    fn colliding_series_keep_their_own_ids() {
        let (t1, t2) = (tags(&[("team", "a")]), tags(&[("team", "b")]));
        let (a, b) = (series("k", "", &t1), series("k", "", &t2));
        let mut ids = SeriesIds::default();
        ids.insert(&a, 1);
        // Force b into a's bucket, as a hash collision would.
        let code = a.hash_code();
        ids.insert_coded(code, &b, 2);
        assert_eq!(ids.get(&a), Some(1));
        assert_eq!(ids.get_coded(code, &b), Some(2));
        assert_eq!(ids.get(&b), None, "b under its own code is unknown");
        assert_eq!(ids.0.get(&code).map(Vec::len), Some(2));
        ids.insert(&a, 3);
        assert_eq!(ids.get(&a), Some(1), "a known series keeps its id");
    }

    #[test]
    fn only_32_lowercase_hex_digits_become_bytes() {
        const HEX_ID: &str = "0123456789abcdef0011223344556677";
        let bytes = hex16(HEX_ID).expect("lowercase hex");
        assert_eq!(bytes[0], 0x01);
        assert_eq!(bytes[7], 0xef);
        assert_eq!(bytes[15], 0x77);
        assert_eq!(hex16(&HEX_ID.to_uppercase()), None);
        assert_eq!(hex16(&HEX_ID[..31]), None);
        assert_eq!(hex16(&format!("{HEX_ID}0")), None);
        assert_eq!(hex16("0123456789abcdef001122334455667g"), None);
        assert_eq!(hex16("0123456789abcdef00112233445566é"), None);
    }
}
