//! The audit log (CONTRACTS §9): one entry per write, append-only. Entries,
//! the `GET /v1/audit` query (filters, paging by `before` + `limit`) and the
//! CSV form.

use std::fmt::Write;

use serde::Serialize;
use serde_json::Value;

use super::time::{format_rfc3339_ms, parse_rfc3339_ms};

/// One entry. `seq` orders entries (the paging cursor); 0 before it is stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub seq: i64,
    #[serde(serialize_with = "ser_ms")]
    pub at: i64,
    /// A token id, `bootstrap:<role>` or `anonymous`; never a secret.
    pub actor: String,
    /// `<resource>.<verb>`, e.g. `budget.create`, `override.approve`.
    pub action: String,
    /// What was changed, e.g. `budget:b1`, `token:tok_…`.
    pub target: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub request_id: String,
}

fn ser_ms<S: serde::Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_rfc3339_ms(*ms))
}

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

/// A `GET /v1/audit` query: every filter set must match; newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    /// `at >= from`.
    pub from_ms: Option<i64>,
    /// `at < to`.
    pub to_ms: Option<i64>,
    /// Only entries with `seq < before` (the previous page's `next_before`).
    pub before: Option<i64>,
    pub limit: u32,
    pub csv: bool,
}

impl AuditQuery {
    pub fn parse(raw: Option<&str>) -> Result<Self, String> {
        let mut q = AuditQuery {
            limit: DEFAULT_LIMIT,
            ..AuditQuery::default()
        };
        for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            let text = value.into_owned();
            let time = |name: &str| {
                parse_rfc3339_ms(&text)
                    .ok_or_else(|| format!("`{name}`: expected an RFC 3339 time"))
            };
            match key.as_ref() {
                "actor" => q.actor = Some(text),
                "action" => q.action = Some(text),
                "target" => q.target = Some(text),
                "from" => q.from_ms = Some(time("from")?),
                "to" => q.to_ms = Some(time("to")?),
                "before" => {
                    q.before = Some(
                        text.parse::<i64>()
                            .ok()
                            .filter(|b| *b > 0)
                            .ok_or("`before`: expected a positive integer (next_before)")?,
                    )
                }
                "limit" => {
                    q.limit = text
                        .parse::<u32>()
                        .ok()
                        .filter(|l| (1..=MAX_LIMIT).contains(l))
                        .ok_or_else(|| format!("`limit`: expected 1 to {MAX_LIMIT}"))?
                }
                "format" => match text.as_str() {
                    "csv" => q.csv = true,
                    "json" => q.csv = false,
                    other => return Err(format!("`format`: {other:?} is not json or csv")),
                },
                other => {
                    return Err(format!(
                        "unknown query parameter {other:?}: use actor, action, target, from, \
                         to, before, limit, format"
                    ))
                }
            }
        }
        Ok(q)
    }

    /// Whether an entry passes the filters (not the paging); what every
    /// store's SQL must agree with.
    pub fn matches(&self, e: &AuditEntry) -> bool {
        self.actor.as_ref().is_none_or(|a| *a == e.actor)
            && self.action.as_ref().is_none_or(|a| *a == e.action)
            && self.target.as_ref().is_none_or(|t| *t == e.target)
            && self.from_ms.is_none_or(|f| e.at >= f)
            && self.to_ms.is_none_or(|t| e.at < t)
            && self.before.is_none_or(|b| e.seq < b)
    }
}

/// A page of entries, newest first; `next_before` is set when a full page
/// was answered (pass it as `before` for the next one).
#[derive(Debug, Serialize)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub next_before: Option<i64>,
}

impl AuditPage {
    pub fn new(entries: Vec<AuditEntry>, limit: u32) -> Self {
        let next_before = if entries.len() >= limit as usize {
            entries.last().map(|e| e.seq)
        } else {
            None
        };
        Self {
            entries,
            next_before,
        }
    }

    /// `seq,at,actor,action,target,before,after,request_id`, JSON cells quoted.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("seq,at,actor,action,target,before,after,request_id\n");
        for e in &self.entries {
            let json = |v: &Option<Value>| v.as_ref().map(Value::to_string).unwrap_or_default();
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{}",
                e.seq,
                format_rfc3339_ms(e.at),
                csv_cell(&e.actor),
                csv_cell(&e.action),
                csv_cell(&e.target),
                csv_cell(&json(&e.before)),
                csv_cell(&json(&e.after)),
                csv_cell(&e.request_id)
            );
        }
        out
    }
}

/// Quotes a cell when it holds a comma, quote or line break; a leading
/// `=`, `+`, `-` or `@` is prefixed with `'` so spreadsheets do not run it.
fn csv_cell(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(seq: i64, actor: &str, action: &str, at: i64) -> AuditEntry {
        AuditEntry {
            seq,
            at,
            actor: actor.into(),
            action: action.into(),
            target: "budget:b1".into(),
            before: None,
            after: Some(json!({"id": "b1", "note": "a,\"b\""})),
            request_id: "r1".into(),
        }
    }

    #[test]
    fn parses_filters_and_paging() {
        let q = AuditQuery::parse(Some(
            "actor=tok_1&action=budget.create&from=2026-11-01T00:00:00Z&before=9&limit=5&format=csv",
        ))
        .expect("valid");
        assert_eq!(q.actor.as_deref(), Some("tok_1"));
        assert_eq!(q.before, Some(9));
        assert_eq!(q.limit, 5);
        assert!(q.csv);
        assert!(q.matches(&entry(3, "tok_1", "budget.create", q.from_ms.unwrap_or(0))));
        assert!(!q.matches(&entry(9, "tok_1", "budget.create", q.from_ms.unwrap_or(0))));
        assert!(!q.matches(&entry(3, "tok_2", "budget.create", q.from_ms.unwrap_or(0))));
        assert!(!q.matches(&entry(3, "tok_1", "budget.create", 0)));
        for bad in [
            "limit=0",
            "limit=1001",
            "before=x",
            "from=yesterday",
            "format=xml",
            "x=1",
        ] {
            assert!(AuditQuery::parse(Some(bad)).is_err(), "{bad}");
        }
        assert_eq!(AuditQuery::parse(None).map(|q| q.limit), Ok(DEFAULT_LIMIT));
    }

    #[test]
    fn csv_quotes_json_and_defuses_formulas() {
        let mut e = entry(1, "=cmd", "budget.create", 0);
        e.target = "a\nb".into();
        let page = AuditPage::new(vec![e], 10);
        let csv = page.to_csv();
        assert!(csv.starts_with("seq,at,actor,action,target,before,after,request_id\n"));
        assert!(csv.contains(",'=cmd,"), "{csv}");
        assert!(csv.contains("\"a\nb\""), "{csv}");
        assert!(
            csv.contains(r#""{""id"":""b1"",""note"":""a,\""b\""""}""#),
            "{csv}"
        );
        assert_eq!(page.next_before, None);
        let full = AuditPage::new(vec![entry(7, "a", "x", 0), entry(4, "a", "x", 0)], 2);
        assert_eq!(full.next_before, Some(4));
    }
}
