//! Tag coverage (SPEC §11): which share of the cost carries every required
//! tag, per required tag, and which keys produce the rest.

use serde::Serialize;

use crate::domain::aggregate::{coverage, UsageReport};

/// Coverage of a report grouped by the required tags (in that order, and
/// nothing else): overall, then per tag (share of cost carrying that tag).
#[derive(Debug, Clone, PartialEq)]
pub struct TagCoverage {
    pub cost_usd: f64,
    pub covered_usd: f64,
    /// (tag, cost carrying it).
    pub per_tag: Vec<(String, f64)>,
}

impl TagCoverage {
    /// `report` must be grouped by exactly `required` (in order).
    pub fn of_report(required: &[String], report: &UsageReport) -> Self {
        let mut per_tag: Vec<(String, f64)> = required.iter().map(|t| (t.clone(), 0.0)).collect();
        for row in &report.rows {
            for ((_, carried), value) in per_tag.iter_mut().zip(&row.dims) {
                if value.is_some() {
                    *carried += row.sums.cost_usd;
                }
            }
        }
        Self {
            cost_usd: report.totals.cost_usd,
            covered_usd: report.covered_usd,
            per_tag,
        }
    }

    pub fn ratio(&self) -> Option<f64> {
        coverage(self.covered_usd, self.cost_usd)
    }

    /// The Prometheus gauges: `aispend_tag_coverage_ratio` (every required
    /// tag) and `aispend_tag_coverage_by_tag_ratio{tag}` (one series per
    /// configured required tag: bounded labels), month to date; a ratio with
    /// no cost yet is not exported (Prometheus has no null), and
    /// `aispend_unattributed_cost_usd` is the cost missing a required tag.
    pub fn render_metrics(&self) -> String {
        let mut out = String::from(
            "# HELP aispend_tag_coverage_ratio Share of this UTC month's cost whose records carry \
             every required tag (AISPEND_REQUIRED_TAGS).\n# TYPE aispend_tag_coverage_ratio gauge\n",
        );
        if let Some(r) = self.ratio() {
            out.push_str(&format!("aispend_tag_coverage_ratio {r}\n"));
        }
        out.push_str(
            "# HELP aispend_tag_coverage_by_tag_ratio Share of this UTC month's cost whose \
             records carry the required tag.\n# TYPE aispend_tag_coverage_by_tag_ratio gauge\n",
        );
        for (tag, carried) in &self.per_tag {
            if let Some(r) = coverage(*carried, self.cost_usd) {
                out.push_str(&format!(
                    "aispend_tag_coverage_by_tag_ratio{{tag=\"{tag}\"}} {r}\n"
                ));
            }
        }
        out.push_str(&format!(
            "# HELP aispend_unattributed_cost_usd This UTC month's cost whose records miss a \
             required tag.\n# TYPE aispend_unattributed_cost_usd gauge\n\
             aispend_unattributed_cost_usd {}\n",
            (self.cost_usd - self.covered_usd).max(0.0)
        ));
        out
    }
}

/// One producer of unattributed cost: a key and the required tags its
/// records miss.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnattributedLine {
    pub key_id: String,
    pub missing_tags: Vec<String>,
    pub requests: i64,
    #[serde(serialize_with = "crate::domain::finops::coverage::usd")]
    pub cost_usd: f64,
}

pub(crate) fn usd<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    let raw = serde_json::value::RawValue::from_string(crate::domain::aggregate::usd_text(*v))
        .map_err(serde::ser::Error::custom)?;
    raw.serialize(s)
}

/// The unattributed lines of a report grouped by `key_id` then the required
/// tags (in order): one per (key, set of missing tags), highest cost first.
pub fn unattributed(required: &[String], report: &UsageReport) -> Vec<UnattributedLine> {
    let mut lines: Vec<UnattributedLine> = Vec::new();
    for row in &report.rows {
        let Some((key, tags)) = row.dims.split_first() else {
            continue;
        };
        let missing: Vec<String> = required
            .iter()
            .zip(tags)
            .filter(|(_, v)| v.is_none())
            .map(|(t, _)| t.clone())
            .collect();
        if missing.is_empty() {
            continue;
        }
        let key_id = key.clone().unwrap_or_default();
        match lines
            .iter_mut()
            .find(|l| l.key_id == key_id && l.missing_tags == missing)
        {
            Some(line) => {
                line.requests += row.sums.requests;
                line.cost_usd += row.sums.cost_usd;
            }
            None => lines.push(UnattributedLine {
                key_id,
                missing_tags: missing,
                requests: row.sums.requests,
                cost_usd: row.sums.cost_usd,
            }),
        }
    }
    lines.sort_by(|a, b| {
        b.cost_usd
            .total_cmp(&a.cost_usd)
            .then_with(|| a.key_id.cmp(&b.key_id))
            .then_with(|| a.missing_tags.cmp(&b.missing_tags))
    });
    lines
}
