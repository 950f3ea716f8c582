//! Grouping of usage slices into the `GET /v1/usage` answer.
//!
//! A store feeds the aggregator "slices": one per hourly rollup row for the
//! whole hours of the range and one per raw record for the partial edge hours.
//! Keeping the grouping here means every store answers identically.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::record::PricedRecord;
use super::time::{day_of, floor_hour, format_rfc3339_ms};
use super::usage_query::{Dim, UsageQuery};

/// Counters summed per group. Costs of unpriced records count as 0 and are
/// reported through `unpriced_requests` instead.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sums {
    pub requests: i64,
    pub errors: i64,
    pub input_tokens: i64,
    pub cached_input_tokens: i64,
    pub cache_write_input_tokens: i64,
    pub output_tokens: i64,
    pub reasoning_tokens: i64,
    pub cost_usd: f64,
    pub unpriced_requests: i64,
}

impl Sums {
    /// The contribution of one record.
    pub fn of_record(priced: &PricedRecord) -> Self {
        let r = &priced.record;
        // Token counts are validated <= 10^12, so they fit an i64.
        let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        Self {
            requests: 1,
            errors: i64::from(r.is_error()),
            input_tokens: int(r.tokens.input),
            cached_input_tokens: int(r.tokens.cached_input),
            cache_write_input_tokens: int(r.tokens.cache_write_input),
            output_tokens: int(r.tokens.output),
            reasoning_tokens: int(r.tokens.reasoning),
            cost_usd: priced.cost_usd.unwrap_or(0.0),
            unpriced_requests: i64::from(priced.cost_usd.is_none()),
        }
    }

    pub fn add(&mut self, other: &Sums) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.input_tokens += other.input_tokens;
        self.cached_input_tokens += other.cached_input_tokens;
        self.cache_write_input_tokens += other.cache_write_input_tokens;
        self.output_tokens += other.output_tokens;
        self.reasoning_tokens += other.reasoning_tokens;
        self.cost_usd += other.cost_usd;
        self.unpriced_requests += other.unpriced_requests;
    }

    fn serialize_into<M: SerializeMap>(&self, map: &mut M) -> Result<(), M::Error> {
        map.serialize_entry("requests", &self.requests)?;
        map.serialize_entry("errors", &self.errors)?;
        map.serialize_entry("input_tokens", &self.input_tokens)?;
        map.serialize_entry("cached_input_tokens", &self.cached_input_tokens)?;
        map.serialize_entry("cache_write_input_tokens", &self.cache_write_input_tokens)?;
        map.serialize_entry("output_tokens", &self.output_tokens)?;
        map.serialize_entry("reasoning_tokens", &self.reasoning_tokens)?;
        map.serialize_entry("cost_usd", &round_usd(self.cost_usd))?;
        map.serialize_entry("unpriced_requests", &self.unpriced_requests)
    }
}

/// Floating sums carry noise in the last bits; 1e-10 USD is far below a token's price.
fn round_usd(v: f64) -> f64 {
    (v * 1e10).round() / 1e10
}

/// The grouping key of a slice: everything a dimension can read.
#[derive(Debug, Clone, Copy)]
pub struct Slice<'a> {
    pub hour_ms: i64,
    pub key_id: &'a str,
    pub tags: &'a BTreeMap<String, String>,
    pub model: Option<&'a str>,
    pub provider: &'a str,
    pub operation: &'a str,
}

impl<'a> Slice<'a> {
    pub fn of_record(priced: &'a PricedRecord) -> Self {
        let r = &priced.record;
        Self {
            hour_ms: floor_hour(r.ts_ms),
            key_id: &r.key_id,
            tags: &r.tags,
            model: r.model.as_deref(),
            provider: &r.provider,
            operation: &r.operation,
        }
    }

    fn value(&self, dim: &Dim) -> Option<String> {
        match dim {
            Dim::Tag(tag) => self.tags.get(tag).cloned(),
            Dim::KeyId => Some(self.key_id.to_owned()),
            Dim::Model => self.model.map(str::to_owned),
            Dim::Provider => Some(self.provider.to_owned()),
            Dim::Operation => Some(self.operation.to_owned()),
            Dim::Day => Some(day_of(self.hour_ms)),
        }
    }

    fn matches(&self, dim: &Dim, wanted: &str) -> bool {
        match dim {
            Dim::Tag(tag) => self.tags.get(tag).is_some_and(|v| v == wanted),
            Dim::KeyId => self.key_id == wanted,
            Dim::Model => self.model == Some(wanted),
            Dim::Provider => self.provider == wanted,
            Dim::Operation => self.operation == wanted,
            Dim::Day => day_of(self.hour_ms) == wanted,
        }
    }
}

/// Sums slices per group of the query's dimensions.
pub struct Aggregator<'q> {
    query: &'q UsageQuery,
    groups: HashMap<Vec<Option<String>>, Sums>,
}

impl<'q> Aggregator<'q> {
    pub fn new(query: &'q UsageQuery) -> Self {
        Self {
            query,
            groups: HashMap::new(),
        }
    }

    pub fn add(&mut self, slice: &Slice<'_>, sums: &Sums) {
        if !self
            .query
            .filters
            .iter()
            .all(|(dim, v)| slice.matches(dim, v))
        {
            return;
        }
        let key: Vec<Option<String>> = self.query.group_by.iter().map(|d| slice.value(d)).collect();
        self.groups.entry(key).or_default().add(sums);
    }

    /// Rows sorted by cost (highest first), then by dimension values.
    pub fn finish(self) -> UsageReport {
        let mut totals = Sums::default();
        let mut rows: Vec<UsageRow> = self
            .groups
            .into_iter()
            .map(|(dims, sums)| {
                totals.add(&sums);
                UsageRow { dims, sums }
            })
            .collect();
        rows.sort_by(|a, b| {
            b.sums
                .cost_usd
                .total_cmp(&a.sums.cost_usd)
                .then_with(|| compare_dims(&a.dims, &b.dims))
        });
        UsageReport {
            from_ms: self.query.from_ms,
            to_ms: self.query.to_ms,
            group_by: self
                .query
                .group_by
                .iter()
                .map(|d| d.name().to_owned())
                .collect(),
            rows,
            totals,
        }
    }
}

/// Missing values (null) sort after present ones.
fn compare_dims(a: &[Option<String>], b: &[Option<String>]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let order = match (x, y) {
            (Some(x), Some(y)) => x.cmp(y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    Ordering::Equal
}

#[derive(Debug, Clone, PartialEq)]
pub struct UsageRow {
    /// One value per `group_by` dimension, in order; `None` is a missing tag.
    pub dims: Vec<Option<String>>,
    pub sums: Sums,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UsageReport {
    pub from_ms: i64,
    pub to_ms: i64,
    pub group_by: Vec<String>,
    pub rows: Vec<UsageRow>,
    pub totals: Sums,
}

struct RowJson<'a> {
    group_by: &'a [String],
    row: &'a UsageRow,
}

impl Serialize for RowJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (name, value) in self.group_by.iter().zip(&self.row.dims) {
            map.serialize_entry(name, value)?;
        }
        self.row.sums.serialize_into(&mut map)?;
        map.end()
    }
}

struct SumsJson<'a>(&'a Sums);

impl Serialize for SumsJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        self.0.serialize_into(&mut map)?;
        map.end()
    }
}

/// The CONTRACTS §4 body: `{"from","to","group_by","rows","totals"}`, keys in that order.
impl Serialize for UsageReport {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let rows: Vec<RowJson<'_>> = self
            .rows
            .iter()
            .map(|row| RowJson {
                group_by: &self.group_by,
                row,
            })
            .collect();
        let mut map = serializer.serialize_map(Some(5))?;
        map.serialize_entry("from", &format_rfc3339_ms(self.from_ms))?;
        map.serialize_entry("to", &format_rfc3339_ms(self.to_ms))?;
        map.serialize_entry("group_by", &self.group_by)?;
        map.serialize_entry("rows", &rows)?;
        map.serialize_entry("totals", &SumsJson(&self.totals))?;
        map.end()
    }
}
