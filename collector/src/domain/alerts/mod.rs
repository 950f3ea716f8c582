//! Alerts (CONTRACTS §10): budget tiers, the forecast, the spike rule, the
//! anomaly z-score, and the alerts they raise. Plain logic with time passed
//! in; `service::alerts` reads spend from the store and calls these.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::access::hex;
use super::budgets::{Budget, Period, Scope};
use super::time::{ceil_hour, floor_hour, format_rfc3339_ms, DAY_MS, HOUR_MS};

#[cfg(test)]
mod tests;

/// An alert's severity, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Info,
    Warning,
    Critical,
    Hard,
}

impl Level {
    pub const ALL: [Level; 4] = [Level::Info, Level::Warning, Level::Critical, Level::Hard];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Critical => "critical",
            Level::Hard => "hard",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Level::ALL.into_iter().find(|l| l.as_str() == text)
    }
}

/// Why an alert fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Spend reached the tier's fraction of the amount.
    Threshold,
    /// The forecast for the period exceeds the amount (Critical).
    Forecast,
    /// Spend so far is ≥ 20 % above the same point of the previous period.
    Spike,
    /// A day's spend of one (team, model) with a z-score > 3 against the
    /// previous 30 days (no budget).
    Anomaly,
    /// A month's gateway-measured cost fell under the configured share of
    /// the provider's bill (SPEC §13; no budget).
    #[serde(rename = "coverage.low")]
    CoverageLow,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Threshold => "threshold",
            Kind::Forecast => "forecast",
            Kind::Spike => "spike",
            Kind::Anomaly => "anomaly",
            Kind::CoverageLow => "coverage.low",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Kind::Threshold,
            Kind::Forecast,
            Kind::Spike,
            Kind::Anomaly,
            Kind::CoverageLow,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

/// The tiers of a budget as fractions of its amount (SPEC §10 defaults;
/// a budget's `alerts` field, validated by `budgets::alerts_field`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Tiers {
    pub info: f64,
    pub warning: f64,
    pub critical: f64,
    pub hard: f64,
}

impl Default for Tiers {
    fn default() -> Self {
        Self {
            info: 0.5,
            warning: 0.7,
            critical: 0.9,
            hard: 1.0,
        }
    }
}

impl Tiers {
    pub fn fraction(&self, level: Level) -> f64 {
        match level {
            Level::Info => self.info,
            Level::Warning => self.warning,
            Level::Critical => self.critical,
            Level::Hard => self.hard,
        }
    }

    /// Every tier `spend_usd` has reached (reaching one exactly counts),
    /// lowest first: one ingest crossing several tiers fires each.
    pub fn crossed(&self, amount_usd: f64, spend_usd: f64) -> Vec<Level> {
        Level::ALL
            .into_iter()
            .filter(|&l| spend_usd >= self.fraction(l) * amount_usd)
            .collect()
    }
}

/// The window the forecast burns over, for a budget period at `now_ms`:
/// month budgets use the last 14 days and count days left, day budgets the
/// last 24 hours and hours left. Its ends are whole hours (the hour before
/// `now - 14 days` starts, the current hour ends), so it is read from the
/// hourly rollups alone: a range ending at `now` would scan the current
/// hour's raw records on every evaluation (the whole hour's ingest, again
/// and again) and its start would need raw records that retention may
/// have deleted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForecastWindow {
    /// `[from_ms, to_ms)`: where the mean burn is measured (whole hours,
    /// the current one included).
    pub from_ms: i64,
    pub to_ms: i64,
    /// Length of the window in units (14 days or 24 hours, plus the part
    /// of an hour the alignment adds).
    pub units: f64,
    /// Units (days or hours, fractional) from now to the period's end.
    pub units_left: f64,
}

pub fn forecast_window(period: Period, now_ms: i64) -> ForecastWindow {
    let (_, end) = period.bounds(now_ms);
    let (unit, units) = match period {
        Period::Month => (DAY_MS, 14),
        Period::Day => (HOUR_MS, 24),
    };
    let from_ms = floor_hour(now_ms - units * unit);
    let to_ms = ceil_hour(now_ms);
    ForecastWindow {
        from_ms,
        to_ms,
        units: (to_ms - from_ms) as f64 / unit as f64,
        units_left: (end - now_ms).max(0) as f64 / unit as f64,
    }
}

/// Spend so far + mean burn per unit over the window × units left.
pub fn forecast_usd(spend_so_far: f64, window_spend: f64, window: &ForecastWindow) -> f64 {
    let burn = if window.units > 0.0 {
        window_spend / window.units
    } else {
        0.0
    };
    round_usd(spend_so_far + burn * window.units_left)
}

/// `[from, to)` of the previous period up to the same point as `now_ms`
/// (for a month: the same offset into the previous month, capped at its
/// end), the point rounded up to a whole hour as the spend so far is (the
/// current hour counts whole), so both read the rollups alone.
pub fn previous_same_point(period: Period, now_ms: i64) -> (i64, i64) {
    let (start, _) = period.bounds(now_ms);
    let (prev_start, prev_end) = period.bounds(start - 1);
    let point = ceil_hour(now_ms) - start;
    (prev_start, (prev_start + point).min(prev_end))
}

/// The spike rule: spend so far ≥ 120 % of the previous period's spend at
/// the same point, when that was at least `min_previous_usd` (and > 0).
pub fn is_spike(spend_usd: f64, previous_usd: f64, min_previous_usd: f64) -> bool {
    previous_usd > 0.0 && previous_usd >= min_previous_usd && spend_usd >= 1.2 * previous_usd
}

/// The z-score of `today` against `history` (population standard
/// deviation); `None` with fewer than 2 days or no variation at all.
pub fn z_score(history: &[f64], today: f64) -> Option<f64> {
    if history.len() < 2 {
        return None;
    }
    let n = history.len() as f64;
    let mean = history.iter().sum::<f64>() / n;
    let var = history.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    let sd = var.sqrt();
    (sd > 1e-12).then(|| (today - mean) / sd)
}

/// The z-score above which a day's spend is an anomaly.
pub const ANOMALY_Z: f64 = 3.0;
/// Days of history an anomaly is measured against.
pub const ANOMALY_HISTORY_DAYS: usize = 30;

/// A day's spend per (team, model) is an anomaly when its z-score against
/// the previous 30 days is > 3 and it is at least `min_usd`.
pub fn is_anomaly(history: &[f64], today: f64, min_usd: f64) -> bool {
    anomaly_z(history, today, min_usd).is_some()
}

/// The z-score of an anomalous day, `None` when the day is not one.
pub fn anomaly_z(history: &[f64], today: f64, min_usd: f64) -> Option<f64> {
    if today < min_usd {
        return None;
    }
    z_score(history, today).filter(|z| *z > ANOMALY_Z)
}

/// The alert id of an anomaly: derived from (scope, day), so every replica
/// computes the same id and the store keeps one per (team, model, day).
pub fn anomaly_id(scope: &Scope, day_start: i64) -> String {
    let mut text = String::from("anomaly");
    for (k, v) in scope {
        text.push_str(&format!("\n{k}={v}"));
    }
    let digest = Sha256::digest(format!("{text}\n{day_start}"));
    format!("alt_{}", hex(digest.get(..12).unwrap_or_default()))
}

/// The anomaly alert of one (team, model) `scope` on the UTC day starting
/// at `day_start`, when its spend `today` is one against `history` (the
/// previous 30 days' spend, oldest first, 0 for a day without spend).
/// Critical; `threshold` is the z-score bound (3), `amount_usd` the mean
/// daily spend of the history (the baseline), `z_score` the day's.
pub fn anomaly(
    scope: &Scope,
    day_start: i64,
    history: &[f64],
    today: f64,
    min_usd: f64,
    now_ms: i64,
) -> Option<Alert> {
    let z = anomaly_z(history, today, min_usd)?;
    let baseline = history.iter().sum::<f64>() / history.len().max(1) as f64;
    Some(Alert {
        id: anomaly_id(scope, day_start),
        level: Level::Critical,
        kind: Kind::Anomaly,
        budget_id: None,
        scope: scope.clone(),
        threshold: ANOMALY_Z,
        spend_usd: round_usd(today),
        amount_usd: round_usd(baseline),
        forecast_usd: round_usd(today),
        period_start: day_start,
        at: now_ms,
        acked_at: None,
        acked_by: None,
        escalated_at: None,
        z_score: Some((z * 1000.0).round() / 1000.0),
    })
}

/// Whether an alert is open or acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Open,
    Acked,
}

impl AlertState {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "open" => Some(AlertState::Open),
            "acked" => Some(AlertState::Acked),
            _ => None,
        }
    }
}

/// One alert as stored: one per (budget, level, period_start), or for an
/// alert without a budget (an anomaly) one per id.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub id: String,
    pub level: Level,
    pub kind: Kind,
    /// `None` for an alert about no budget (an anomaly).
    pub budget_id: Option<String>,
    pub scope: Scope,
    /// The tier's fraction of the amount.
    pub threshold: f64,
    pub spend_usd: f64,
    pub amount_usd: f64,
    pub forecast_usd: f64,
    pub period_start: i64,
    pub at: i64,
    pub acked_at: Option<i64>,
    pub acked_by: Option<String>,
    pub escalated_at: Option<i64>,
    /// An anomaly's z-score.
    pub z_score: Option<f64>,
}

/// How long a Warning may stay unacknowledged before it escalates.
pub const ESCALATE_AFTER_MS: i64 = DAY_MS;

impl Alert {
    pub fn state(&self) -> AlertState {
        if self.acked_at.is_some() {
            AlertState::Acked
        } else {
            AlertState::Open
        }
    }

    /// A Warning not acknowledged within 24 h, not yet escalated.
    pub fn escalation_due(&self, now_ms: i64) -> bool {
        self.level == Level::Warning
            && self.acked_at.is_none()
            && self.escalated_at.is_none()
            && now_ms - self.at >= ESCALATE_AFTER_MS
    }

    /// The API and webhook view (CONTRACTS §10).
    pub fn view(&self) -> AlertView {
        AlertView {
            id: self.id.clone(),
            level: self.level,
            kind: self.kind,
            budget_id: self.budget_id.clone(),
            scope: self.scope.clone(),
            threshold: self.threshold,
            spend_usd: self.spend_usd,
            amount_usd: self.amount_usd,
            forecast_usd: self.forecast_usd,
            period_start: format_rfc3339_ms(self.period_start),
            at: format_rfc3339_ms(self.at),
            state: self.state(),
            acked_by: self.acked_by.clone(),
            acked_at: self.acked_at.map(format_rfc3339_ms),
            z_score: self.z_score,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertView {
    pub id: String,
    pub level: Level,
    pub kind: Kind,
    /// `null` for an anomaly (it is about a team and model, not a budget).
    pub budget_id: Option<String>,
    pub scope: Scope,
    pub threshold: f64,
    pub spend_usd: f64,
    pub amount_usd: f64,
    pub forecast_usd: f64,
    pub period_start: String,
    pub at: String,
    pub state: AlertState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acked_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acked_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub z_score: Option<f64>,
}

/// The alert id: derived from (budget, level, period start), so every
/// replica computes the same id for the same alert.
pub fn alert_id(budget_id: &str, level: Level, period_start: i64) -> String {
    let digest = Sha256::digest(format!("{budget_id}\n{}\n{period_start}", level.as_str()));
    format!("alt_{}", hex(digest.get(..12).unwrap_or_default()))
}

/// The event id of an alert's escalation (its own, stable across retries).
pub fn escalation_event_id(alert_id: &str) -> String {
    format!("{alert_id}.escalation")
}

/// What one budget's numbers now say.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub spend_usd: f64,
    pub forecast_usd: f64,
    /// Spend of the previous period up to the same point.
    pub previous_usd: f64,
    pub period_start: i64,
}

/// The alerts a budget's reading raises now (against the budget's own
/// tiers), lowest level first, one per level: Critical fires on its tier, on a forecast over the amount or on a
/// spike (the first reason found is recorded).
pub fn evaluate(
    budget: &Budget,
    reading: &Reading,
    min_previous_usd: f64,
    now_ms: i64,
) -> Vec<Alert> {
    let tiers = &budget.alerts;
    let crossed = tiers.crossed(budget.amount_usd, reading.spend_usd);
    Level::ALL
        .into_iter()
        .filter_map(|level| {
            let kind = if crossed.contains(&level) {
                Kind::Threshold
            } else if level == Level::Critical && reading.forecast_usd > budget.amount_usd {
                Kind::Forecast
            } else if level == Level::Critical
                && is_spike(reading.spend_usd, reading.previous_usd, min_previous_usd)
            {
                Kind::Spike
            } else {
                return None;
            };
            Some(Alert {
                id: alert_id(&budget.id, level, reading.period_start),
                level,
                kind,
                budget_id: Some(budget.id.clone()),
                scope: budget.scope.clone(),
                threshold: tiers.fraction(level),
                spend_usd: round_usd(reading.spend_usd),
                amount_usd: budget.amount_usd,
                forecast_usd: reading.forecast_usd,
                period_start: reading.period_start,
                at: now_ms,
                acked_at: None,
                acked_by: None,
                escalated_at: None,
                z_score: None,
            })
        })
        .collect()
}

/// Floating sums carry noise in the last bits; 1e-10 USD is far below a
/// token's price.
pub fn round_usd(x: f64) -> f64 {
    (x * 1e10).round() / 1e10
}
