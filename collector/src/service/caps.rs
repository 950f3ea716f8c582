//! Cap flags (CONTRACTS §6): the budgets now over their soft or hard threshold,
//! which every gateway worker polls through `GET /v1/caps`.
//!
//! Many workers poll, so the answer is computed at most once per
//! `MIN_AGE` and shared: a budget change recomputes on the next poll (an
//! admin raising or removing a budget sees the flag drop at once); new
//! records recompute once the cached answer is `MIN_AGE` old; with no local
//! change the answer is still recomputed after `MAX_AGE`, which picks up
//! records ingested by other collector replicas and period rollovers.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::domain::access::budget_in_scope;
use crate::domain::budgets::{BudgetState, Enforce, Scope};
use crate::domain::leases::{LeasePolicy, LeaseRequest, Poll};
use crate::domain::pricing::PriceTable;
use crate::domain::record::map_to_json;
use crate::domain::time::format_rfc3339_ms;
use crate::service::budgets::{views_of, BudgetView};
use crate::store::{Store, StoreError};

const MIN_AGE: Duration = Duration::from_millis(250);
const MAX_AGE: Duration = Duration::from_secs(1);

/// One flag of the answer.
#[derive(Debug, Serialize)]
struct CapFlag<'a> {
    budget_id: &'a str,
    scope: &'a Scope,
    state: BudgetState,
    spend_usd: f64,
    amount_usd: f64,
    period_end: &'a str,
}

#[derive(Debug, Serialize)]
struct CapsBody<'a> {
    version: &'a str,
    generated_at: String,
    caps: Vec<CapFlag<'a>>,
    /// How many strict budgets exist: a gateway polls with `?host=…` (and
    /// holds leases) only while there are some, so without any its polls
    /// stay cheap 304s.
    strict: u64,
}

/// A computed answer, shared by every poll until it is stale.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub version: String,
    pub body: Bytes,
    pub soft: u64,
    pub hard: u64,
}

/// The version names the set of flags: which budgets, scopes, states,
/// amounts and period ends. Spend alone moving does not change it (the
/// filter acts on flags, not on spend), so a poll answers 304 until a flag
/// appears, changes state or goes away. A hash, so every replica on the
/// same database answers the same version.
pub fn version_of(flags: &[&BudgetView]) -> String {
    let mut hasher = Sha256::new();
    for v in flags {
        let line = format!(
            "{}\n{}\n{}\n{}\n{}\n",
            v.budget.id,
            map_to_json(&v.budget.scope),
            v.state.as_str(),
            v.budget.amount_usd,
            v.period_end_ms
        );
        hasher.update(line.as_bytes());
    }
    let digest = hasher.finalize();
    digest.iter().take(8).fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Builds the answer from every budget's current view.
pub fn snapshot_of(views: &[BudgetView], now: i64) -> Snapshot {
    let flagged: Vec<&BudgetView> = views
        .iter()
        .filter(|v| v.state != BudgetState::Ok)
        .collect();
    let strict = views
        .iter()
        .filter(|v| v.budget.enforce == Enforce::Strict)
        .count() as u64;
    // A strict budget appearing (or the last one going) changes the answer.
    let version = if strict == 0 {
        version_of(&flagged)
    } else {
        format!("{}s{strict}", version_of(&flagged))
    };
    let count = |s: BudgetState| flagged.iter().filter(|v| v.state == s).count() as u64;
    let body = CapsBody {
        version: &version,
        generated_at: format_rfc3339_ms(now),
        caps: flagged
            .iter()
            .map(|v| CapFlag {
                budget_id: &v.budget.id,
                scope: &v.budget.scope,
                state: v.state,
                spend_usd: v.spend_usd,
                amount_usd: v.budget.amount_usd,
                period_end: &v.period_end,
            })
            .collect(),
        strict,
    };
    // Serializing plain strings and numbers cannot fail; an empty body
    // would still be answered rather than panic.
    let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
    Snapshot {
        soft: count(BudgetState::Soft),
        hard: count(BudgetState::Hard),
        version,
        body,
    }
}

/// The answer a scoped viewer gets: only the flags of budgets inside its
/// scope (`domain::access::budget_in_scope`), with a version of its own.
pub fn scoped(snapshot: &Snapshot, scope: &Scope) -> Snapshot {
    let mut body: serde_json::Value =
        serde_json::from_slice(&snapshot.body).unwrap_or(serde_json::Value::Null);
    let mut kept = Vec::new();
    if let Some(caps) = body
        .get_mut("caps")
        .and_then(serde_json::Value::as_array_mut)
    {
        caps.retain(|flag| {
            let flag_scope: Scope = flag
                .get("scope")
                .and_then(|s| serde_json::from_value(s.clone()).ok())
                .unwrap_or_default();
            budget_in_scope(scope, &flag_scope)
        });
        kept.clone_from(caps);
    }
    let strict = body.get("strict").cloned().unwrap_or_default();
    let digest =
        Sha256::digest(format!("{}{strict}", serde_json::Value::Array(kept.clone())).as_bytes());
    let version = digest.iter().take(8).fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    });
    if let Some(v) = body.get_mut("version") {
        *v = serde_json::Value::String(version.clone());
    }
    let count = |state: &str| {
        kept.iter()
            .filter(|f| f.get("state").and_then(serde_json::Value::as_str) == Some(state))
            .count() as u64
    };
    Snapshot {
        soft: count("soft"),
        hard: count("hard"),
        body: Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
        version,
    }
}

struct Cached {
    at: Instant,
    /// The state clock's now when computed (tests move it).
    now_ms: i64,
    budget_generation: u64,
    ingest_generation: u64,
    snapshot: Arc<Snapshot>,
}

/// The shared caps cache and its metrics.
pub struct Caps {
    budget_generation: AtomicU64,
    ingest_generation: AtomicU64,
    /// An async lock held while computing: concurrent polls wait for the one
    /// computation instead of each hitting the store.
    cached: tokio::sync::Mutex<Option<Cached>>,
    requests: AtomicU64,
    budgets: AtomicU64,
    soft: AtomicU64,
    hard: AtomicU64,
    /// How leases of strict budgets are sized (`domain::leases`).
    pub lease_policy: LeasePolicy,
}

impl Default for Caps {
    fn default() -> Self {
        Self::new()
    }
}

impl Caps {
    pub fn new() -> Self {
        Self::with_policy(LeasePolicy::default())
    }

    pub fn with_policy(lease_policy: LeasePolicy) -> Self {
        Self {
            budget_generation: AtomicU64::new(0),
            ingest_generation: AtomicU64::new(0),
            cached: tokio::sync::Mutex::new(None),
            requests: AtomicU64::new(0),
            budgets: AtomicU64::new(0),
            soft: AtomicU64::new(0),
            hard: AtomicU64::new(0),
            lease_policy,
        }
    }

    /// A budget was created, replaced or deleted.
    pub fn budgets_changed(&self) {
        self.budget_generation.fetch_add(1, Ordering::Relaxed);
    }

    /// An ingest stored records.
    pub fn records_ingested(&self) {
        self.ingest_generation.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one `GET /v1/caps` (the `aispend_caps_requests_total` metric).
    pub fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// The current answer at `now` (epoch ms), recomputed only when stale
    /// (see the module doc; a clock moved by `MAX_AGE` also makes it stale).
    pub async fn current(&self, store: &dyn Store, now: i64) -> Result<Arc<Snapshot>, StoreError> {
        let mut cached = self.cached.lock().await;
        let budget_generation = self.budget_generation.load(Ordering::Relaxed);
        let ingest_generation = self.ingest_generation.load(Ordering::Relaxed);
        if let Some(c) = cached.as_ref() {
            let age = c.at.elapsed();
            let clock_moved = (now - c.now_ms).unsigned_abs() >= MAX_AGE.as_millis() as u64;
            let fresh = c.budget_generation == budget_generation
                && !clock_moved
                && (age < MIN_AGE || (c.ingest_generation == ingest_generation && age < MAX_AGE));
            if fresh {
                return Ok(Arc::clone(&c.snapshot));
            }
        }
        let budgets = store.list_budgets().await?;
        self.budgets.store(budgets.len() as u64, Ordering::Relaxed);
        let views = views_of(store, budgets, now).await?;
        let snapshot = Arc::new(snapshot_of(&views, now));
        self.soft.store(snapshot.soft, Ordering::Relaxed);
        self.hard.store(snapshot.hard, Ordering::Relaxed);
        *cached = Some(Cached {
            at: Instant::now(),
            now_ms: now,
            budget_generation,
            ingest_generation,
            snapshot: Arc::clone(&snapshot),
        });
        Ok(snapshot)
    }

    /// The budget and caps metrics in the Prometheus text format.
    pub fn render_metrics(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::with_capacity(512);
        let _ = writeln!(
            out,
            "# HELP aispend_budgets Budgets defined (as of the last caps computation).\n\
             # TYPE aispend_budgets gauge\naispend_budgets {}",
            get(&self.budgets)
        );
        let _ = writeln!(
            out,
            "# HELP aispend_caps_requests_total GET /v1/caps requests answered.\n\
             # TYPE aispend_caps_requests_total counter\naispend_caps_requests_total {}",
            get(&self.requests)
        );
        let _ = writeln!(
            out,
            "# HELP aispend_caps_flags Budgets flagged in the last caps answer, by state.\n\
             # TYPE aispend_caps_flags gauge\n\
             aispend_caps_flags{{state=\"soft\"}} {}\naispend_caps_flags{{state=\"hard\"}} {}",
            get(&self.soft),
            get(&self.hard)
        );
        out
    }
}

/// One lease in a host's caps answer.
#[derive(Debug, Serialize)]
struct LeaseDoc<'a> {
    budget_id: &'a str,
    scope: &'a Scope,
    seq: i64,
    /// Cumulative allowance for the period: reserved + spent may reach it.
    allowance_usd: f64,
    /// What the host must count as used if it holds no grant (it lost its state).
    used_usd: f64,
    /// Relative, so the host's clock need not agree with ours.
    expires_in_ms: i64,
    period_start: &'a str,
}

/// Per-token prices of one model, as the filter reserves with them.
#[derive(Debug, Serialize)]
struct PriceDoc {
    input: f64,
    cached_input: f64,
    cache_write: f64,
    output: f64,
    max_output_tokens: Option<u64>,
}

/// The prices a host asked for, from the current price table (the one
/// function through which leases read prices).
fn published_prices(
    prices: &PriceTable,
    models: &[(String, String)],
) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    for (provider, model) in models {
        if let Some(p) = prices.lookup(provider, model) {
            let doc = PriceDoc {
                input: p.input,
                cached_input: p.cache_read,
                cache_write: p.cache_write,
                output: p.output,
                max_output_tokens: p.max_output_tokens,
            };
            if let Ok(v) = serde_json::to_value(doc) {
                out.insert(format!("{provider}:{model}"), v);
            }
        }
    }
    out
}

/// A host's caps poll (`?host=…`): the flags of `snapshot`, plus a fresh
/// lease for every strict budget (in the caller's scope) and the prices the
/// host asked for with their `price_version`. Never a 304: leases move on
/// every poll. Each grant is one store transaction (`Store::grant_lease`).
pub async fn with_leases(
    store: &dyn Store,
    prices: &PriceTable,
    policy: LeasePolicy,
    snapshot: &Snapshot,
    scope: Option<&Scope>,
    poll: &Poll,
    now: i64,
) -> Result<Bytes, StoreError> {
    let strict: Vec<_> = store
        .list_budgets()
        .await?
        .into_iter()
        .filter(|b| b.enforce == Enforce::Strict)
        .filter(|b| scope.is_none_or(|s| budget_in_scope(s, &b.scope)))
        .collect();
    let views = views_of(store, strict, now).await?;
    let mut grants = Vec::with_capacity(views.len());
    for v in &views {
        let b = &v.budget;
        let (period_start_ms, _) = b.period.bounds(now);
        let lease = store
            .grant_lease(LeaseRequest {
                budget_id: b.id.clone(),
                period_start_ms,
                host: poll.host.clone(),
                spend_usd: v.spend_usd,
                cap_usd: b.hard * b.amount_usd + v.override_usd.unwrap_or(0.0),
                report: poll.reports.get(&b.id).copied().unwrap_or_default(),
                now_ms: now,
                policy,
            })
            .await?;
        grants.push(lease);
    }
    let leases: Vec<LeaseDoc<'_>> = views
        .iter()
        .zip(&grants)
        .map(|(v, l)| LeaseDoc {
            budget_id: &v.budget.id,
            scope: &v.budget.scope,
            seq: l.seq,
            allowance_usd: l.granted_usd,
            used_usd: l.used_usd,
            expires_in_ms: l.expires_ms - now,
            period_start: &v.period_start,
        })
        .collect();
    let mut body: serde_json::Value =
        serde_json::from_slice(&snapshot.body).unwrap_or_else(|_| serde_json::json!({}));
    if let Some(obj) = body.as_object_mut() {
        obj.insert("host".into(), serde_json::Value::String(poll.host.clone()));
        obj.insert(
            "leases".into(),
            serde_json::to_value(leases).unwrap_or_default(),
        );
        obj.insert(
            "prices".into(),
            serde_json::Value::Object(published_prices(prices, &poll.models)),
        );
        obj.insert(
            "price_version".into(),
            serde_json::Value::String(prices.version().to_owned()),
        );
    }
    Ok(Bytes::from(serde_json::to_vec(&body).unwrap_or_default()))
}
