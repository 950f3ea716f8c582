//! Grouping of usage slices into the `GET /v1/usage` answer.
//!
//! A store feeds the aggregator "slices": one per hourly rollup row for the
//! whole hours of the range and one per raw record for the partial edge hours.
//! Keeping the grouping here means every store answers identically.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::record::PricedRecord;
use super::time::{day_of, floor_hour, format_rfc3339_ms, hour_of, month_of, week_of};
use super::usage_query::{Dim, UsageQuery};

/// Counters summed per group. Costs of unpriced records count as 0 and are
/// reported through `unpriced_requests` instead.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sums {
    pub requests: i64,
    pub errors: i64,
    /// Calls the gateway refused (`UsageRecord::is_denied`); they also
    /// count in `requests` and `errors`.
    pub denied: i64,
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
            denied: i64::from(r.is_denied()),
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
        self.denied += other.denied;
        self.input_tokens += other.input_tokens;
        self.cached_input_tokens += other.cached_input_tokens;
        self.cache_write_input_tokens += other.cache_write_input_tokens;
        self.output_tokens += other.output_tokens;
        self.reasoning_tokens += other.reasoning_tokens;
        self.cost_usd += other.cost_usd;
        self.unpriced_requests += other.unpriced_requests;
    }

    /// The counter columns, in answer order (JSON keys and CSV header).
    pub const COLUMNS: [&'static str; 10] = [
        "requests",
        "errors",
        "denied",
        "input_tokens",
        "cached_input_tokens",
        "cache_write_input_tokens",
        "output_tokens",
        "reasoning_tokens",
        "cost_usd",
        "unpriced_requests",
    ];

    /// The counters in `COLUMNS` order, as text; the cost in plain decimals.
    pub fn column_texts(&self) -> [String; 10] {
        [
            self.requests.to_string(),
            self.errors.to_string(),
            self.denied.to_string(),
            self.input_tokens.to_string(),
            self.cached_input_tokens.to_string(),
            self.cache_write_input_tokens.to_string(),
            self.output_tokens.to_string(),
            self.reasoning_tokens.to_string(),
            usd_text(self.cost_usd),
            self.unpriced_requests.to_string(),
        ]
    }

    fn serialize_into<M: SerializeMap>(&self, map: &mut M) -> Result<(), M::Error> {
        map.serialize_entry("requests", &self.requests)?;
        map.serialize_entry("errors", &self.errors)?;
        map.serialize_entry("denied", &self.denied)?;
        map.serialize_entry("input_tokens", &self.input_tokens)?;
        map.serialize_entry("cached_input_tokens", &self.cached_input_tokens)?;
        map.serialize_entry("cache_write_input_tokens", &self.cache_write_input_tokens)?;
        map.serialize_entry("output_tokens", &self.output_tokens)?;
        map.serialize_entry("reasoning_tokens", &self.reasoning_tokens)?;
        map.serialize_entry("cost_usd", &Usd(self.cost_usd))?;
        map.serialize_entry("unpriced_requests", &self.unpriced_requests)
    }
}

/// Decimals kept in a cost: 1e-10 USD is far below a token's price, and it
/// drops the noise floating sums carry in their last bits.
const USD_DECIMALS: usize = 10;

/// A cost in plain decimal notation, never with an exponent: rounded to
/// `USD_DECIMALS` decimals, trailing zeros trimmed, at least one decimal
/// (`0.0`, `12.5`, `0.00000345`), so JSON readers always see a float.
pub fn usd_text(v: f64) -> String {
    if !v.is_finite() {
        return String::from("0.0");
    }
    let mut text = format!("{v:.USD_DECIMALS$}");
    while text.ends_with('0') && !text.ends_with(".0") {
        text.pop();
    }
    if text == "-0.0" {
        text.remove(0);
    }
    text
}

/// A cost serialized as a JSON number written by `usd_text`.
struct Usd(f64);

impl Serialize for Usd {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw = serde_json::value::RawValue::from_string(usd_text(self.0))
            .map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

/// The grouping key of a slice: everything a dimension can read.
/// `requested_model` and `labels` are only known to slices read from raw
/// records (`None` otherwise: queries that need them read raw records only).
#[derive(Debug, Clone, Copy)]
pub struct Slice<'a> {
    /// The start of the slice's period (its hour or day; 0 when the query
    /// has no time dimension).
    pub hour_ms: i64,
    pub key_id: &'a str,
    pub tags: &'a BTreeMap<String, String>,
    pub model: Option<&'a str>,
    pub provider: &'a str,
    pub operation: &'a str,
    pub requested_model: Option<&'a str>,
    pub labels: Option<&'a BTreeMap<String, String>>,
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
            requested_model: r.requested_model.as_deref(),
            labels: Some(&r.labels),
        }
    }

    fn value(&self, dim: &Dim) -> Option<String> {
        match dim {
            Dim::Tag(tag) => self.tags.get(tag).cloned(),
            Dim::KeyId => Some(self.key_id.to_owned()),
            Dim::Model => self.model.map(str::to_owned),
            Dim::RequestedModel => self.requested_model.map(str::to_owned),
            Dim::Provider => Some(self.provider.to_owned()),
            Dim::Operation => Some(self.operation.to_owned()),
            Dim::Day => Some(day_of(self.hour_ms)),
            Dim::Hour => Some(hour_of(self.hour_ms)),
            Dim::Week => Some(week_of(self.hour_ms)),
            Dim::Month => Some(month_of(self.hour_ms)),
            Dim::Label(label) => self.labels.and_then(|l| l.get(label)).cloned(),
        }
    }

    fn matches(&self, dim: &Dim, wanted: &str) -> bool {
        match dim {
            Dim::Tag(tag) => self.tags.get(tag).is_some_and(|v| v == wanted),
            Dim::KeyId => self.key_id == wanted,
            Dim::Model => self.model == Some(wanted),
            Dim::Provider => self.provider == wanted,
            Dim::Operation => self.operation == wanted,
            other => self.value(other).is_some_and(|v| v == wanted),
        }
    }
}

/// Sums slices per group of the query's dimensions, with the cost of the
/// slices that carry every required tag (`UsageQuery::required_tags`).
pub struct Aggregator<'q> {
    query: &'q UsageQuery,
    groups: HashMap<Vec<Option<String>>, (Sums, f64)>,
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
        let covered = self
            .query
            .required_tags
            .iter()
            .all(|t| slice.tags.contains_key(t));
        let (group, covered_usd) = self.groups.entry(key).or_default();
        group.add(sums);
        if covered {
            *covered_usd += sums.cost_usd;
        }
    }

    /// Rows sorted by cost (highest first), then by dimension values.
    pub fn finish(self) -> UsageReport {
        let mut totals = Sums::default();
        let mut covered_usd = 0.0;
        let mut rows: Vec<UsageRow> = self
            .groups
            .into_iter()
            .map(|(dims, (sums, covered))| {
                totals.add(&sums);
                covered_usd += covered;
                UsageRow {
                    dims,
                    sums,
                    covered_usd: covered,
                }
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
            group_by: self.query.group_by.iter().map(Dim::name).collect(),
            rows,
            totals,
            covered_usd,
        }
    }
}

/// Tag coverage (SPEC §11): the share of `cost_usd` whose records carry
/// every required tag, clamped to 0..=1; `None` when the cost is 0 (nothing
/// to cover).
pub fn coverage(covered_usd: f64, cost_usd: f64) -> Option<f64> {
    if cost_usd.abs() < 1e-12 || !cost_usd.is_finite() {
        return None;
    }
    Some((covered_usd / cost_usd).clamp(0.0, 1.0))
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
    /// The part of `sums.cost_usd` whose records carry every required tag.
    pub covered_usd: f64,
}

impl UsageRow {
    pub fn coverage(&self) -> Option<f64> {
        coverage(self.covered_usd, self.sums.cost_usd)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct UsageReport {
    pub from_ms: i64,
    pub to_ms: i64,
    pub group_by: Vec<String>,
    pub rows: Vec<UsageRow>,
    pub totals: Sums,
    /// The part of `totals.cost_usd` whose records carry every required tag.
    pub covered_usd: f64,
}

impl UsageReport {
    /// The report as CSV (RFC 4180, CRLF line ends): a header row (the
    /// `group_by` dimensions, then `Sums::COLUMNS`), then one line per row in
    /// the JSON order. No totals line: every line is one group, so a sum over
    /// the file is the total. A missing dimension value is an empty field;
    /// the last column is the row's `coverage` (empty when its cost is 0).
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        let header = self
            .group_by
            .iter()
            .map(String::as_str)
            .chain(Sums::COLUMNS)
            .chain(["coverage"]);
        push_csv_line(&mut out, header);
        for row in &self.rows {
            let texts = row.sums.column_texts();
            let coverage = row.coverage().map(ratio_text).unwrap_or_default();
            let dims = row.dims.iter().map(|d| d.as_deref().unwrap_or(""));
            push_csv_line(
                &mut out,
                dims.chain(texts.iter().map(String::as_str))
                    .chain([coverage.as_str()]),
            );
        }
        out
    }
}

/// A ratio (coverage) as a plain decimal, 6 decimals at most.
pub fn ratio_text(v: f64) -> String {
    let mut text = format!("{v:.6}");
    while text.ends_with('0') && !text.ends_with(".0") {
        text.pop();
    }
    text
}

/// A ratio serialized as a JSON number written by `ratio_text`, or null.
pub(crate) struct Ratio(pub Option<f64>);

impl Serialize for Ratio {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            None => serializer.serialize_none(),
            Some(v) => {
                let raw = serde_json::value::RawValue::from_string(ratio_text(v))
                    .map_err(serde::ser::Error::custom)?;
                raw.serialize(serializer)
            }
        }
    }
}

pub(crate) fn push_csv_line<'a>(out: &mut String, fields: impl Iterator<Item = &'a str>) {
    for (i, field) in fields.enumerate() {
        if i > 0 {
            out.push(',');
        }
        if field.contains([',', '"', '\r', '\n']) {
            out.push('"');
            out.push_str(&field.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(field);
        }
    }
    out.push_str("\r\n");
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
        map.serialize_entry("coverage", &Ratio(self.row.coverage()))?;
        map.end()
    }
}

struct SumsJson<'a>(&'a Sums, Option<f64>);

impl Serialize for SumsJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        self.0.serialize_into(&mut map)?;
        map.serialize_entry("coverage", &Ratio(self.1))?;
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
        map.serialize_entry(
            "totals",
            &SumsJson(
                &self.totals,
                coverage(self.covered_usd, self.totals.cost_usd),
            ),
        )?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denied_records_count_in_requests_errors_and_denied() {
        use crate::domain::record::UsageRecord;
        let priced = |status: u16, error: Option<&str>| PricedRecord {
            record: UsageRecord {
                status,
                error: error.map(str::to_owned),
                ..UsageRecord::bare("x", 0)
            },
            cost_usd: None,
            price_version: String::new(),
        };
        let mut sums = Sums::default();
        for (status, code) in [
            (401, "invalid_api_key"),
            (429, "rate_limit_exceeded"),
            (402, "budget_exceeded"),
            (503, "caps_unavailable"),
        ] {
            sums.add(&Sums::of_record(&priced(status, Some(code))));
        }
        // An upstream 429 or a cut stream is an error, not a refusal.
        sums.add(&Sums::of_record(&priced(429, None)));
        sums.add(&Sums::of_record(&priced(200, Some("stream_cut"))));
        sums.add(&Sums::of_record(&priced(200, None)));
        assert_eq!((sums.requests, sums.errors, sums.denied), (7, 6, 4));
    }

    #[test]
    fn costs_are_plain_decimals() {
        assert_eq!(usd_text(3.45e-6), "0.00000345");
        assert_eq!(usd_text(0.0), "0.0");
        assert_eq!(usd_text(-0.0), "0.0");
        assert_eq!(usd_text(12.5), "12.5");
        assert_eq!(usd_text(13.25), "13.25");
        assert_eq!(usd_text(1e-11), "0.0");
        assert_eq!(usd_text(0.1 + 0.2), "0.3");
        assert_eq!(usd_text(1.5e12), "1500000000000.0");
        let json = serde_json::to_string(&SumsJson(
            &Sums {
                cost_usd: 3.45e-6,
                ..Sums::default()
            },
            None,
        ))
        .unwrap_or_default();
        assert!(json.contains(r#""cost_usd":0.00000345,"#), "{json}");
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        let report = UsageReport {
            from_ms: 0,
            to_ms: 1,
            group_by: vec!["model".into(), "team".into()],
            rows: vec![UsageRow {
                dims: vec![Some("a,\"b\"".into()), None],
                sums: Sums {
                    requests: 2,
                    cost_usd: 3.45e-6,
                    ..Sums::default()
                },
                covered_usd: 3.45e-6,
            }],
            totals: Sums::default(),
            covered_usd: 0.0,
        };
        let csv = report.to_csv();
        let mut lines = csv.split("\r\n");
        assert_eq!(
            lines.next(),
            Some(
                "model,team,requests,errors,denied,input_tokens,cached_input_tokens,\
                 cache_write_input_tokens,output_tokens,reasoning_tokens,cost_usd,\
                 unpriced_requests,coverage"
            )
        );
        assert_eq!(
            lines.next(),
            Some(r#""a,""b""",,2,0,0,0,0,0,0,0,0.00000345,0,1.0"#)
        );
        assert_eq!(lines.next(), Some(""));
        assert_eq!(lines.next(), None);
    }
}
