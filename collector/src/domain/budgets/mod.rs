//! Budgets (CONTRACTS §6): validation of the API body, UTC periods, and the state
//! a spend puts a budget in. Plain logic; the store keeps budgets, the HTTP
//! layer and the caps cache use these rules.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};
use time::{Date, Month, OffsetDateTime, Time};

use super::alerts::Tiers;
use super::time::DAY_MS;
use super::validate::{is_tag_key, is_tag_value};

pub const DEFAULT_SOFT: f64 = 0.8;
pub const DEFAULT_HARD: f64 = 1.0;
const MAX_ID_LEN: usize = 64;
/// A scope narrows spend by AND-ing pairs; more than a few is a mistake.
const MAX_SCOPE_PAIRS: usize = 16;

/// Which records a budget counts: every pair must match (a tag name or
/// `key_id` → value). Sorted, so equal scopes compare and hash equal.
pub type Scope = BTreeMap<String, String>;

/// The scope key that matches the record's `key_id` rather than a tag.
pub const KEY_ID: &str = "key_id";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Day,
    Month,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Month => "month",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "day" => Some(Period::Day),
            "month" => Some(Period::Month),
            _ => None,
        }
    }

    /// The UTC period `[start, end)` containing `now_ms`.
    pub fn bounds(self, now_ms: i64) -> (i64, i64) {
        match self {
            Period::Day => {
                let start = now_ms.div_euclid(DAY_MS) * DAY_MS;
                (start, start + DAY_MS)
            }
            Period::Month => month_bounds(now_ms),
        }
    }
}

/// First instants of the month containing `now_ms` and of the next one.
fn month_bounds(now_ms: i64) -> (i64, i64) {
    let fallback = Period::Day.bounds(now_ms);
    let Ok(now) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(now_ms) * 1_000_000) else {
        return fallback;
    };
    let (next_year, next_month) = match now.month() {
        Month::December => (now.year() + 1, Month::January),
        month => (now.year(), month.next()),
    };
    let first = |year: i32, month: Month| {
        Date::from_calendar_date(year, month, 1)
            .ok()
            .map(|d| d.with_time(Time::MIDNIGHT).assume_utc().unix_timestamp() * 1000)
    };
    match (first(now.year(), now.month()), first(next_year, next_month)) {
        (Some(start), Some(end)) => (start, end),
        _ => fallback,
    }
}

/// Where spend stands against the thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetState {
    Ok,
    Soft,
    Hard,
}

impl BudgetState {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetState::Ok => "ok",
            BudgetState::Soft => "soft",
            BudgetState::Hard => "hard",
        }
    }
}

/// How a budget's hard threshold is enforced (SPEC §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Enforce {
    /// Cap flags trailing spend (the bounded overshoot of the README).
    #[default]
    Flags,
    /// Leases and per-call reservations: spend never passes the hard threshold.
    Strict,
}

impl Enforce {
    pub fn as_str(self) -> &'static str {
        match self {
            Enforce::Flags => "flags",
            Enforce::Strict => "strict",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "flags" => Some(Enforce::Flags),
            "strict" => Some(Enforce::Strict),
            _ => None,
        }
    }
}

/// A validated budget: `0 < soft <= hard`, `amount_usd > 0`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Budget {
    pub id: String,
    pub scope: Scope,
    pub period: Period,
    pub amount_usd: f64,
    /// Fraction of `amount_usd` at which the budget turns `soft`.
    pub soft: f64,
    /// Fraction of `amount_usd` at which the budget turns `hard`.
    pub hard: f64,
    /// Alert tiers (CONTRACTS §10), fractions of `amount_usd`.
    pub alerts: Tiers,
    /// `flags` (default) or `strict` (leases + reservations).
    pub enforce: Enforce,
}

impl Budget {
    /// Reaching a threshold exactly counts as crossing it: a hard cap of
    /// $100 blocks once $100 have been spent.
    pub fn state(&self, spend_usd: f64) -> BudgetState {
        self.state_with(spend_usd, 0.0)
    }

    /// The state when active overrides raise the hard threshold by
    /// `extra_hard_usd` (CONTRACTS §9); the soft threshold stays.
    pub fn state_with(&self, spend_usd: f64, extra_hard_usd: f64) -> BudgetState {
        if spend_usd >= self.hard * self.amount_usd + extra_hard_usd {
            BudgetState::Hard
        } else if spend_usd >= self.soft * self.amount_usd {
            BudgetState::Soft
        } else {
            BudgetState::Ok
        }
    }
}

/// A budget id: `[A-Za-z0-9._:-]{1,64}`.
pub fn is_budget_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Validates a `POST`/`PUT /v1/budgets` body. For `PUT`, `path_id` is the id
/// in the URL: the body may omit `id` or repeat the same one.
pub fn validate_budget(body: &Value, path_id: Option<&str>) -> Result<Budget, String> {
    let obj = body
        .as_object()
        .ok_or_else(|| String::from("budget must be a JSON object"))?;
    if let Some(unknown) = obj.keys().find(|k| {
        !matches!(
            k.as_str(),
            "id" | "scope" | "period" | "amount_usd" | "soft" | "hard" | "alerts" | "enforce"
        )
    }) {
        return Err(format!(
            "unknown field {unknown:?}: use id, scope, period, amount_usd, soft, hard, alerts, enforce"
        ));
    }
    let id = budget_id(obj, path_id)?;
    let scope = scope_field(obj)?;
    let period = match obj.get("period") {
        None | Some(Value::Null) => return Err(String::from("field `period` is required")),
        Some(v) => v
            .as_str()
            .and_then(Period::parse)
            .ok_or_else(|| String::from("field `period`: expected \"day\" or \"month\""))?,
    };
    let amount_usd = match number(obj, "amount_usd")? {
        None => return Err(String::from("field `amount_usd` is required")),
        Some(a) if a > 0.0 => a,
        Some(_) => return Err(String::from("field `amount_usd` must be greater than 0")),
    };
    let soft = number(obj, "soft")?.unwrap_or(DEFAULT_SOFT);
    let hard = number(obj, "hard")?.unwrap_or(DEFAULT_HARD);
    if soft <= 0.0 || soft > hard {
        return Err(format!(
            "thresholds must satisfy 0 < soft <= hard (got soft {soft}, hard {hard})"
        ));
    }
    let alerts = alerts_field(obj.get("alerts"))?;
    let enforce = match obj.get("enforce") {
        None | Some(Value::Null) => Enforce::Flags,
        Some(v) => v
            .as_str()
            .and_then(Enforce::parse)
            .ok_or_else(|| String::from("field `enforce`: expected \"strict\" or \"flags\""))?,
    };
    Ok(Budget {
        id,
        scope,
        period,
        amount_usd,
        soft,
        hard,
        alerts,
        enforce,
    })
}

/// The optional `alerts` field: `{"info","warning","critical","hard"}`,
/// each a fraction of the amount in (0, 10]; a tier left out keeps its
/// default; the four must not decrease (info <= warning <= critical <= hard).
pub fn alerts_field(value: Option<&Value>) -> Result<Tiers, String> {
    let mut tiers = Tiers::default();
    let obj = match value {
        None | Some(Value::Null) => return Ok(tiers),
        Some(Value::Object(obj)) => obj,
        Some(_) => {
            return Err(String::from(
                "field `alerts`: expected an object such as \
                 {\"info\":0.5,\"warning\":0.7,\"critical\":0.9,\"hard\":1.0}",
            ))
        }
    };
    for (name, v) in obj {
        let slot = match name.as_str() {
            "info" => &mut tiers.info,
            "warning" => &mut tiers.warning,
            "critical" => &mut tiers.critical,
            "hard" => &mut tiers.hard,
            other => {
                return Err(format!(
                    "field `alerts`: unknown tier {other:?}: use info, warning, critical, hard"
                ))
            }
        };
        *slot = v
            .as_f64()
            .filter(|f| f.is_finite() && *f > 0.0 && *f <= 10.0)
            .ok_or_else(|| {
                format!(
                    "field `alerts.{name}`: expected a fraction of the amount in (0, 10], not {v}"
                )
            })?;
    }
    if !(tiers.info <= tiers.warning
        && tiers.warning <= tiers.critical
        && tiers.critical <= tiers.hard)
    {
        return Err(format!(
            "field `alerts`: tiers must satisfy info <= warning <= critical <= hard \
             (got info {}, warning {}, critical {}, hard {})",
            tiers.info, tiers.warning, tiers.critical, tiers.hard
        ));
    }
    Ok(tiers)
}

fn budget_id(obj: &Map<String, Value>, path_id: Option<&str>) -> Result<String, String> {
    let body_id = match obj.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(String::from("field `id`: expected a string")),
    };
    let id = match (path_id, body_id) {
        (Some(path), Some(body)) if path != body => {
            return Err(format!(
                "field `id` ({body:?}) differs from the id in the URL ({path:?})"
            ))
        }
        (Some(path), _) => path,
        (None, Some(body)) => body,
        (None, None) => return Err(String::from("field `id` is required")),
    };
    if !is_budget_id(id) {
        return Err(format!(
            "field `id`: {id:?} must match [A-Za-z0-9._:-]{{1,64}}"
        ));
    }
    Ok(id.to_owned())
}

pub(crate) fn scope_field(obj: &Map<String, Value>) -> Result<Scope, String> {
    let Some(pairs) = obj.get("scope").and_then(Value::as_object) else {
        return Err(String::from(
            "field `scope`: expected an object such as {\"team\":\"search\"}",
        ));
    };
    if pairs.is_empty() {
        return Err(String::from("field `scope` needs at least one pair"));
    }
    if pairs.len() > MAX_SCOPE_PAIRS {
        return Err(format!(
            "field `scope` has {} pairs; at most {MAX_SCOPE_PAIRS}",
            pairs.len()
        ));
    }
    let mut scope = Scope::new();
    for (key, value) in pairs {
        if key != KEY_ID && !is_tag_key(key) {
            return Err(format!(
                "scope key {key:?}: use key_id or a tag name matching [a-z0-9_]{{1,64}}"
            ));
        }
        let Some(value) = value.as_str().filter(|v| is_tag_value(v)) else {
            return Err(format!(
                "scope.{key}: expected a string matching [A-Za-z0-9._:/-]{{1,128}}"
            ));
        };
        scope.insert(key.clone(), value.to_owned());
    }
    Ok(scope)
}

fn number(obj: &Map<String, Value>, field: &str) -> Result<Option<f64>, String> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|n| n.is_finite())
            .map(Some)
            .ok_or_else(|| format!("field `{field}`: expected a number")),
    }
}

#[cfg(test)]
mod tests;
