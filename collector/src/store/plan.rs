//! The read plan both stores follow for `usage`: which source (raw records,
//! hourly or daily rollup) answers each part of a range, and how the partial
//! sums they read are grouped by the query's dimensions.

use std::collections::{BTreeMap, HashMap};

use super::rows::Series;
use super::StoreError;
use crate::domain::aggregate::{Aggregator, Slice, Sums, UsageReport};
use crate::domain::time::{ceil_hour, floor_hour, format_rfc3339_ms, DAY_MS};
use crate::domain::usage_query::UsageQuery;

/// Where one part of a usage range is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Raw,
    Hourly,
    Daily,
}

/// The start of the query's period (`UsageQuery::period_ms`) holding `ms`;
/// 0 when the query has no time dimension (then one partial per series).
pub(crate) fn period_start(period_ms: Option<i64>, ms: i64) -> i64 {
    period_ms.map_or(0, |p| ms - ms.rem_euclid(p))
}

/// Both stores first fold their scans into integer sums per (series id,
/// period start, see `period_start`); this groups those few partials by the
/// query's dimensions.
pub(crate) fn group_partials(
    query: &UsageQuery,
    partials: &HashMap<(i64, i64), Sums>,
    series: &HashMap<i64, Series>,
) -> Result<UsageReport, StoreError> {
    let mut aggregator = Aggregator::new(query);
    for ((series_id, period), sums) in partials {
        let s = series_of(series, *series_id)?;
        aggregator.add(&s.slice(*period, None, None), sums);
    }
    Ok(aggregator.finish())
}

/// The key of a partial read from raw records for a query that needs
/// `requested_model` or labels: (series id, period start, requested model,
/// labels as stored, canonical JSON).
pub(crate) type RecordKey = (i64, i64, Option<String>, String);

/// `group_partials` for partials read from raw records.
pub(crate) fn group_record_partials(
    query: &UsageQuery,
    partials: &HashMap<RecordKey, Sums>,
    series: &HashMap<i64, Series>,
) -> Result<UsageReport, StoreError> {
    let mut labels: HashMap<&str, BTreeMap<String, String>> = HashMap::new();
    for (_, _, _, json) in partials.keys() {
        if !labels.contains_key(json.as_str()) {
            let map = serde_json::from_str(json).map_err(|e| {
                StoreError::invalid(format!("stored labels are not a JSON object: {e}"))
            })?;
            labels.insert(json, map);
        }
    }
    let mut aggregator = Aggregator::new(query);
    for ((series_id, period, requested_model, json), sums) in partials {
        let s = series_of(series, *series_id)?;
        let slice = s.slice(
            *period,
            requested_model.as_deref(),
            labels.get(json.as_str()),
        );
        aggregator.add(&slice, sums);
    }
    Ok(aggregator.finish())
}

fn series_of(series: &HashMap<i64, Series>, id: i64) -> Result<&Series, StoreError> {
    series
        .get(&id)
        .ok_or_else(|| StoreError::invalid(format!("usage references unknown series {id}")))
}

impl Series {
    fn slice<'a>(
        &'a self,
        period_ms: i64,
        requested_model: Option<&'a str>,
        labels: Option<&'a BTreeMap<String, String>>,
    ) -> Slice<'a> {
        Slice {
            hour_ms: period_ms,
            key_id: &self.key_id,
            tags: &self.tags,
            model: self.model.as_deref(),
            provider: &self.provider,
            operation: &self.operation,
            requested_model,
            labels,
        }
    }
}

/// The earliest time whose raw records the answer to `query` reads: the
/// whole range for `requested_model` or labels, else the first partial edge
/// hour; `None` when rollups answer all of it.
pub fn raw_reads_from(query: &UsageQuery) -> Option<i64> {
    if query.needs_records() {
        return (query.from_ms < query.to_ms).then_some(query.from_ms);
    }
    plan_segments(query.from_ms, query.to_ms)
        .into_iter()
        .find(|(source, _, _)| *source == Source::Raw)
        .map(|(_, from, _)| from)
}

/// Refuses (400, `StoreErrorKind::BeyondRetention`) a query that needs raw
/// records from before `horizon`, the time before which retention may have
/// deleted them: never a silently smaller number.
pub fn check_retention(query: &UsageQuery, horizon: Option<i64>) -> Result<(), StoreError> {
    let (Some(from), Some(horizon)) = (raw_reads_from(query), horizon) else {
        return Ok(());
    };
    if from >= horizon {
        return Ok(());
    }
    let advice = if query.needs_records() {
        "group_by/filter on requested_model or label.* read raw records: start the range at \
         or after that time, or leave those dimensions out (the rollups keep every other \
         dimension for all time)"
    } else {
        "give from and to on whole hours (e.g. 2026-11-01T05:00:00Z) so the rollups answer \
         all of it, or start the range at or after that time"
    };
    Err(StoreError::beyond_retention(format!(
        "this query needs raw records from {}, but raw records before {} have been deleted \
         by retention (AISPEND_RETENTION_DAYS): {advice}",
        format_rfc3339_ms(from),
        format_rfc3339_ms(horizon)
    )))
}

/// Splits `[from, to)` into non-empty, adjacent segments, each answered
/// exactly by one source: raw records for partial hours, the hourly rollup
/// for whole hours, the daily rollup for whole UTC days.
pub fn plan_segments(from: i64, to: i64) -> Vec<(Source, i64, i64)> {
    let (h0, h1) = (ceil_hour(from), floor_hour(to));
    let segments = if h0 >= h1 {
        vec![(Source::Raw, from, to)]
    } else {
        let d0 = h0.div_euclid(DAY_MS) * DAY_MS
            + if h0.rem_euclid(DAY_MS) == 0 {
                0
            } else {
                DAY_MS
            };
        let d1 = h1.div_euclid(DAY_MS) * DAY_MS;
        if d0 < d1 {
            vec![
                (Source::Raw, from, h0),
                (Source::Hourly, h0, d0),
                (Source::Daily, d0, d1),
                (Source::Hourly, d1, h1),
                (Source::Raw, h1, to),
            ]
        } else {
            vec![
                (Source::Raw, from, h0),
                (Source::Hourly, h0, h1),
                (Source::Raw, h1, to),
            ]
        }
    };
    segments.into_iter().filter(|(_, a, b)| a < b).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::time::parse_rfc3339_ms;

    fn t(s: &str) -> i64 {
        parse_rfc3339_ms(s).unwrap_or(i64::MIN)
    }

    #[test]
    fn month_with_ragged_edges_uses_every_source_once() {
        let plan = plan_segments(t("2026-11-01T05:30:00Z"), t("2026-11-30T17:23:45Z"));
        assert_eq!(
            plan,
            vec![
                (
                    Source::Raw,
                    t("2026-11-01T05:30:00Z"),
                    t("2026-11-01T06:00:00Z")
                ),
                (
                    Source::Hourly,
                    t("2026-11-01T06:00:00Z"),
                    t("2026-11-02T00:00:00Z")
                ),
                (
                    Source::Daily,
                    t("2026-11-02T00:00:00Z"),
                    t("2026-11-30T00:00:00Z")
                ),
                (
                    Source::Hourly,
                    t("2026-11-30T00:00:00Z"),
                    t("2026-11-30T17:00:00Z")
                ),
                (
                    Source::Raw,
                    t("2026-11-30T17:00:00Z"),
                    t("2026-11-30T17:23:45Z")
                ),
            ]
        );
    }

    fn query(from: &str, to: &str, group_by: &str) -> UsageQuery {
        UsageQuery::parse(
            Some(&format!(
                "from={}&to={}&group_by={group_by}",
                from.replace('+', "%2B"),
                to.replace('+', "%2B")
            )),
            0,
        )
        .unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn retention_refuses_only_raw_reads_before_the_horizon() {
        let horizon = Some(t("2026-11-10T00:00:00Z"));
        // Whole hours before the horizon: rollups only.
        let q = query("2026-11-01T05:00:00Z", "2026-11-20T00:00:00Z", "team");
        assert_eq!(raw_reads_from(&q), None);
        assert!(check_retention(&q, horizon).is_ok());
        // A partial first hour before the horizon: refused, naming both times.
        let q = query("2026-11-01T05:30:00Z", "2026-11-20T00:00:00Z", "team");
        assert_eq!(raw_reads_from(&q), Some(t("2026-11-01T05:30:00Z")));
        let err = check_retention(&q, horizon).expect_err("refused");
        assert_eq!(err.kind(), crate::store::StoreErrorKind::BeyondRetention);
        assert!(err.message().contains("2026-11-01T05:30:00"), "{err}");
        assert!(err.message().contains("2026-11-10T00:00:00"), "{err}");
        // ... but fine with no retention, or a partial hour after the horizon.
        assert!(check_retention(&q, None).is_ok());
        let q = query("2026-11-01T05:00:00Z", "2026-11-20T07:30:00Z", "team");
        assert!(check_retention(&q, horizon).is_ok());
        // requested_model reads the whole range from records.
        let q = query(
            "2026-11-01T00:00:00Z",
            "2026-11-20T00:00:00Z",
            "requested_model",
        );
        assert!(check_retention(&q, horizon).is_err());
        let q = query(
            "2026-11-10T00:00:00Z",
            "2026-11-20T00:00:00Z",
            "requested_model",
        );
        assert!(check_retention(&q, horizon).is_ok());
    }

    #[test]
    fn aligned_and_short_ranges() {
        let (a, b) = (t("2026-11-01T00:00:00Z"), t("2026-12-01T00:00:00Z"));
        assert_eq!(plan_segments(a, b), vec![(Source::Daily, a, b)]);
        let (a, b) = (t("2026-11-01T10:10:00Z"), t("2026-11-01T10:50:00Z"));
        assert_eq!(plan_segments(a, b), vec![(Source::Raw, a, b)]);
        let (a, b) = (t("2026-11-01T10:00:00Z"), t("2026-11-01T13:00:00Z"));
        assert_eq!(plan_segments(a, b), vec![(Source::Hourly, a, b)]);
        assert!(plan_segments(a, a).is_empty());
    }
}
