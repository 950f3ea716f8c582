//! Alerts (CONTRACTS §10): budget tiers, the forecast, the spike rule, the
//! anomaly z-score, and the alerts they raise. Plain logic with time passed
//! in; `service::alerts` reads spend from the store and calls these.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::access::hex;
use super::budgets::{Budget, Period, Scope};
use super::time::{format_rfc3339_ms, DAY_MS, HOUR_MS};

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
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Threshold => "threshold",
            Kind::Forecast => "forecast",
            Kind::Spike => "spike",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Kind::Threshold, Kind::Forecast, Kind::Spike]
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

/// The tiers of a budget as fractions of its amount (SPEC §10 defaults).
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
/// last 24 hours and hours left.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForecastWindow {
    /// `[from_ms, to_ms)`: where the mean burn is measured (ends at now).
    pub from_ms: i64,
    pub to_ms: i64,
    /// Length of the window in units (14 days or 24 hours).
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
    ForecastWindow {
        from_ms: now_ms - units * unit,
        to_ms: now_ms,
        units: units as f64,
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
/// (for a month: the same offset into the previous month, capped at its end).
pub fn previous_same_point(period: Period, now_ms: i64) -> (i64, i64) {
    let (start, _) = period.bounds(now_ms);
    let (prev_start, prev_end) = period.bounds(start - 1);
    (prev_start, (prev_start + (now_ms - start)).min(prev_end))
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

/// A day's spend per (team, model) is an anomaly when its z-score against
/// the previous 30 days is > 3 and it is at least `min_usd`.
pub fn is_anomaly(history: &[f64], today: f64, min_usd: f64) -> bool {
    today >= min_usd && z_score(history, today).is_some_and(|z| z > 3.0)
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

/// One alert as stored: one per (budget, level, period_start).
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub id: String,
    pub level: Level,
    pub kind: Kind,
    pub budget_id: String,
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
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertView {
    pub id: String,
    pub level: Level,
    pub kind: Kind,
    pub budget_id: String,
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

/// The alerts a budget's reading raises now, lowest level first, one per
/// level: Critical fires on its tier, on a forecast over the amount or on a
/// spike (the first reason found is recorded).
pub fn evaluate(
    budget: &Budget,
    tiers: &Tiers,
    reading: &Reading,
    min_previous_usd: f64,
    now_ms: i64,
) -> Vec<Alert> {
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
                budget_id: budget.id.clone(),
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
            })
        })
        .collect()
}

/// Floating sums carry noise in the last bits; 1e-10 USD is far below a
/// token's price.
pub fn round_usd(x: f64) -> f64 {
    (x * 1e10).round() / 1e10
}
