//! Alerts (CONTRACTS §10): evaluation of every budget (on a timer and,
//! debounced, after ingest), escalation of unacknowledged Warnings, the
//! alert list and its acknowledgement, and the forecast.
//!
//! Several replicas on one PostgreSQL database may all evaluate: the store
//! keeps one alert per (budget, level, period) and enqueues its deliveries
//! in the transaction that inserted it, so each alert exists — and is
//! enqueued — once, whichever replica wins (evaluation is idempotent in the
//! database; no leader election).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Map, Value};
use tokio::sync::Notify;

use crate::domain::access::budget_in_scope;
use crate::domain::alerts::{
    self, escalation_event_id, forecast_window, previous_same_point, round_usd, Alert, AlertState,
    AlertView, Level, Reading,
};
use crate::domain::budgets::{Budget, Period, Scope};
use crate::domain::time::{ceil_hour, format_rfc3339_ms, parse_rfc3339_ms, DAY_MS};
use crate::domain::usage_query::{Dim, UsageQuery};
use crate::domain::webhooks::AllowedHosts;
use crate::error::AppError;
use crate::service::access::RequestContext;
use crate::service::audit;
use crate::service::webhook_client::{WebhookCa, WebhookClient};
use crate::state::AppState;
use crate::store::{Store, StoreError};

/// How often every budget is evaluated without ingest [ms].
pub const DEFAULT_INTERVAL_MS: u64 = 60_000;
/// The spike rule needs the previous period's spend to be at least this.
pub const DEFAULT_SPIKE_MIN_USD: f64 = 10.0;
/// An anomaly needs the day's spend of its (team, model) to be at least this.
pub const DEFAULT_ANOMALY_MIN_USD: f64 = 10.0;
/// A webhook receiver must answer within this [ms].
pub const DEFAULT_WEBHOOK_TIMEOUT_MS: u64 = 5_000;
/// Ingests within this of each other trigger one evaluation.
const DEBOUNCE: Duration = Duration::from_millis(250);

/// The alert and webhook settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSettings {
    pub interval_ms: u64,
    pub spike_min_usd: f64,
    pub anomaly_min_usd: f64,
    /// Extra CAs trusted for https webhook targets.
    pub webhook_ca: Option<WebhookCa>,
    pub allowed_hosts: AllowedHosts,
    pub webhook_timeout_ms: u64,
    /// `coverage.low` fires when a month's gateway cost is under this share
    /// of the provider's bill (`AISPEND_COVERAGE_MIN`, SPEC §13).
    pub coverage_min: f64,
}

/// The default of `coverage_min` (SPEC §13).
pub const DEFAULT_COVERAGE_MIN: f64 = 0.95;

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            interval_ms: DEFAULT_INTERVAL_MS,
            spike_min_usd: DEFAULT_SPIKE_MIN_USD,
            anomaly_min_usd: DEFAULT_ANOMALY_MIN_USD,
            webhook_ca: None,
            allowed_hosts: AllowedHosts::default(),
            webhook_timeout_ms: DEFAULT_WEBHOOK_TIMEOUT_MS,
            coverage_min: DEFAULT_COVERAGE_MIN,
        }
    }
}

/// Shared alert state: settings, the ingest kick, the counters.
#[derive(Default)]
pub struct Alerts {
    pub settings: AlertSettings,
    kick: Notify,
    /// Deliveries worth trying now (an alert was stored).
    pub(crate) deliver: Notify,
    /// Alerts this process stored, by level (`Level::ALL` order).
    fired: [AtomicU64; 4],
    pub(crate) delivery_failures: AtomicU64,
    pub(crate) deliveries_ok: AtomicU64,
    /// The outbox depth at the last delivery pass.
    pub(crate) depth: AtomicI64,
    /// Sends the deliveries (http and https).
    pub(crate) client: WebhookClient,
    /// The settled days of the anomaly history.
    pub history: AnomalyHistory,
}

impl Alerts {
    pub fn new(settings: AlertSettings) -> Self {
        Self {
            client: WebhookClient::new(settings.webhook_ca.as_ref()),
            settings,
            ..Self::default()
        }
    }

    /// The problem with the https client's setup (an unusable CA), if any.
    pub fn tls_problem(&self) -> Option<&str> {
        self.client.tls_problem()
    }

    /// Called after an ingest: the evaluation loop runs soon (debounced);
    /// the ingest itself never waits for it.
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    fn count(&self, level: Level) {
        if let Some(c) = Level::ALL
            .iter()
            .position(|l| *l == level)
            .and_then(|i| self.fired.get(i))
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The Prometheus lines of alerts and deliveries.
    pub fn render_metrics(&self) -> String {
        let mut out = String::from(
            "# HELP aispend_alerts_total Alerts stored by this collector, by level.\n\
             # TYPE aispend_alerts_total counter\n",
        );
        for (level, c) in Level::ALL.iter().zip(&self.fired) {
            out.push_str(&format!(
                "aispend_alerts_total{{level=\"{}\"}} {}\n",
                level.as_str(),
                c.load(Ordering::Relaxed)
            ));
        }
        out.push_str(&format!(
            "# HELP aispend_webhook_outbox_depth Webhook deliveries pending (at the last delivery pass).\n\
             # TYPE aispend_webhook_outbox_depth gauge\n\
             aispend_webhook_outbox_depth {}\n\
             # HELP aispend_webhook_delivery_failures_total Webhook delivery attempts that failed.\n\
             # TYPE aispend_webhook_delivery_failures_total counter\n\
             aispend_webhook_delivery_failures_total {}\n\
             # HELP aispend_webhook_deliveries_total Webhook deliveries acknowledged by a 2xx.\n\
             # TYPE aispend_webhook_deliveries_total counter\n\
             aispend_webhook_deliveries_total {}\n",
            self.depth.load(Ordering::Relaxed),
            self.delivery_failures.load(Ordering::Relaxed),
            self.deliveries_ok.load(Ordering::Relaxed),
        ));
        out
    }
}

/// Spend, forecast and previous-period spend of each budget now, in order.
/// Three spend queries per period kind, whatever the number of budgets.
pub async fn readings(
    store: &dyn Store,
    budgets: &[Budget],
    now: i64,
) -> Result<Vec<Reading>, StoreError> {
    let mut out = vec![
        Reading {
            spend_usd: 0.0,
            forecast_usd: 0.0,
            previous_usd: 0.0,
            period_start: 0,
        };
        budgets.len()
    ];
    for period in [Period::Day, Period::Month] {
        let indices: Vec<usize> = (0..budgets.len())
            .filter(|&i| budgets.get(i).is_some_and(|b| b.period == period))
            .collect();
        if indices.is_empty() {
            continue;
        }
        let scopes: Vec<Scope> = indices
            .iter()
            .filter_map(|&i| budgets.get(i).map(|b| b.scope.clone()))
            .collect();
        let (start, end) = period.bounds(now);
        let window = forecast_window(period, now);
        let (prev_from, prev_to) = previous_same_point(period, now);
        let spend = store.spend_usd(scopes.clone(), start, end).await?;
        let burn = store
            .spend_usd(scopes.clone(), window.from_ms, window.to_ms)
            .await?;
        let previous = store.spend_usd(scopes, prev_from, prev_to).await?;
        for (k, &i) in indices.iter().enumerate() {
            let at = |v: &Vec<f64>| v.get(k).copied().unwrap_or(0.0);
            if let Some(slot) = out.get_mut(i) {
                *slot = Reading {
                    spend_usd: round_usd(at(&spend)),
                    forecast_usd: alerts::forecast_usd(at(&spend), at(&burn), &window),
                    previous_usd: round_usd(at(&previous)),
                    period_start: start,
                };
            }
        }
    }
    Ok(out)
}

/// Spend per (team, model) per UTC day; index 0 is the first day asked.
type DailySpend = BTreeMap<(Option<String>, Option<String>), Vec<f64>>;

/// The settled part of the anomaly history (the 30 days before yesterday):
/// `(when it was read, spend)`. Read again on a new UTC day, after an hour
/// (records backfilled through another replica), and at once when this
/// collector ingests a record older than yesterday (`records_before`).
#[derive(Default)]
pub struct AnomalyHistory(std::sync::Mutex<Option<(i64, DailySpend)>>);

/// How long the settled anomaly history is reused at most [ms].
const HISTORY_TTL_MS: i64 = 3_600_000;

impl AnomalyHistory {
    fn get(&self, now: i64) -> Option<DailySpend> {
        let today = now.div_euclid(DAY_MS) * DAY_MS;
        let cache = self.0.lock().ok()?;
        let (read_at, spend) = cache.as_ref()?;
        (*read_at >= today && now - *read_at < HISTORY_TTL_MS).then(|| spend.clone())
    }

    fn put(&self, now: i64, spend: DailySpend) {
        if let Ok(mut cache) = self.0.lock() {
            *cache = Some((now, spend));
        }
    }

    /// A record at `ts_ms` was stored: the history is read again when it
    /// may count it (older than yesterday).
    pub fn records_before(&self, ts_ms: i64) {
        if let Ok(mut cache) = self.0.lock() {
            let settled_end = cache.as_ref().map_or(i64::MIN, |(read_at, _)| {
                read_at.div_euclid(DAY_MS) * DAY_MS - DAY_MS
            });
            if ts_ms < settled_end {
                *cache = None;
            }
        }
    }
}

/// Days of spend an anomaly pass looks at: 30 of history before yesterday,
/// yesterday and today.
const SPAN_DAYS: usize = alerts::ANOMALY_HISTORY_DAYS + 2;

/// Adds the spend of `[from, to)` per (team, model, day) into `into`, day
/// slots counted from `first` (one usage query on the rollups).
async fn add_daily_spend(
    store: &dyn Store,
    from: i64,
    to: i64,
    first: i64,
    into: &mut DailySpend,
) -> Result<(), StoreError> {
    let report = store
        .usage(UsageQuery {
            from_ms: from,
            to_ms: to.max(from + 1),
            group_by: vec![Dim::Tag("team".into()), Dim::Model, Dim::Day],
            filters: Vec::new(),
            required_tags: Vec::new(),
        })
        .await?;
    for row in &report.rows {
        let (Some(team), Some(model), Some(Some(day))) =
            (row.dims.first(), row.dims.get(1), row.dims.get(2))
        else {
            continue;
        };
        let Some(day_ms) = parse_rfc3339_ms(&format!("{day}T00:00:00Z")) else {
            continue;
        };
        let slot = usize::try_from((day_ms - first).div_euclid(DAY_MS)).ok();
        let days = into
            .entry((team.clone(), model.clone()))
            .or_insert_with(|| vec![0.0; SPAN_DAYS]);
        if let Some(v) = slot.and_then(|i| days.get_mut(i)) {
            *v += row.sums.cost_usd;
        }
    }
    Ok(())
}

/// The anomaly alerts due now, for today (spend so far) and yesterday (a
/// late record can still change it): each (team, model)'s day against its
/// previous 30 days (0 for a day without spend). Read from the rollups: the
/// 30 settled days about once an hour (kept in `history`), yesterday and
/// today at every pass — two days of rows, whatever the history holds.
pub async fn anomalies(
    store: &dyn Store,
    history: &AnomalyHistory,
    min_usd: f64,
    now: i64,
) -> Result<Vec<Alert>, StoreError> {
    const HISTORY: usize = alerts::ANOMALY_HISTORY_DAYS;
    let today = now.div_euclid(DAY_MS) * DAY_MS;
    let yesterday = today - DAY_MS;
    let first = yesterday - HISTORY as i64 * DAY_MS;
    let mut series = match history.get(now) {
        Some(settled) => settled,
        None => {
            let mut settled = DailySpend::new();
            add_daily_spend(store, first, yesterday, first, &mut settled).await?;
            history.put(now, settled.clone());
            settled
        }
    };
    // To the end of the current hour: the hourly rollups alone (a range
    // ending at `now` would scan this hour's raw records on every pass).
    add_daily_spend(store, yesterday, ceil_hour(now), first, &mut series).await?;
    let mut out = Vec::new();
    for ((team, model), days) in &series {
        let mut scope = Scope::new();
        if let Some(team) = team {
            scope.insert("team".into(), team.clone());
        }
        if let Some(model) = model {
            scope.insert("model".into(), model.clone());
        }
        // Slot HISTORY = yesterday, HISTORY + 1 = today.
        for (i, day_start) in [(HISTORY, yesterday), (HISTORY + 1, today)] {
            let (Some(past), Some(&spend)) = (days.get(i - HISTORY..i), days.get(i)) else {
                continue;
            };
            if let Some(alert) = alerts::anomaly(&scope, day_start, past, spend, min_usd, now) {
                out.push(alert);
            }
        }
    }
    Ok(out)
}

/// Stores an alert of any kind (once: `Ok(false)` when it exists already)
/// and enqueues its `spend.alert` event for every webhook, in one store
/// transaction; counts it and wakes the delivery worker. Every alert goes
/// through here (budget tiers, anomalies, and any later kind).
pub async fn raise(state: &AppState, alert: Alert) -> Result<bool, StoreError> {
    let event = event_of(&alert, &alert.id, false).to_string();
    let (level, kind, id) = (alert.level, alert.kind, alert.id.clone());
    let stored = state.store.insert_alert(alert, event).await?;
    if stored {
        state.alerts.count(level);
        state.alerts.deliver.notify_one();
        tracing::info!(alert = %id, level = level.as_str(), kind = kind.as_str(), "alert");
    }
    Ok(stored)
}

/// The webhook event of an alert (CONTRACTS §10): the alert's fields,
/// `event`, `id` (the event id, stable across retries) and `alert_id`.
pub fn event_of(alert: &Alert, event_id: &str, escalation: bool) -> Value {
    let mut obj = match serde_json::to_value(alert.view()) {
        Ok(Value::Object(obj)) => obj,
        _ => Map::new(),
    };
    obj.insert("event".into(), json!("spend.alert"));
    obj.insert("id".into(), json!(event_id));
    obj.insert("alert_id".into(), json!(alert.id));
    obj.insert("escalation".into(), json!(escalation));
    Value::Object(obj)
}

/// One evaluation pass over every budget, the anomalies of today and
/// yesterday, then the escalations due.
/// Returns how many alerts and escalations this pass stored.
pub async fn evaluate(state: &AppState) -> Result<usize, StoreError> {
    let now = state.now();
    let budgets = state.store.list_budgets().await?;
    let readings = readings(&*state.store, &budgets, now).await?;
    let mut stored = 0;
    for (budget, reading) in budgets.iter().zip(&readings) {
        let raised = alerts::evaluate(budget, reading, state.alerts.settings.spike_min_usd, now);
        for alert in raised {
            if raise(state, alert).await? {
                stored += 1;
            }
        }
    }
    let min_usd = state.alerts.settings.anomaly_min_usd;
    for alert in anomalies(&*state.store, &state.alerts.history, min_usd, now).await? {
        if raise(state, alert).await? {
            stored += 1;
        }
    }
    for alert in state.store.list_alerts().await? {
        if !alert.escalation_due(now) {
            continue;
        }
        let event_id = escalation_event_id(&alert.id);
        let event = event_of(&alert, &event_id, true).to_string();
        if state
            .store
            .escalate_alert(alert.id.clone(), event_id, event, now)
            .await?
        {
            stored += 1;
            tracing::info!(alert = %alert.id, "warning not acknowledged within 24 h: escalated");
        }
    }
    if stored > 0 {
        state.alerts.deliver.notify_one();
    }
    Ok(stored)
}

/// Evaluates every `interval_ms`, and soon after an ingest (debounced).
pub async fn evaluation_loop(state: AppState) {
    let interval = Duration::from_millis(state.alerts.settings.interval_ms.max(100));
    loop {
        if let Err(e) = evaluate(&state).await {
            state.count_store_error(&e);
            tracing::warn!(error = %e, "alert evaluation failed; retrying at the next tick");
        }
        tokio::select! {
            () = state.alerts.kick.notified() => tokio::time::sleep(DEBOUNCE).await,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

#[derive(Debug, Serialize)]
pub struct AlertList {
    pub alerts: Vec<AlertView>,
}

/// `GET /v1/alerts?state=&level=&budget_id=`; a scoped viewer sees only
/// alerts of budgets inside its scope.
pub async fn list(
    state: &AppState,
    ctx: &RequestContext,
    raw_query: Option<&str>,
) -> Result<AlertList, AppError> {
    let (mut want_state, mut want_level, mut want_budget) = (None, None, None);
    for (key, value) in form_urlencoded::parse(raw_query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "state" => {
                want_state = Some(AlertState::parse(&value).ok_or_else(|| {
                    AppError::BadRequest(format!("state must be open or acked, not {value:?}"))
                })?)
            }
            "level" => {
                want_level = Some(Level::parse(&value).ok_or_else(|| {
                    AppError::BadRequest(format!(
                        "level must be info, warning, critical or hard, not {value:?}"
                    ))
                })?)
            }
            "budget_id" => want_budget = Some(value.into_owned()),
            other => {
                return Err(AppError::BadRequest(format!(
                    "unknown parameter {other:?}: GET /v1/alerts takes state, level, budget_id"
                )))
            }
        }
    }
    let alerts = state
        .store
        .list_alerts()
        .await
        .inspect_err(|e| state.count_store_error(e))?;
    let alerts = alerts
        .iter()
        .filter(|a| want_state.is_none_or(|s| a.state() == s))
        .filter(|a| want_level.is_none_or(|l| a.level == l))
        .filter(|a| {
            want_budget
                .as_ref()
                .is_none_or(|b| a.budget_id.as_ref() == Some(b))
        })
        .filter(|a| {
            ctx.principal
                .scope
                .as_ref()
                .is_none_or(|scope| budget_in_scope(scope, &a.scope))
        })
        .map(Alert::view)
        .collect();
    Ok(AlertList { alerts })
}

/// `POST /v1/alerts/{id}/ack`: 404 for an unknown id, 409 when it is
/// acknowledged already.
pub async fn ack(state: &AppState, ctx: &RequestContext, id: &str) -> Result<AlertView, AppError> {
    let not_found = || AppError::NotFound(format!("no alert with id {id:?}"));
    let before = state
        .store
        .get_alert(id.to_owned())
        .await
        .inspect_err(|e| state.count_store_error(e))?
        .ok_or_else(not_found)?;
    let changed = state
        .store
        .ack_alert(id.to_owned(), ctx.principal.actor.clone(), state.now())
        .await
        .inspect_err(|e| state.count_store_error(e))?;
    if !changed {
        return Err(AppError::Conflict(format!(
            "alert {id:?} is acknowledged already"
        )));
    }
    let after = state
        .store
        .get_alert(id.to_owned())
        .await
        .inspect_err(|e| state.count_store_error(e))?
        .ok_or_else(not_found)?;
    audit::record(
        state,
        ctx,
        "alert.ack",
        &format!("alert:{id}"),
        serde_json::to_value(before.view()).ok(),
        serde_json::to_value(after.view()).ok(),
    )
    .await?;
    Ok(after.view())
}

/// `GET /v1/forecast?group_by=…`: per group, this month's spend so far and
/// its forecast (spend + mean daily spend of the last 14 days × days left).
/// Narrowed to a scoped viewer's scope like `GET /v1/usage`.
pub async fn forecast(
    state: &AppState,
    ctx: &RequestContext,
    raw_query: Option<&str>,
) -> Result<Value, AppError> {
    let mut group_by = None;
    for (key, value) in form_urlencoded::parse(raw_query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "group_by" => group_by = Some(value.into_owned()),
            other => {
                return Err(AppError::BadRequest(format!(
                    "unknown parameter {other:?}: GET /v1/forecast takes group_by"
                )))
            }
        }
    }
    let now = state.now();
    let (start, end) = Period::Month.bounds(now);
    let window = forecast_window(Period::Month, now);
    let query = |from: i64| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if let Some(g) = &group_by {
            q.append_pair("group_by", g);
        }
        q.append_pair("from", &format_rfc3339_ms(from));
        // Whole hours, the current one included: read from the rollups.
        q.append_pair("to", &format_rfc3339_ms(ceil_hour(now).max(from + 1)));
        q.finish()
    };
    let so_far = crate::service::usage::report(state, ctx, Some(&query(start))).await?;
    let recent = crate::service::usage::report(state, ctx, Some(&query(window.from_ms))).await?;
    let mut rows: Vec<(Vec<Option<String>>, f64, f64)> = so_far
        .rows
        .iter()
        .map(|r| (r.dims.clone(), r.sums.cost_usd, 0.0))
        .collect();
    for r in &recent.rows {
        match rows.iter_mut().find(|(d, _, _)| *d == r.dims) {
            Some(row) => row.2 = r.sums.cost_usd,
            None => rows.push((r.dims.clone(), 0.0, r.sums.cost_usd)),
        }
    }
    let names: Vec<String> = so_far.group_by.iter().map(|n| n.to_string()).collect();
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|(dims, spend, burn)| {
            let mut obj = Map::new();
            for (name, value) in names.iter().zip(dims) {
                obj.insert(name.clone(), json!(value));
            }
            obj.insert("spend_usd".into(), json!(round_usd(spend)));
            obj.insert(
                "forecast_usd".into(),
                json!(alerts::forecast_usd(spend, burn, &window)),
            );
            Value::Object(obj)
        })
        .collect();
    Ok(json!({
        "group_by": names,
        "period": "month",
        "period_start": format_rfc3339_ms(start),
        "period_end": format_rfc3339_ms(end),
        "days_left": (window.units_left * 1000.0).round() / 1000.0,
        "rows": rows,
    }))
}
