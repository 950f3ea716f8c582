//! FinOps (SPEC §11): tag coverage, GL accounts, the chargeback and FOCUS
//! exports, closing a month, showback. Every amount comes from `usage`
//! queries (the rollups), never from a scan of records — except the
//! optional label level of showback, which only raw records know.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::Value;

use crate::domain::aggregate::UsageReport;
use crate::domain::finops::chargeback::{
    self, adjustments, is_gl_account, sums_by_key, usage_lines, ChargebackLine, ClosedMonth,
    GlAccount,
};
use crate::domain::finops::coverage::{self as cov, TagCoverage, UnattributedLine};
use crate::domain::finops::focus::{self, Context, Layout};
use crate::domain::finops::period::Period;
use crate::domain::finops::showback::{self, Showback, TeamBudget};
use crate::domain::time::{ceil_hour, format_rfc3339_ms, now_ms};
use crate::domain::usage_query::{Dim, Format, UsageQuery};
use crate::domain::validate::is_tag_value;
use crate::error::AppError;
use crate::service::access::RequestContext;
use crate::service::audit;
use crate::service::budgets::views_of;
use crate::state::AppState;

/// The query parameters of a FinOps endpoint, checked: only `allowed` names,
/// each at most once (also the prices and reconciliation endpoints').
pub(crate) fn params(
    raw: Option<&str>,
    allowed: &[&str],
) -> Result<HashMap<String, String>, AppError> {
    let mut out = HashMap::new();
    for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if !allowed.contains(&key.as_ref()) {
            return Err(AppError::InvalidParameter(format!(
                "unknown query parameter {key:?}: use {}",
                allowed.join(", ")
            )));
        }
        if out.insert(key.to_string(), value.to_string()).is_some() {
            return Err(AppError::BadRequest(format!("{key}: given twice")));
        }
    }
    Ok(out)
}

/// `month=YYYY-MM`, required.
fn month_param(p: &HashMap<String, String>) -> Result<Period, AppError> {
    match p.get("month") {
        Some(v) => Period::parse_month("month", v).map_err(AppError::BadRequest),
        None => Err(AppError::BadRequest(String::from(
            "month: required (a month YYYY-MM, e.g. 2026-11)",
        ))),
    }
}

/// One `usage` query over `[from, to)` grouped by `group_by`, with coverage.
async fn usage(
    state: &AppState,
    (from_ms, to_ms): (i64, i64),
    group_by: Vec<Dim>,
    filters: Vec<(Dim, String)>,
) -> Result<UsageReport, AppError> {
    let query = UsageQuery {
        from_ms,
        to_ms,
        group_by,
        filters,
        required_tags: state.required_tags.to_vec(),
    };
    state
        .store
        .usage(query)
        .await
        .inspect_err(|e| state.count_store_error(e))
        .map_err(AppError::from)
}

fn store_err(state: &AppState) -> impl Fn(crate::store::StoreError) -> AppError + '_ {
    move |e| {
        state.count_store_error(&e);
        AppError::from(e)
    }
}

// ---- Coverage ------------------------------------------------------------

fn required_dims(state: &AppState) -> Vec<Dim> {
    state
        .required_tags
        .iter()
        .map(|t| Dim::Tag(t.clone()))
        .collect()
}

/// This UTC month through the end of the current hour: whole hours, read
/// from the rollups alone (a range ending at now would scan the current
/// hour's raw records on every scrape).
fn month_so_far() -> (i64, i64) {
    let now = now_ms();
    let (from, _) = Period::month_of(now).range_ms();
    (from, ceil_hour(now).max(from + 1))
}

/// The coverage gauges for this UTC month so far (`GET /metrics`); empty
/// when the store does not answer (the failure is counted).
pub async fn coverage_metrics(state: &AppState) -> String {
    let (from, to) = month_so_far();
    match usage(state, (from, to), required_dims(state), Vec::new()).await {
        Ok(report) => TagCoverage::of_report(&state.required_tags, &report).render_metrics(),
        Err(e) => {
            tracing::warn!(error = ?e, "coverage metrics: the store did not answer");
            String::new()
        }
    }
}

/// This month's spend by team and model for `/metrics` (bounded series,
/// `domain::finops::spend`); empty when the store does not answer.
pub async fn spend_metrics(state: &AppState) -> String {
    let (from, to) = month_so_far();
    match usage(
        state,
        (from, to),
        vec![Dim::Tag("team".into()), Dim::Model],
        Vec::new(),
    )
    .await
    {
        Ok(report) => crate::domain::finops::spend::render(
            &report,
            crate::domain::finops::spend::MAX_SPEND_SERIES,
        ),
        Err(e) => {
            tracing::warn!(error = ?e, "spend metrics: the store did not answer");
            String::new()
        }
    }
}

/// `GET /v1/reports/unattributed?month=`.
#[derive(Debug, Serialize)]
pub struct Unattributed {
    pub month: String,
    pub required_tags: Vec<String>,
    #[serde(serialize_with = "cov::usd")]
    pub cost_usd: f64,
    #[serde(serialize_with = "cov::usd")]
    pub unattributed_cost_usd: f64,
    #[serde(serialize_with = "ratio")]
    pub coverage: Option<f64>,
    /// Who produces records missing required tags: one line per key and
    /// set of missing tags, highest cost first.
    pub keys: Vec<UnattributedLine>,
}

fn ratio<S: serde::Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    crate::domain::aggregate::Ratio(*v).serialize(s)
}

pub async fn unattributed(
    state: &AppState,
    ctx: &RequestContext,
    raw: Option<&str>,
) -> Result<Unattributed, AppError> {
    whole_fleet_only(ctx, "/v1/reports/unattributed")?;
    let p = params(raw, &["month"])?;
    let period = match p.get("month") {
        Some(v) => Period::parse_month("month", v).map_err(AppError::BadRequest)?,
        None => Period::month_of(now_ms()),
    };
    let mut group_by = vec![Dim::KeyId];
    group_by.extend(required_dims(state));
    let report = usage(state, period.range_ms(), group_by, Vec::new()).await?;
    let keys = cov::unattributed(&state.required_tags, &report);
    Ok(Unattributed {
        month: period.to_string(),
        required_tags: state.required_tags.to_vec(),
        cost_usd: report.totals.cost_usd,
        unattributed_cost_usd: report.totals.cost_usd - report.covered_usd,
        coverage: crate::domain::aggregate::coverage(report.covered_usd, report.totals.cost_usd),
        keys,
    })
}

/// Reports over every team are not narrowed to a scoped viewer's scope:
/// such a token is refused (403 `out_of_scope`) rather than shown other
/// teams, and reads its own scope from `/v1/usage`. The routes calling it
/// are `domain::access::WHOLE_FLEET_ROUTES` (what `/v1/whoami` leaves out).
fn whole_fleet_only(ctx: &RequestContext, what: &str) -> Result<(), AppError> {
    match &ctx.principal.scope {
        None => Ok(()),
        Some(_) => Err(AppError::OutOfScope(format!(
            "{what} covers every team; a token scoped to some tags reads its scope from \
             /v1/usage"
        ))),
    }
}

/// A value for the audit log.
fn audit_value<T: Serialize>(value: &T) -> Option<Value> {
    serde_json::to_value(value).ok()
}

// ---- GL accounts ---------------------------------------------------------

#[derive(Debug, Serialize)]
pub struct GlAccountView {
    pub cost_center: String,
    pub gl_account: String,
    pub updated_at: String,
}

impl From<GlAccount> for GlAccountView {
    fn from(a: GlAccount) -> Self {
        Self {
            updated_at: format_rfc3339_ms(a.updated_ms),
            cost_center: a.cost_center,
            gl_account: a.gl_account,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct GlAccountList {
    pub gl_accounts: Vec<GlAccountView>,
}

/// `PUT /v1/gl-accounts/{cost_center}` `{"gl_account": …}`; `true`: created.
pub async fn put_gl_account(
    state: &AppState,
    ctx: &RequestContext,
    cost_center: &str,
    body: &Value,
) -> Result<(bool, GlAccountView), AppError> {
    if !is_tag_value(cost_center) || cost_center == chargeback::UNALLOCATED {
        return Err(AppError::BadRequest(format!(
            "cost_center: {cost_center:?} is not a cost center tag value"
        )));
    }
    let Some(object) = body.as_object() else {
        return Err(AppError::BadRequest(String::from(
            "body: expected a JSON object {\"gl_account\": \"…\"}",
        )));
    };
    if let Some(other) = object.keys().find(|k| *k != "gl_account") {
        return Err(AppError::BadRequest(format!(
            "{other}: unknown field (only gl_account)"
        )));
    }
    let gl_account = match object.get("gl_account") {
        Some(Value::String(s)) if is_gl_account(s) => s.clone(),
        Some(_) => {
            return Err(AppError::BadRequest(String::from(
                "gl_account: 1 to 64 printable characters, no comma or quote, no leading or \
                 trailing space, not UNMAPPED",
            )))
        }
        None => return Err(AppError::BadRequest(String::from("gl_account: required"))),
    };
    let account = GlAccount {
        cost_center: cost_center.to_owned(),
        gl_account,
        updated_ms: state.now(),
    };
    let before = state
        .store
        .gl_accounts()
        .await
        .map_err(store_err(state))?
        .into_iter()
        .find(|a| a.cost_center == cost_center)
        .map(GlAccountView::from);
    let created = state
        .store
        .put_gl_account(account.clone())
        .await
        .map_err(store_err(state))?;
    let view = GlAccountView::from(account);
    audit::record(
        state,
        ctx,
        "gl_account.put",
        cost_center,
        before.as_ref().and_then(audit_value),
        audit_value(&view),
    )
    .await?;
    Ok((created, view))
}

pub async fn gl_accounts(state: &AppState) -> Result<GlAccountList, AppError> {
    let accounts = state.store.gl_accounts().await.map_err(store_err(state))?;
    Ok(GlAccountList {
        gl_accounts: accounts.into_iter().map(GlAccountView::from).collect(),
    })
}

async fn account_map(state: &AppState) -> Result<HashMap<String, String>, AppError> {
    let accounts = state.store.gl_accounts().await.map_err(store_err(state))?;
    Ok(accounts
        .into_iter()
        .map(|a| (a.cost_center, a.gl_account))
        .collect())
}

// ---- Chargeback and closing ----------------------------------------------

fn chargeback_dims() -> Vec<Dim> {
    vec![
        Dim::Tag(String::from("cost_center")),
        Dim::Tag(String::from("team")),
        Dim::Tag(String::from("project")),
    ]
}

/// The chargeback lines of `period` (a month): a closed month's booked
/// lines; an open month's usage lines plus the adjustments it carries for
/// the closed months whose next open month it is.
async fn chargeback_lines(
    state: &AppState,
    period: Period,
) -> Result<Vec<ChargebackLine>, AppError> {
    let month = period.to_string();
    let closed = state
        .store
        .closed_months()
        .await
        .map_err(store_err(state))?;
    let is_closed = |m: &str| closed.iter().any(|c| c.month == m);
    let needs_booked = is_closed(&month) || closed.iter().any(|c| c.month < month);
    let booked = if needs_booked {
        state.store.booked_lines().await.map_err(store_err(state))?
    } else {
        Vec::new()
    };
    if is_closed(&month) {
        return Ok(booked.into_iter().filter(|l| l.month == month).collect());
    }
    let accounts = account_map(state).await?;
    let report = usage(state, period.range_ms(), chargeback_dims(), Vec::new()).await?;
    let mut lines = usage_lines(&month, &sums_by_key(&report), &accounts);
    // Closed months before this one with no open month in between.
    let mut earlier: Vec<Period> = Vec::new();
    let mut p = period.previous();
    while is_closed(&p.to_string()) {
        earlier.push(p);
        p = p.previous();
    }
    for c in earlier.into_iter().rev() {
        let c_text = c.to_string();
        let live = usage(state, c.range_ms(), chargeback_dims(), Vec::new()).await?;
        let already: Vec<ChargebackLine> = booked
            .iter()
            .filter(|l| l.adjusts.as_deref().unwrap_or(&l.month) == c_text)
            .cloned()
            .collect();
        lines.extend(adjustments(
            &month,
            &c_text,
            &sums_by_key(&live),
            &already,
            &accounts,
        ));
    }
    Ok(lines)
}

/// A CSV body produced in chunks.
pub type CsvChunks = Box<dyn Iterator<Item = String> + Send>;

/// `GET /v1/export/chargeback?month=`: the header, then the lines.
pub async fn chargeback_csv(state: &AppState, raw: Option<&str>) -> Result<CsvChunks, AppError> {
    let period = month_param(&params(raw, &["month"])?)?;
    let lines = chargeback_lines(state, period).await?;
    let mut header = String::new();
    crate::domain::aggregate::push_csv_line(&mut header, chargeback::HEADER.into_iter());
    let chunks = lines.chunks(512).map(|chunk| {
        let mut out = String::new();
        for line in chunk {
            let fields = line.fields();
            crate::domain::aggregate::push_csv_line(&mut out, fields.iter().map(String::as_str));
        }
        out
    });
    let body: Vec<String> = std::iter::once(header).chain(chunks).collect();
    Ok(Box::new(body.into_iter()))
}

/// `POST /v1/closed-months` `{"month": "YYYY-MM"}`: books the month.
#[derive(Debug, Serialize)]
pub struct ClosedView {
    pub month: String,
    pub closed_at: String,
    /// Lines booked (usage and adjustments).
    pub lines: usize,
    #[serde(serialize_with = "cov::usd")]
    pub cost_usd: f64,
}

pub async fn close_month(
    state: &AppState,
    ctx: &RequestContext,
    body: &Value,
) -> Result<ClosedView, AppError> {
    let month = match body.get("month") {
        Some(Value::String(s)) => Period::parse_month("month", s).map_err(AppError::BadRequest)?,
        _ => {
            return Err(AppError::BadRequest(String::from(
                "month: required, a month YYYY-MM",
            )))
        }
    };
    if let Some(other) = body
        .as_object()
        .and_then(|o| o.keys().find(|k| *k != "month"))
    {
        return Err(AppError::BadRequest(format!(
            "{other}: unknown field (only month)"
        )));
    }
    let now = now_ms();
    if month.range_ms().1 > now {
        return Err(AppError::Conflict(format!(
            "month: {month} has not ended yet; a month can be closed from {}",
            format_rfc3339_ms(month.range_ms().1)
        )));
    }
    let lines = chargeback_lines(state, month).await?;
    let closed = ClosedMonth {
        month: month.to_string(),
        closed_ms: now,
    };
    let cost_usd = lines.iter().map(|l| l.sums.cost_usd).sum();
    let count = lines.len();
    let done = state
        .store
        .close_month(closed, lines)
        .await
        .map_err(store_err(state))?;
    if !done {
        return Err(AppError::Conflict(format!(
            "month: {month} is already closed"
        )));
    }
    let view = ClosedView {
        month: month.to_string(),
        closed_at: format_rfc3339_ms(now),
        lines: count,
        cost_usd,
    };
    audit::record(
        state,
        ctx,
        "month.close",
        &view.month,
        None,
        audit_value(&view),
    )
    .await?;
    Ok(view)
}

#[derive(Debug, Serialize)]
pub struct ClosedList {
    pub closed_months: Vec<ClosedSummary>,
}

#[derive(Debug, Serialize)]
pub struct ClosedSummary {
    pub month: String,
    pub closed_at: String,
}

pub async fn closed_months(state: &AppState) -> Result<ClosedList, AppError> {
    let closed = state
        .store
        .closed_months()
        .await
        .map_err(store_err(state))?;
    Ok(ClosedList {
        closed_months: closed
            .into_iter()
            .map(|c| ClosedSummary {
                closed_at: format_rfc3339_ms(c.closed_ms),
                month: c.month,
            })
            .collect(),
    })
}

// ---- FOCUS ---------------------------------------------------------------

/// Report rows turned into FOCUS lines per chunk.
const FOCUS_CHUNK_ROWS: usize = 256;

/// `GET /v1/export/focus?month=`: the header, then rows produced chunk by
/// chunk while the body is sent.
pub async fn focus_csv(state: &AppState, raw: Option<&str>) -> Result<CsvChunks, AppError> {
    let period = month_param(&params(raw, &["month"])?)?;
    let mut tags = state.store.tag_keys().await.map_err(store_err(state))?;
    tags.sort_unstable();
    let mut group_by = vec![Dim::Day, Dim::KeyId, Dim::Model, Dim::Provider];
    group_by.extend(tags.iter().map(|t| Dim::Tag(t.clone())));
    let report = usage(state, period.range_ms(), group_by, Vec::new()).await?;
    let (from, to) = period.range_ms();
    let prices = state.prices.clone();
    let book = crate::service::prices::reload(state).await?;
    let ctx = Context {
        billing_period_start: format_rfc3339_ms(from),
        billing_period_end: format_rfc3339_ms(to),
        layout: Layout {
            day: 0,
            key_id: 1,
            model: 2,
            provider: 3,
            tags: tags
                .into_iter()
                .enumerate()
                .map(|(i, t)| (t, i + 4))
                .collect(),
        },
        accounts: account_map(state).await?,
        price: Box::new(move |provider, model| prices.lookup(provider, model).copied()),
        discount: Box::new(move |provider, model, day_ms| {
            book.discount_at(provider, model, day_ms)
                .map_or(0.0, |d| d.fraction)
        }),
    };
    let mut rows = report.rows;
    // Day, then the rest of the key: a stable file for the same data.
    rows.sort_by(|a, b| a.dims.cmp(&b.dims));
    let header = focus::header();
    let mut rows = rows.into_iter();
    let body = std::iter::once(header).chain(std::iter::from_fn(move || {
        let mut out = String::new();
        let mut n = 0;
        for row in rows.by_ref() {
            focus::write_rows(&ctx, &row, &mut out);
            n += 1;
            if n == FOCUS_CHUNK_ROWS {
                break;
            }
        }
        (n > 0).then_some(out)
    }));
    Ok(Box::new(body))
}

// ---- Showback ------------------------------------------------------------

pub async fn showback(
    state: &AppState,
    ctx: &RequestContext,
    raw: Option<&str>,
) -> Result<(Showback, Format), AppError> {
    whole_fleet_only(ctx, "/v1/reports/showback")?;
    let p = params(raw, &["month", "week", "label", "format"])?;
    let period = match (p.get("month"), p.get("week")) {
        (Some(m), None) => Period::parse_month("month", m).map_err(AppError::BadRequest)?,
        (None, Some(w)) => Period::parse_week("week", w).map_err(AppError::BadRequest)?,
        (Some(_), Some(_)) => {
            return Err(AppError::BadRequest(String::from(
                "month, week: give one of them, not both",
            )))
        }
        (None, None) => {
            return Err(AppError::BadRequest(String::from(
                "month: required (or week=YYYY-Www)",
            )))
        }
    };
    let format = match p.get("format").map(String::as_str) {
        None | Some("json") => Format::Json,
        Some("csv") => Format::Csv,
        Some(other) => {
            return Err(AppError::InvalidParameter(format!(
                "format: unknown value {other:?}: use json or csv"
            )))
        }
    };
    let label = match p.get("label") {
        Some(l) if crate::domain::validate::is_tag_key(l) => Some(l.clone()),
        Some(l) => {
            return Err(AppError::BadRequest(format!(
                "label: {l:?} is not a label name ([a-z0-9_], 1 to 64 characters)"
            )))
        }
        None => None,
    };
    let mut group_by = vec![Dim::Tag(String::from("team")), Dim::Model];
    if let Some(l) = &label {
        group_by.push(Dim::Label(l.clone()));
    }
    let previous = period.previous();
    let current_report = usage(state, period.range_ms(), group_by.clone(), Vec::new()).await?;
    let previous_report = usage(state, previous.range_ms(), group_by, Vec::new()).await?;
    // The teams' budgets (scope exactly {"team": …}) in their current period.
    let budgets = state.store.list_budgets().await.map_err(store_err(state))?;
    let team_budgets: Vec<_> = budgets
        .into_iter()
        .filter(|b| b.scope.len() == 1 && b.scope.contains_key("team"))
        .collect();
    let views = views_of(&*state.store, team_budgets, now_ms())
        .await
        .map_err(store_err(state))?;
    let mut by_team: BTreeMap<String, Vec<TeamBudget>> = BTreeMap::new();
    for v in views {
        let team = v.budget.scope.get("team").cloned().unwrap_or_default();
        by_team.entry(team).or_default().push(TeamBudget {
            id: v.budget.id.clone(),
            period: v.budget.period.as_str().to_owned(),
            amount_usd: v.budget.amount_usd,
            spend_usd: v.spend_usd,
            state: v.state.as_str().to_owned(),
        });
    }
    for list in by_team.values_mut() {
        // Worst state first: hard, soft, ok.
        let rank = |s: &str| match s {
            "hard" => 0,
            "soft" => 1,
            _ => 2,
        };
        list.sort_by(|a, b| rank(&a.state).cmp(&rank(&b.state)).then(a.id.cmp(&b.id)));
    }
    let (from, to) = period.range_ms();
    let result = showback::build(
        period.to_string(),
        previous.to_string(),
        (format_rfc3339_ms(from), format_rfc3339_ms(to)),
        label,
        &current_report,
        &previous_report,
        &|team| by_team.get(team).cloned().unwrap_or_default(),
    );
    Ok((result, format))
}
