//! `GET /v1/usage` query parameters (CONTRACTS §4): parsing and validation.

use super::time::{format_rfc3339_ms, month_start, parse_rfc3339_ms};
use super::validate::{is_tag_key, is_tag_value};

/// The tags every deployment has; any other `[a-z0-9_]+` name is also a tag.
pub const CANONICAL_TAGS: [&str; 5] = ["team", "project", "cost_center", "environment", "org"];

/// One dimension usage can be grouped or filtered by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A tag of the record (`team`, `project`, … or an operator tag).
    Tag(String),
    KeyId,
    Model,
    Provider,
    Operation,
    /// The UTC day of the call, `YYYY-MM-DD`.
    Day,
}

impl Dim {
    pub fn parse(name: &str) -> Result<Self, String> {
        Ok(match name {
            "key_id" => Dim::KeyId,
            "model" => Dim::Model,
            "provider" => Dim::Provider,
            "operation" => Dim::Operation,
            "day" => Dim::Day,
            tag if is_tag_key(tag) => Dim::Tag(tag.to_owned()),
            other => {
                return Err(format!(
                    "unknown dimension {other:?}: use {}, key_id, model, provider, operation, day \
                     or a tag name matching [a-z0-9_]{{1,64}}",
                    CANONICAL_TAGS.join(", ")
                ))
            }
        })
    }

    pub fn name(&self) -> &str {
        match self {
            Dim::Tag(tag) => tag,
            Dim::KeyId => "key_id",
            Dim::Model => "model",
            Dim::Provider => "provider",
            Dim::Operation => "operation",
            Dim::Day => "day",
        }
    }
}

/// How a usage report is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    /// `text/csv`: header row, one line per row, no totals line.
    Csv,
}

impl Format {
    /// The `format=json|csv` parameter of a raw query string, if given.
    pub fn of_query(raw: Option<&str>) -> Result<Option<Self>, String> {
        let mut format = None;
        for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            if key == "format" {
                format = Some(match value.as_ref() {
                    "json" => Format::Json,
                    "csv" => Format::Csv,
                    other => {
                        return Err(format!("format: unknown value {other:?}: use json or csv"))
                    }
                });
            }
        }
        Ok(format)
    }
}

/// A validated usage query over the half-open interval `[from_ms, to_ms)`.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageQuery {
    pub from_ms: i64,
    pub to_ms: i64,
    pub group_by: Vec<Dim>,
    /// `filter.<dim>=<value>`: every one must match.
    pub filters: Vec<(Dim, String)>,
}

impl UsageQuery {
    /// Parses the raw query string; `now_ms` sets the month-to-date default.
    pub fn parse(raw: Option<&str>, now_ms: i64) -> Result<Self, String> {
        let mut from = None;
        let mut to = None;
        let mut group_by = Vec::new();
        let mut filters = Vec::new();
        for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            match key.as_ref() {
                "from" => from = Some(parse_time("from", &value)?),
                "to" => to = Some(parse_time("to", &value)?),
                // The answer's format: see `Format::of_query`.
                "format" => {}
                "group_by" => {
                    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                        let dim = Dim::parse(name)?;
                        if group_by.contains(&dim) {
                            return Err(format!("group_by lists {name:?} twice"));
                        }
                        group_by.push(dim);
                    }
                }
                other => {
                    let Some(name) = other.strip_prefix("filter.") else {
                        return Err(format!(
                            "unknown query parameter {other:?}: use from, to, group_by or filter.<dim>"
                        ));
                    };
                    let dim = Dim::parse(name)?;
                    // Every stored dimension value obeys the tag-value rule
                    // except models, which are free-form.
                    if dim != Dim::Model && !is_tag_value(&value) {
                        return Err(format!(
                            "filter.{name}: value {value:?} must match [A-Za-z0-9._:/-]{{1,128}}"
                        ));
                    }
                    filters.push((dim, value.into_owned()));
                }
            }
        }
        let to_ms = to.unwrap_or(now_ms);
        let from_ms = from.unwrap_or_else(|| month_start(to_ms));
        if from_ms > to_ms {
            return Err(format!(
                "`from` ({}) is after `to` ({})",
                format_rfc3339_ms(from_ms),
                format_rfc3339_ms(to_ms)
            ));
        }
        Ok(Self {
            from_ms,
            to_ms,
            group_by,
            filters,
        })
    }
}

fn parse_time(name: &str, value: &str) -> Result<i64, String> {
    parse_rfc3339_ms(value).ok_or_else(|| {
        let mut message = format!(
            "`{name}`: expected an RFC 3339 timestamp such as 2026-11-01T00:00:00Z, got {value:?}"
        );
        // In a query string an unencoded `+` decodes as a space, so
        // `...T00:00:00+01:00` arrives as `...T00:00:00 01:00`.
        if value.contains(' ') {
            message.push_str(
                "; a space where the offset's `+` was means the `+` was not URL-encoded: \
                 write it as %2B (e.g. 2026-11-01T00:00:00%2B01:00) or use Z",
            );
        }
        message
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_000_000_000; // 2026-11-18

    #[test]
    fn defaults_to_month_to_date() {
        let q = UsageQuery::parse(None, NOW).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(q.to_ms, NOW);
        assert_eq!(format_rfc3339_ms(q.from_ms), "2026-11-01T00:00:00Z");
        assert!(q.group_by.is_empty() && q.filters.is_empty());
    }

    #[test]
    fn parses_group_by_and_filters() {
        let raw = "from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00%2B00:00\
                   &group_by=team,model,day,region&filter.provider=openai&filter.team=search";
        let q = UsageQuery::parse(Some(raw), NOW).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(q.to_ms - q.from_ms, 86_400_000);
        assert_eq!(
            q.group_by,
            vec![
                Dim::Tag("team".into()),
                Dim::Model,
                Dim::Day,
                Dim::Tag("region".into())
            ]
        );
        assert_eq!(
            q.filters,
            vec![
                (Dim::Provider, "openai".into()),
                (Dim::Tag("team".into()), "search".into())
            ]
        );
    }

    #[test]
    fn format_parameter() {
        assert_eq!(Format::of_query(None), Ok(None));
        assert_eq!(Format::of_query(Some("group_by=team")), Ok(None));
        assert_eq!(Format::of_query(Some("format=csv")), Ok(Some(Format::Csv)));
        assert_eq!(
            Format::of_query(Some("group_by=team&format=json")),
            Ok(Some(Format::Json))
        );
        assert!(Format::of_query(Some("format=xlsx"))
            .is_err_and(|e| e.contains("format") && e.contains("json or csv")));
        assert!(UsageQuery::parse(Some("format=csv&group_by=team"), NOW).is_ok());
    }

    #[test]
    fn rejects_bad_queries_with_a_reason() {
        let cases = [
            ("group_by=Team", "unknown dimension"),
            ("group_by=team-name", "unknown dimension"),
            ("group_by=team,team", "twice"),
            ("from=yesterday", "RFC 3339"),
            ("to=2026-11-01", "RFC 3339"),
            ("from=2026-11-01T00:00:00+01:00", "%2B"),
            ("from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z", "after"),
            ("filter.Bad=x", "unknown dimension"),
            ("filter.team=a%20b", "must match"),
            ("limit=10", "unknown query parameter"),
        ];
        for (raw, expected) in cases {
            match UsageQuery::parse(Some(raw), NOW) {
                Ok(q) => panic!("{raw} accepted: {q:?}"),
                Err(e) => assert!(e.contains(expected), "{raw}: {e}"),
            }
        }
    }
}
