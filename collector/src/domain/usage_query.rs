//! `GET /v1/usage` query parameters (CONTRACTS §4): parsing and validation.

use super::time::{format_rfc3339_ms, month_start, parse_rfc3339_ms, DAY_MS, HOUR_MS};
use super::validate::{is_tag_key, is_tag_value};

/// The tags every deployment has; any other `[a-z0-9_]{1,64}` name is a
/// valid tag once the store has seen it on a record.
pub const CANONICAL_TAGS: [&str; 5] = ["team", "project", "cost_center", "environment", "org"];

/// Every dimension name that is always valid (besides `label.<name>` and
/// operator tags), in the order error messages list them.
pub const FIXED_DIMS: [&str; 14] = [
    "team",
    "project",
    "cost_center",
    "environment",
    "org",
    "key_id",
    "model",
    "requested_model",
    "provider",
    "operation",
    "day",
    "hour",
    "week",
    "month",
];

/// One dimension usage can be grouped or filtered by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A tag of the record (`team`, `project`, … or an operator tag).
    Tag(String),
    KeyId,
    Model,
    /// The model the client asked for (before any gateway rewrite).
    RequestedModel,
    Provider,
    Operation,
    /// The UTC day of the call, `YYYY-MM-DD`.
    Day,
    /// The UTC hour of the call, RFC 3339 (`2026-11-24T06:00:00Z`).
    Hour,
    /// The ISO 8601 week of the call's UTC day, `YYYY-Www` (`2026-W48`;
    /// weeks start on Monday, the year is the ISO week-numbering year).
    Week,
    /// The UTC month of the call, `YYYY-MM`.
    Month,
    /// A label of the record: `label.<name>`.
    Label(String),
}

impl Dim {
    /// `None`: not a dimension name (a tag-shaped name is always a `Tag`
    /// here; whether the store knows it is checked by the service).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "key_id" => Dim::KeyId,
            "model" => Dim::Model,
            "requested_model" => Dim::RequestedModel,
            "provider" => Dim::Provider,
            "operation" => Dim::Operation,
            "day" => Dim::Day,
            "hour" => Dim::Hour,
            "week" => Dim::Week,
            "month" => Dim::Month,
            tag if is_tag_key(tag) => Dim::Tag(tag.to_owned()),
            other => match other.strip_prefix("label.") {
                Some(label) if is_tag_key(label) => Dim::Label(label.to_owned()),
                _ => return None,
            },
        })
    }

    pub fn name(&self) -> String {
        let fixed = match self {
            Dim::Tag(tag) => return tag.clone(),
            Dim::Label(label) => return format!("label.{label}"),
            Dim::KeyId => "key_id",
            Dim::Model => "model",
            Dim::RequestedModel => "requested_model",
            Dim::Provider => "provider",
            Dim::Operation => "operation",
            Dim::Day => "day",
            Dim::Hour => "hour",
            Dim::Week => "week",
            Dim::Month => "month",
        };
        fixed.to_owned()
    }

    /// An operator tag: valid only if the store has seen it.
    pub fn operator_tag(&self) -> Option<&str> {
        match self {
            Dim::Tag(tag) if !CANONICAL_TAGS.contains(&tag.as_str()) => Some(tag),
            _ => None,
        }
    }

    /// Read from the raw records only (the rollups do not keep it).
    pub fn needs_records(&self) -> bool {
        matches!(self, Dim::RequestedModel | Dim::Label(_))
    }
}

/// Why a query string was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryError {
    /// A malformed value (a time, a filter value, a dimension listed twice).
    Invalid(String),
    /// A parameter name that is not one.
    UnknownParameter(String),
    /// A dimension name that is not one, in `param` (`group_by` or
    /// `filter.<name>`).
    UnknownDim { param: String, name: String },
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryError::Invalid(m) | QueryError::UnknownParameter(m) => f.write_str(m),
            QueryError::UnknownDim { param, name } => {
                f.write_str(&unknown_dim_message(param, name, &[]))
            }
        }
    }
}

/// The 400 message for an unknown dimension: names the parameter and lists
/// the valid names, with `tags` (the operator tags the store has seen), and
/// a close valid name when there is one.
pub fn unknown_dim_message(param: &str, name: &str, tags: &[String]) -> String {
    let valid: Vec<&str> = FIXED_DIMS.to_vec();
    let operator: Vec<&str> = tags
        .iter()
        .map(String::as_str)
        .filter(|t| !CANONICAL_TAGS.contains(t))
        .collect();
    let mut message = format!("{param}: unknown dimension {name:?}");
    if let Some(close) = valid
        .iter()
        .chain(&operator)
        .find(|v| edit_distance(v, name) <= 2 || name.eq_ignore_ascii_case(v))
    {
        message.push_str(&format!(" (did you mean {close:?}?)"));
    }
    message.push_str(&format!(
        "; valid dimensions: {}, label.<name>",
        valid.join(", ")
    ));
    if operator.is_empty() {
        message.push_str(" (no operator tag has been seen on a record yet)");
    } else {
        message.push_str(&format!(
            " and the operator tags seen on records: {}",
            operator.join(", ")
        ));
    }
    message
}

/// Levenshtein distance, for "did you mean" (names are short).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(current + 1);
            prev = current;
        }
    }
    row[b.len()]
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
    /// The tags a record must carry for its cost to count as covered (SPEC
    /// §11 coverage); set by the service from `AISPEND_REQUIRED_TAGS`, not
    /// by the query string. Empty: every record is covered.
    pub required_tags: Vec<String>,
}

impl UsageQuery {
    /// Parses the raw query string; `now_ms` sets the month-to-date default.
    pub fn parse(raw: Option<&str>, now_ms: i64) -> Result<Self, QueryError> {
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
                        let dim = Dim::parse(name).ok_or_else(|| QueryError::UnknownDim {
                            param: String::from("group_by"),
                            name: name.to_owned(),
                        })?;
                        if group_by.contains(&dim) {
                            return Err(QueryError::Invalid(format!(
                                "group_by lists {name:?} twice"
                            )));
                        }
                        group_by.push(dim);
                    }
                }
                other => {
                    let Some(name) = other.strip_prefix("filter.") else {
                        return Err(QueryError::UnknownParameter(format!(
                            "unknown query parameter {other:?}: use from, to, group_by, \
                             filter.<dim> or format"
                        )));
                    };
                    let dim = Dim::parse(name).ok_or_else(|| QueryError::UnknownDim {
                        param: other.to_owned(),
                        name: name.to_owned(),
                    })?;
                    let value = filter_value(&dim, other, &value)?;
                    filters.push((dim, value));
                }
            }
        }
        let to_ms = to.unwrap_or(now_ms);
        let from_ms = from.unwrap_or_else(|| month_start(to_ms));
        if from_ms > to_ms {
            return Err(QueryError::Invalid(format!(
                "`from` ({}) is after `to` ({})",
                format_rfc3339_ms(from_ms),
                format_rfc3339_ms(to_ms)
            )));
        }
        Ok(Self {
            from_ms,
            to_ms,
            group_by,
            filters,
            required_tags: Vec::new(),
        })
    }

    /// Every dimension the query reads, with the parameter it came from.
    pub fn dims(&self) -> impl Iterator<Item = (String, &Dim)> {
        let grouped = self.group_by.iter().map(|d| (String::from("group_by"), d));
        let filtered = self
            .filters
            .iter()
            .map(|(d, _)| (format!("filter.{}", d.name()), d));
        grouped.chain(filtered)
    }

    /// Whether a dimension is only in the raw records (`requested_model`,
    /// `label.<name>`): then the whole range is read from them.
    pub fn needs_records(&self) -> bool {
        self.dims().any(|(_, d)| d.needs_records())
    }

    /// The finest time period the query groups or filters by: an hour, a
    /// day (`day`, `week`, `month`), or `None` when no time dimension.
    pub fn period_ms(&self) -> Option<i64> {
        let mut period = None;
        for (_, dim) in self.dims() {
            match dim {
                Dim::Hour => return Some(HOUR_MS),
                Dim::Day | Dim::Week | Dim::Month => period = Some(DAY_MS),
                _ => {}
            }
        }
        period
    }
}

/// The value a filter compares with, checked: every stored dimension value
/// obeys the tag-value rule except model names, which are free-form; a time
/// dimension must look like its values, and an hour given with any offset
/// is compared in its UTC form (`2026-11-24T07:00:00+01:00` is
/// `2026-11-24T06:00:00Z`).
fn filter_value(dim: &Dim, param: &str, value: &str) -> Result<String, QueryError> {
    let ok = match dim {
        Dim::Model | Dim::RequestedModel => !value.is_empty(),
        Dim::Day => parse_date(value).is_some(),
        Dim::Hour => match parse_rfc3339_ms(value) {
            Some(ms) if ms.rem_euclid(HOUR_MS) == 0 => return Ok(format_rfc3339_ms(ms)),
            _ => false,
        },
        Dim::Week => is_iso_week(value),
        Dim::Month => is_month(value),
        _ => is_tag_value(value),
    };
    if ok {
        return Ok(value.to_owned());
    }
    let shape = match dim {
        Dim::Model | Dim::RequestedModel => "a non-empty model name",
        Dim::Day => "a UTC day YYYY-MM-DD",
        Dim::Hour => "a whole UTC hour such as 2026-11-24T06:00:00Z (encode + as %2B)",
        Dim::Week => "an ISO week YYYY-Www such as 2026-W48",
        Dim::Month => "a month YYYY-MM",
        _ => "a value matching [A-Za-z0-9._:/-]{1,128}",
    };
    Err(QueryError::Invalid(format!(
        "{param}: value {value:?} must be {shape}"
    )))
}

fn parse_date(value: &str) -> Option<()> {
    let mut parts = value.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let month = time::Month::try_from(m.parse::<u8>().ok()?).ok()?;
    time::Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()?;
    Some(())
}

fn is_iso_week(value: &str) -> bool {
    let Some((year, week)) = value.split_once("-W") else {
        return false;
    };
    year.len() == 4
        && week.len() == 2
        && year.bytes().all(|b| b.is_ascii_digit())
        && week.parse::<u8>().is_ok_and(|w| (1..=53).contains(&w))
}

fn is_month(value: &str) -> bool {
    let Some((year, month)) = value.split_once('-') else {
        return false;
    };
    year.len() == 4
        && month.len() == 2
        && year.bytes().all(|b| b.is_ascii_digit())
        && month.parse::<u8>().is_ok_and(|m| (1..=12).contains(&m))
}

fn parse_time(name: &str, value: &str) -> Result<i64, QueryError> {
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
        QueryError::Invalid(message)
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
        assert_eq!(q.period_ms(), Some(DAY_MS));
        assert!(!q.needs_records());
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
    fn new_dimensions_parse_with_their_filters() {
        let raw = "group_by=hour,week,month,requested_model,label.feature\
                   &filter.label.feature=summarize&filter.requested_model=gpt-4o%20mini\
                   &filter.week=2026-W48&filter.month=2026-11&filter.hour=2026-11-24T06:00:00Z\
                   &filter.day=2026-11-24";
        let q = UsageQuery::parse(Some(raw), NOW).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            q.group_by,
            vec![
                Dim::Hour,
                Dim::Week,
                Dim::Month,
                Dim::RequestedModel,
                Dim::Label("feature".into())
            ]
        );
        assert_eq!(
            q.filters[0],
            (Dim::Label("feature".into()), "summarize".into())
        );
        assert_eq!(q.filters[1], (Dim::RequestedModel, "gpt-4o mini".into()));
        let h = UsageQuery::parse(Some("filter.hour=2026-11-24T07:00:00.000%2B01:00"), NOW)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(h.filters, vec![(Dim::Hour, "2026-11-24T06:00:00Z".into())]);
        assert_eq!(q.period_ms(), Some(HOUR_MS));
        assert!(q.needs_records());
        let names: Vec<String> = q.group_by.iter().map(Dim::name).collect();
        assert_eq!(
            names,
            ["hour", "week", "month", "requested_model", "label.feature"]
        );
        let months =
            UsageQuery::parse(Some("group_by=month,team"), NOW).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(months.period_ms(), Some(DAY_MS));
        assert_eq!(
            UsageQuery::parse(Some("group_by=team"), NOW).map(|q| q.period_ms()),
            Ok(None)
        );
    }

    #[test]
    fn every_fixed_dimension_parses_and_names_itself() {
        for name in FIXED_DIMS
            .iter()
            .copied()
            .chain(["label.feature", "region"])
        {
            assert_eq!(Dim::parse(name).map(|d| d.name()), Some(name.to_owned()));
        }
    }

    #[test]
    fn every_typo_form_is_an_unknown_dimension_naming_its_parameter() {
        for (raw, param, name) in [
            ("group_by=Team", "group_by", "Team"),
            ("group_by=team-name", "group_by", "team-name"),
            ("group_by=team,modle%20x", "group_by", "modle x"),
            ("group_by=label.", "group_by", "label."),
            ("group_by=label.Feature", "group_by", "label.Feature"),
            ("group_by=labels.feature", "group_by", "labels.feature"),
            ("filter.Bad=x", "filter.Bad", "Bad"),
            ("filter.label.=x", "filter.label.", "label."),
            ("filter.tag.team=x", "filter.tag.team", "tag.team"),
        ] {
            match UsageQuery::parse(Some(raw), NOW) {
                Err(QueryError::UnknownDim { param: p, name: n }) => {
                    assert_eq!((p.as_str(), n.as_str()), (param, name), "{raw}");
                }
                other => panic!("{raw}: {other:?}"),
            }
        }
        // Tag-shaped names parse as tags; the service checks them against
        // the tags the store has seen.
        let q = UsageQuery::parse(Some("group_by=teams&filter.regoin=eu"), NOW)
            .unwrap_or_else(|e| panic!("{e}"));
        let operator: Vec<(String, Option<&str>)> =
            q.dims().map(|(p, d)| (p, d.operator_tag())).collect();
        assert_eq!(
            operator,
            vec![
                ("group_by".into(), Some("teams")),
                ("filter.regoin".into(), Some("regoin"))
            ]
        );
        assert_eq!(Dim::Tag("team".into()).operator_tag(), None);
    }

    #[test]
    fn unknown_dimension_message_lists_the_valid_ones() {
        let m = unknown_dim_message("group_by", "teams", &["region".into(), "team".into()]);
        assert!(
            m.starts_with("group_by: unknown dimension \"teams\""),
            "{m}"
        );
        assert!(m.contains("did you mean \"team\""), "{m}");
        for valid in FIXED_DIMS {
            assert!(m.contains(valid), "{valid}: {m}");
        }
        assert!(m.contains("label.<name>"), "{m}");
        assert!(m.contains("operator tags seen on records: region"), "{m}");
        let m = unknown_dim_message("filter.x", "zzzzzzzz", &[]);
        assert!(!m.contains("did you mean"), "{m}");
        assert!(m.contains("no operator tag"), "{m}");
        assert_eq!(edit_distance("modle", "model"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn rejects_bad_queries_with_a_reason() {
        let cases = [
            ("group_by=Team", "unknown dimension"),
            ("group_by=team-name", "unknown dimension"),
            ("group_by=team,team", "twice"),
            ("group_by=hour,hour", "twice"),
            ("from=yesterday", "RFC 3339"),
            ("to=2026-11-01", "RFC 3339"),
            ("from=2026-11-01T00:00:00+01:00", "%2B"),
            ("from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z", "after"),
            ("filter.Bad=x", "unknown dimension"),
            ("filter.team=a%20b", "must be"),
            ("filter.label.feature=a%20b", "must be"),
            ("filter.week=2026-48", "ISO week"),
            ("filter.week=2026-W54", "ISO week"),
            ("filter.month=2026-13", "YYYY-MM"),
            ("filter.day=2026-11-31", "YYYY-MM-DD"),
            ("filter.hour=2026-11-24T06:30:00Z", "whole UTC hour"),
            ("filter.requested_model=", "model name"),
            ("limit=10", "unknown query parameter"),
        ];
        for (raw, expected) in cases {
            match UsageQuery::parse(Some(raw), NOW) {
                Ok(q) => panic!("{raw} accepted: {q:?}"),
                Err(e) => assert!(e.to_string().contains(expected), "{raw}: {e}"),
            }
        }
    }
}
