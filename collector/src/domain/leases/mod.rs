//! Leases of strict budgets (SPEC §6): how much of a strict budget's hard
//! threshold one gateway host may spend. Plain arithmetic; the store runs
//! [`grant`] inside one transaction per budget (see `Store::grant_lease`).
//!
//! A lease is a *cumulative allowance* for the budget's current period: the
//! host may have reserved plus spent at most `granted_usd` in this period.
//! The host reports what it has used (`used_usd`, reservations in flight
//! included) and which grant it works under (`seq`). The collector keeps, per
//! host, `committed_usd`: the most that host can have spent under any grant
//! it may hold (the one it acknowledged and every grant issued after it).
//!
//! The invariant kept by every grant, per budget and period:
//!
//! `base_usd + Σ committed_usd(host) <= cap_usd`
//!
//! where `base_usd` is the spend recorded when the period's first lease was
//! granted (spend made before the budget was leased). A host never spends
//! beyond the grant it holds, so the budget's spend never passes the cap.
//! Grants only move forward on a host (it ignores a grant with a lower
//! `seq`), so a shrinking grant frees room only once the host reports it
//! works under it.

use serde::Serialize;

#[cfg(test)]
mod tests;

/// How big the slices are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeasePolicy {
    /// How long a grant is valid without renewal.
    pub ttl_ms: i64,
    /// The smallest slice: this share of the room not yet committed
    /// (so an idle host holds little, and a new host can start at once).
    pub floor_share: f64,
    /// A busy host gets its recent burn × this many TTLs.
    pub burn_ttls: f64,
}

impl Default for LeasePolicy {
    fn default() -> Self {
        LeasePolicy {
            ttl_ms: 10_000,
            floor_share: 0.1,
            burn_ttls: 2.0,
        }
    }
}

/// What a host reports about one strict budget on its poll.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct HostReport {
    /// The grant it works under; `None`: it holds none (new host, restart,
    /// lost shared data).
    pub seq: Option<i64>,
    /// Reserved + spent in this period under its grants.
    pub used_usd: f64,
    /// Worst cases it could not fit since its last poll (asks for a bigger slice).
    pub demand_usd: f64,
}

/// A host's lease as stored.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Lease {
    pub seq: i64,
    /// The newest grant (cumulative allowance for the period).
    pub granted_usd: f64,
    /// The most this host can have spent under any grant it may hold.
    pub committed_usd: f64,
    /// What the host reported it used (at least what it must start from).
    pub used_usd: f64,
    /// Smoothed USD per second.
    pub burn_usd_per_s: f64,
    pub updated_ms: i64,
    pub expires_ms: i64,
}

/// One host's lease of a budget period, as listed (`Store::list_leases`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostLease {
    pub host: String,
    #[serde(flatten)]
    pub lease: Lease,
}

/// Everything a grant depends on, read in the grant's transaction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GrantInput {
    /// hard × amount (+ active overrides).
    pub cap_usd: f64,
    pub base_usd: f64,
    /// Σ committed of every other host of this budget and period.
    pub others_committed_usd: f64,
    pub previous: Option<Lease>,
    pub report: HostReport,
    pub now_ms: i64,
    pub policy: LeasePolicy,
}

/// The host's next lease.
pub fn grant(input: &GrantInput) -> Lease {
    let GrantInput {
        cap_usd,
        base_usd,
        others_committed_usd,
        previous,
        report,
        now_ms,
        policy,
    } = *input;
    let clean = |x: f64| if x.is_finite() { x.max(0.0) } else { 0.0 };
    let reported = clean(report.used_usd);
    let demand = clean(report.demand_usd);
    let (seq, used, in_force, burn) = match previous {
        None => (1, reported, 0.0, 0.0),
        Some(p) => {
            // A host without a grant lost its state: whatever it could have
            // spent under earlier grants stays spent.
            let used = match report.seq {
                None => reported.max(p.committed_usd),
                Some(_) => reported,
            };
            // Acknowledging the newest grant retires every older one.
            let in_force = if report.seq == Some(p.seq) {
                p.granted_usd
            } else {
                p.committed_usd
            };
            let dt_s = (now_ms - p.updated_ms) as f64 / 1000.0;
            let burn = if dt_s > 0.0 {
                let instant = clean(used - p.used_usd) / dt_s;
                0.5 * p.burn_usd_per_s + 0.5 * instant
            } else {
                p.burn_usd_per_s
            };
            (p.seq + 1, used, in_force, burn)
        }
    };
    let room = clean(cap_usd - base_usd - others_committed_usd);
    let free = clean(room - used);
    let wanted = (policy.floor_share * free)
        .max(burn * policy.burn_ttls * policy.ttl_ms as f64 / 1000.0)
        .max(demand);
    let granted = used + wanted.min(free);
    Lease {
        seq,
        granted_usd: granted,
        committed_usd: granted.max(in_force).max(used),
        used_usd: used,
        burn_usd_per_s: burn,
        updated_ms: now_ms,
        expires_ms: now_ms + policy.ttl_ms,
    }
}

/// A host id on the poll: `[A-Za-z0-9._:-]{1,128}`.
pub fn is_host_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// One grant asked of the store (`Store::grant_lease`).
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseRequest {
    pub budget_id: String,
    /// The budget's current period (epoch ms of its start).
    pub period_start_ms: i64,
    pub host: String,
    /// Spend recorded now: becomes the period's base if this is its first lease.
    pub spend_usd: f64,
    pub cap_usd: f64,
    pub report: HostReport,
    pub now_ms: i64,
    pub policy: LeasePolicy,
}

impl LeaseRequest {
    /// The grant once the store read the period's base, the other hosts'
    /// commitments and this host's previous lease (in one transaction).
    pub fn grant(
        &self,
        base_usd: f64,
        others_committed_usd: f64,
        previous: Option<Lease>,
    ) -> Lease {
        grant(&GrantInput {
            cap_usd: self.cap_usd,
            base_usd,
            others_committed_usd,
            previous,
            report: self.report,
            now_ms: self.now_ms,
            policy: self.policy,
        })
    }
}

/// What a gateway host adds to its `GET /v1/caps` poll to hold leases:
/// `host=<id>`, one `lease=<budget_id>,<seq or ->,<used_usd>,<demand_usd>`
/// per strict budget it holds, and one `model=<provider>:<model>` per model
/// it wants the price of.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Poll {
    pub host: String,
    pub reports: std::collections::BTreeMap<String, HostReport>,
    pub models: Vec<(String, String)>,
}

/// At most this many models are priced per poll.
pub const MAX_MODELS: usize = 64;

/// Parses the query of a caps poll. `Ok(None)`: no `host`, a plain flags
/// poll. A bad parameter is an error naming it (never ignored: a lease
/// report read wrong would grant room that is spent).
pub fn parse_poll(query: &str) -> Result<Option<Poll>, String> {
    let mut poll = Poll::default();
    let mut leases = Vec::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match name.as_ref() {
            "host" => {
                if !is_host_id(&value) {
                    return Err(format!(
                        "parameter `host`: {value:?} must match [A-Za-z0-9._:-]{{1,128}}"
                    ));
                }
                poll.host = value.into_owned();
            }
            "lease" => leases.push(value.into_owned()),
            "model" => {
                let Some((provider, model)) = value.split_once(':') else {
                    return Err(format!(
                        "parameter `model`: {value:?} must be <provider>:<model>"
                    ));
                };
                if poll.models.len() >= MAX_MODELS {
                    return Err(format!("at most {MAX_MODELS} `model` parameters"));
                }
                poll.models.push((provider.to_owned(), model.to_owned()));
            }
            other => {
                return Err(format!(
                    "unknown parameter `{other}`: use host, lease, model"
                ))
            }
        }
    }
    if poll.host.is_empty() {
        if leases.is_empty() && poll.models.is_empty() {
            return Ok(None);
        }
        return Err(String::from("parameters `lease` and `model` need `host`"));
    }
    for text in leases {
        let bad = || {
            format!(
                "parameter `lease`: {text:?} must be <budget_id>,<seq|->,<used_usd>,<demand_usd>"
            )
        };
        let mut parts = text.split(',');
        let (Some(budget), Some(seq), Some(used), Some(demand), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(bad());
        };
        let seq = match seq {
            "-" => None,
            s => Some(s.parse::<i64>().map_err(|_| bad())?),
        };
        let amount = |s: &str| {
            s.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(bad)
        };
        let report = HostReport {
            seq,
            used_usd: amount(used)?,
            demand_usd: amount(demand)?,
        };
        if poll.reports.insert(budget.to_owned(), report).is_some() {
            return Err(format!(
                "parameter `lease`: budget {budget:?} reported twice"
            ));
        }
    }
    Ok(Some(poll))
}
