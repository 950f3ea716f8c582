//! This month's spend by team and model as Prometheus gauges, for dashboards
//! (`dashboards/aispend.json`): `aispend_spend_usd{team,model}` and
//! `aispend_spend_requests{team,model}`. Read from the rollups at each
//! scrape, so every replica answers the same figures and a restart loses
//! nothing (use `max` across replicas, not `sum`).
//!
//! Cardinality is bounded: at most `max_series` series per metric. The
//! costliest `max_series - 1` (team, model) pairs have their own series; the
//! rest are summed into one `team="_other",model="_other"` series, so a
//! misbehaving client inventing team or model names cannot blow up the
//! Prometheus server.

use std::fmt::Write;

use crate::domain::aggregate::UsageReport;

/// The default bound on `aispend_spend_*` series (each metric).
pub const MAX_SPEND_SERIES: usize = 50;
/// The label value of the pairs summed together beyond the bound, and of a
/// record without a team tag.
pub const OTHER: &str = "_other";
const NONE: &str = "_none";

/// Renders `report` (grouped by team then model) as the two gauges.
pub fn render(report: &UsageReport, max_series: usize) -> String {
    let mut pairs: Vec<(String, String, f64, i64)> = report
        .rows
        .iter()
        .map(|row| {
            let dim = |i: usize| {
                row.dims
                    .get(i)
                    .cloned()
                    .flatten()
                    .unwrap_or_else(|| NONE.to_owned())
            };
            (dim(0), dim(1), row.sums.cost_usd, row.sums.requests)
        })
        .collect();
    pairs.sort_by(|a, b| {
        b.2.total_cmp(&a.2)
            .then_with(|| (&a.0, &a.1).cmp(&(&b.0, &b.1)))
    });
    let keep = max_series.max(1);
    if pairs.len() > keep {
        let rest = pairs.split_off(keep - 1);
        let (cost, requests) = rest.iter().fold((0.0, 0), |(c, r), p| (c + p.2, r + p.3));
        pairs.push((OTHER.to_owned(), OTHER.to_owned(), cost, requests));
    }
    let mut out = String::from(
        "# HELP aispend_spend_usd This UTC month's spend so far by team and model (from the \
         rollups; bounded series, the rest under team=\"_other\").\n\
         # TYPE aispend_spend_usd gauge\n",
    );
    for (team, model, cost, _) in &pairs {
        let _ = writeln!(
            out,
            "aispend_spend_usd{{team=\"{}\",model=\"{}\"}} {cost}",
            escape(team),
            escape(model)
        );
    }
    out.push_str(
        "# HELP aispend_spend_requests This UTC month's requests so far by team and model.\n\
         # TYPE aispend_spend_requests gauge\n",
    );
    for (team, model, _, requests) in &pairs {
        let _ = writeln!(
            out,
            "aispend_spend_requests{{team=\"{}\",model=\"{}\"}} {requests}",
            escape(team),
            escape(model)
        );
    }
    out
}

/// A Prometheus label value: backslash, double quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::aggregate::{Sums, UsageRow};

    fn report(rows: &[(&str, Option<&str>, f64)]) -> UsageReport {
        UsageReport {
            from_ms: 0,
            to_ms: 1,
            group_by: vec!["team".into(), "model".into()],
            rows: rows
                .iter()
                .map(|(team, model, cost)| UsageRow {
                    dims: vec![Some((*team).to_owned()), model.map(str::to_owned)],
                    sums: Sums {
                        requests: 2,
                        cost_usd: *cost,
                        ..Sums::default()
                    },
                    covered_usd: *cost,
                })
                .collect(),
            totals: Sums::default(),
            covered_usd: 0.0,
        }
    }

    #[test]
    fn every_pair_has_its_series_under_the_bound() {
        let text = render(
            &report(&[("search", Some("gpt-4o"), 1.5), ("ads", None, 0.25)]),
            50,
        );
        assert!(text.contains("aispend_spend_usd{team=\"search\",model=\"gpt-4o\"} 1.5\n"));
        assert!(text.contains("aispend_spend_usd{team=\"ads\",model=\"_none\"} 0.25\n"));
        assert!(text.contains("aispend_spend_requests{team=\"ads\",model=\"_none\"} 2\n"));
        assert!(!text.contains("model=\"_other\""), "{text}");
    }

    #[test]
    fn beyond_the_bound_the_cheapest_pairs_are_summed_into_other() {
        let rows: Vec<(String, f64)> = (0..10).map(|i| (format!("t{i}"), i as f64)).collect();
        let rows: Vec<(&str, Option<&str>, f64)> = rows
            .iter()
            .map(|(t, c)| (t.as_str(), Some("m"), *c))
            .collect();
        let text = render(&report(&rows), 4);
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("aispend_spend_usd{"))
            .collect();
        assert_eq!(series.len(), 4, "{text}");
        assert!(text.contains("{team=\"t9\",model=\"m\"} 9\n"), "{text}");
        assert!(text.contains("{team=\"t7\",model=\"m\"} 7\n"), "{text}");
        // t0..=t6 summed: 21.
        assert!(
            text.contains("{team=\"_other\",model=\"_other\"} 21\n"),
            "{text}"
        );
        assert!(text.contains("aispend_spend_requests{team=\"_other\",model=\"_other\"} 14\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        let text = render(&report(&[("a\"b\\c\nd", Some("m"), 1.0)]), 50);
        assert!(text.contains("team=\"a\\\"b\\\\c\\nd\""), "{text}");
    }
}
