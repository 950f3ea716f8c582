//! Spending controls on an admitted request: budget caps (402 / warning),
//! then the key's rate limits (429 + `x-ratelimit-*`). Caps go first, so a
//! request refused for its budget does not use up rate-limit room.
//! Costs per request: for a key with limits, no shared-data call while the
//! VM is within its share of the key's room, else one get + one set (what
//! the VM counted meanwhile rides along, `limits::local`).

use std::cell::RefCell;

pub mod caps;
pub mod lease;
pub mod limits;
pub mod strict;

use crate::filter::Filter;
use crate::host::{Host, Metric};
use crate::request::decision::Denial;
use crate::request::identity::Principal;
use caps::{CapCheck, CapsView};
use limits::local::LocalCounts;
use limits::Admission;

pub const BUDGET_WARNING_HEADER: &str = "x-aispend-budget-warning";

/// What the controls decided: a denial, and/or headers for the client's
/// response (rate-limit state, budget warnings).
#[derive(Debug, Default)]
pub struct Outcome {
    pub denial: Option<Denial>,
    pub response_headers: Vec<(&'static str, String)>,
    /// The strict budgets (leases this host holds) covering the caller:
    /// the call reserves against them once its body is read (`strict`).
    pub strict_budgets: Vec<String>,
}

pub fn enforce(
    host: &mut dyn Host,
    filter: &Filter,
    view: &RefCell<CapsView>,
    local: &RefCell<LocalCounts>,
    principal: &Principal,
    now_ms: u64,
) -> Outcome {
    let mut out = Outcome::default();
    if filter.config.caps.enabled {
        let (check, strict) = check_caps(host, filter, view, principal, now_ms);
        out.strict_budgets = strict;
        match check {
            CapCheck::Pass { warnings } => {
                if !warnings.is_empty() {
                    out.response_headers
                        .push((BUDGET_WARNING_HEADER, warnings.join(",")));
                }
            }
            CapCheck::Exceeded(budget) => {
                out.denial = Some(Denial::budget_exceeded(&budget));
                return out;
            }
            CapCheck::Unavailable => {
                out.denial = Some(Denial::caps_unavailable());
                return out;
            }
        }
    }
    if let Some(key_limits) = &principal.limits {
        let admission = match local.try_borrow_mut() {
            Ok(mut table) => limits::local::admit(
                host,
                filter.profile,
                &mut table,
                &principal.key_id,
                key_limits,
                now_ms,
            ),
            Err(_) => {
                let id = &principal.key_id;
                limits::admit_at(host, filter.profile, id, key_limits, now_ms, (0, 0)).0
            }
        };
        match admission {
            Admission::Allowed(state) => state.headers(&mut out.response_headers),
            Admission::Limited {
                state,
                retry_after_s,
            } => {
                let mut headers = vec![("retry-after", retry_after_s.to_string())];
                state.headers(&mut headers);
                out.denial = Some(Denial::rate_limited(headers));
            }
            Admission::Unenforced => {
                host.increment_metric(Metric::LimitsUnenforced, 1);
                if !limits::open_on_failure(filter.config.limits.failure_mode) {
                    out.denial = Some(Denial::rate_limited(vec![("retry-after", "1".to_string())]));
                }
            }
        }
    }
    out
}

/// Caps from this VM's copy of the shared flags (`sync_caps_view` keeps it
/// current on the root tick): no hostcall on the request path. Also the
/// strict budgets covering the caller (most gateways hold none).
fn check_caps(
    host: &mut dyn Host,
    filter: &Filter,
    view: &RefCell<CapsView>,
    principal: &Principal,
    now_ms: u64,
) -> (CapCheck, Vec<String>) {
    let c = &filter.config.caps;
    let Ok(view) = view.try_borrow() else {
        let pass = CapCheck::Pass {
            warnings: Vec::new(),
        };
        return (pass, Vec::new());
    };
    let strict_held = c.strict.enabled && !view.strict.budgets.is_empty();
    if !strict_held && view.clear_at(now_ms, c.stale_after_ms) {
        // The usual call: nothing flagged, nothing to take a snapshot of.
        let pass = CapCheck::Pass {
            warnings: Vec::new(),
        };
        return (pass, Vec::new());
    }
    let snapshot = view.snapshot(now_ms, c.stale_after_ms);
    let strict = if strict_held {
        view.strict.matching(principal)
    } else {
        Vec::new()
    };
    drop(view);
    let result = caps::check(&snapshot, principal, c.failure_mode);
    if snapshot.stale {
        host.increment_metric(Metric::CapsStale, 1);
        if matches!(result, CapCheck::Pass { .. }) {
            host.increment_metric(Metric::CapsUnenforced, 1);
        }
    }
    (result, strict)
}

/// Bring this VM's copy of the cap flags up to date with shared data (the
/// root context calls this on every tick and after its own poll lands).
pub fn sync_caps_view(host: &mut dyn Host, filter: &Filter, view: &RefCell<CapsView>) {
    if !filter.config.caps.enabled {
        return;
    }
    let (value, cas) = host.shared_data_get(caps::SHARED_KEY);
    if let Ok(mut view) = view.try_borrow_mut() {
        view.update(value.as_deref(), cas, &filter.schema);
        if filter.config.caps.strict.enabled {
            view.strict.update(host, &filter.schema);
        }
    }
}

/// After the call (at `now_ms`, the clock the caller read for its record):
/// its tokens count toward the key's tokens-per-minute. They wait in
/// `local` for the key's next sync or one flush interval (`limits::local`);
/// with the table full they are written now.
pub fn record_tokens(
    host: &mut dyn Host,
    filter: &Filter,
    local: &RefCell<LocalCounts>,
    principal: &Principal,
    tokens: u64,
    now_ms: u64,
) {
    let Some(l) = &principal.limits else { return };
    if l.tokens_per_minute.is_none() || tokens == 0 {
        return;
    }
    let kept = local
        .try_borrow_mut()
        .is_ok_and(|mut t| t.add_tokens(&principal.key_id, tokens));
    if !kept {
        write_counts(host, filter, &principal.key_id, (0, tokens), now_ms);
    }
}

/// Write (requests, tokens) into `key_id`'s shared counter now (counted as
/// unenforced when that fails).
pub fn write_counts(
    host: &mut dyn Host,
    filter: &Filter,
    key_id: &str,
    counts: (u64, u64),
    now_ms: u64,
) {
    if !limits::add_counts_at(host, filter.profile, key_id, counts, now_ms) {
        host.increment_metric(Metric::LimitsUnenforced, 1);
    }
}

#[cfg(test)]
mod tests;
