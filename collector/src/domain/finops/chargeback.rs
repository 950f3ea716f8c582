//! Chargeback (SPEC §11): one line per (cost center, team, project) of a
//! month with its GL account; `UNALLOCATED` / `UNMAPPED` lines keep the file
//! summing to the month's total. Adjustment lines carry what arrived for a
//! closed month after it was closed (see `adjustments`).

use std::collections::{BTreeMap, HashMap};

use crate::domain::aggregate::UsageReport;

pub const UNALLOCATED: &str = "UNALLOCATED";
pub const UNMAPPED: &str = "UNMAPPED";

/// The CSV header: SPEC §11's columns, then `line_type` (`usage` or
/// `adjustment`) and `usage_month` (the month the cost was incurred in: the
/// line's own month for usage, a closed earlier month for an adjustment).
pub const HEADER: [&str; 11] = [
    "month",
    "cost_center",
    "gl_account",
    "team",
    "project",
    "requests",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "line_type",
    "usage_month",
];

/// Where a line's cost goes: (cost center or `UNALLOCATED`, team, project;
/// a missing team or project is empty).
pub type LineKey = (String, String, String);

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LineSums {
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_usd: f64,
}

impl LineSums {
    fn is_zero(&self) -> bool {
        self.requests == 0
            && self.input_tokens == 0
            && self.output_tokens == 0
            && self.cost_usd.abs() < 1e-12
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChargebackLine {
    /// The month the line is booked in.
    pub month: String,
    pub key: LineKey,
    pub gl_account: String,
    pub sums: LineSums,
    /// `None`: a usage line of `month`; `Some(m)`: an adjustment for the
    /// closed month `m`.
    pub adjusts: Option<String>,
}

impl ChargebackLine {
    pub fn fields(&self) -> [String; 11] {
        [
            self.month.clone(),
            self.key.0.clone(),
            self.gl_account.clone(),
            self.key.1.clone(),
            self.key.2.clone(),
            self.sums.requests.to_string(),
            self.sums.input_tokens.to_string(),
            self.sums.output_tokens.to_string(),
            exact_usd(self.sums.cost_usd),
            String::from(if self.adjusts.is_some() {
                "adjustment"
            } else {
                "usage"
            }),
            self.adjusts.clone().unwrap_or_else(|| self.month.clone()),
        ]
    }
}

/// A cost with every digit of its `f64` (Rust never writes an exponent for
/// `Display`), so sums over an export equal the stored sums; at least one
/// decimal, never `-0`.
pub fn exact_usd(v: f64) -> String {
    if !v.is_finite() || v == 0.0 {
        return String::from("0.0");
    }
    let text = v.to_string();
    if text.contains('.') {
        text
    } else {
        text + ".0"
    }
}

/// The GL account of a cost center key.
pub fn gl_account_of(cost_center: &str, accounts: &HashMap<String, String>) -> String {
    if cost_center == UNALLOCATED {
        return UNMAPPED.to_owned();
    }
    accounts
        .get(cost_center)
        .cloned()
        .unwrap_or_else(|| UNMAPPED.to_owned())
}

/// Sums of a report grouped by `cost_center, team, project` (in that order),
/// per line key.
pub fn sums_by_key(report: &UsageReport) -> BTreeMap<LineKey, LineSums> {
    let mut out: BTreeMap<LineKey, LineSums> = BTreeMap::new();
    for row in &report.rows {
        let dim = |i: usize| row.dims.get(i).cloned().flatten();
        let key = (
            dim(0).unwrap_or_else(|| UNALLOCATED.to_owned()),
            dim(1).unwrap_or_default(),
            dim(2).unwrap_or_default(),
        );
        let s = out.entry(key).or_default();
        s.requests += row.sums.requests;
        s.input_tokens += row.sums.input_tokens;
        s.output_tokens += row.sums.output_tokens;
        s.cost_usd += row.sums.cost_usd;
    }
    out
}

/// The usage lines of `month`, sorted by key.
pub fn usage_lines(
    month: &str,
    sums: &BTreeMap<LineKey, LineSums>,
    accounts: &HashMap<String, String>,
) -> Vec<ChargebackLine> {
    sums.iter()
        .map(|(key, s)| ChargebackLine {
            month: month.to_owned(),
            gl_account: gl_account_of(&key.0, accounts),
            key: key.clone(),
            sums: *s,
            adjusts: None,
        })
        .collect()
}

/// The adjustment lines booked in `month` for the closed month `closed`:
/// what the rollups hold for it now (`live`) minus every line already booked
/// for it (its closing snapshot and earlier adjustments, `booked`), per key;
/// keys whose difference is zero give no line.
pub fn adjustments(
    month: &str,
    closed: &str,
    live: &BTreeMap<LineKey, LineSums>,
    booked: &[ChargebackLine],
    accounts: &HashMap<String, String>,
) -> Vec<ChargebackLine> {
    let mut delta: BTreeMap<LineKey, LineSums> = live.clone();
    for line in booked {
        let d = delta.entry(line.key.clone()).or_default();
        d.requests -= line.sums.requests;
        d.input_tokens -= line.sums.input_tokens;
        d.output_tokens -= line.sums.output_tokens;
        d.cost_usd -= line.sums.cost_usd;
    }
    delta
        .into_iter()
        .filter(|(_, s)| !s.is_zero())
        .map(|(key, sums)| ChargebackLine {
            month: month.to_owned(),
            gl_account: gl_account_of(&key.0, accounts),
            key,
            sums,
            adjusts: Some(closed.to_owned()),
        })
        .collect()
}

/// A cost center's GL account (`PUT /v1/gl-accounts/{cost_center}`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GlAccount {
    pub cost_center: String,
    pub gl_account: String,
    /// When it was last set, RFC 3339 in the API; epoch ms here.
    #[serde(skip)]
    pub updated_ms: i64,
}

/// A GL account: 1 to 64 printable ASCII characters, no comma, quote or
/// control character (it lands in CSV files and ledgers as is).
pub fn is_gl_account(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b',' && b != b'"' || b == b' ')
        && text.trim() == text
        && text != UNMAPPED
}

/// A closed month: its chargeback is served from the lines booked when it
/// was closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedMonth {
    pub month: String,
    pub closed_ms: i64,
}
