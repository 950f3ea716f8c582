//! `GET /v1/reconciliation?month=` (SPEC §13): what the gateways measured
//! beside what the provider billed, per provider × model × day, plus the
//! provider's non-token line items, per credential, and totals.
//!
//! Per row, the provider's cost splits into three parts:
//! - the matched tokens (tokens both sides saw) at the gateway's price;
//! - `drift`: the price difference on the matched tokens, (provider cost
//!   per token − gateway cost per token) × matched tokens;
//! - `unattributed_usd`: the provider's cost of the tokens no gateway saw
//!   (all of it when no gateway saw that provider × model × day).
//!
//! `coverage` = gateway cost ÷ provider cost (`null` when nothing billed).

use std::collections::BTreeMap;

use serde::Serialize;

use super::import::ProviderLine;
use crate::domain::pricing::strip_version_suffix;
use crate::domain::time::day_of;

/// What the gateways measured for one provider × model × day.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GatewayCell {
    pub cost_usd: f64,
    pub tokens: i64,
    pub requests: i64,
}

/// The model name both sides are matched on: no `models/` prefix, no date
/// or version suffix (`gpt-4o-mini-2024-07-18` → `gpt-4o-mini`).
pub fn model_key(model: &str) -> String {
    let m = model.strip_prefix("models/").unwrap_or(model);
    strip_version_suffix(m).unwrap_or(m).to_owned()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Row {
    pub provider: String,
    pub model: Option<String>,
    pub day: String,
    /// `null` for tokens; what a non-token provider cost is for.
    pub line_item: Option<String>,
    pub gateway_cost_usd: f64,
    pub provider_cost_usd: Option<f64>,
    pub gateway_tokens: i64,
    pub provider_tokens: Option<i64>,
    pub gateway_requests: i64,
    pub provider_requests: Option<i64>,
    pub coverage: Option<f64>,
    pub drift: Option<f64>,
    pub unattributed_usd: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CredentialRow {
    pub provider: String,
    pub credential: String,
    pub provider_cost_usd: Option<f64>,
    pub provider_tokens: Option<i64>,
    pub gateway_cost_usd: f64,
    pub gateway_tokens: i64,
    pub coverage: Option<f64>,
    /// Gateway tokens ÷ provider tokens: the coverage of a credential whose
    /// export counts tokens but bills elsewhere (OpenAI: usage per API key,
    /// costs per project).
    pub token_coverage: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    pub gateway_cost_usd: f64,
    pub provider_cost_usd: f64,
    pub gateway_tokens: i64,
    pub provider_tokens: i64,
    pub coverage: Option<f64>,
    pub drift: f64,
    pub unattributed_usd: f64,
    /// Provider costs that are not tokens (tools, search): rows with a
    /// `line_item`.
    pub non_token_usd: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Reconciliation {
    pub month: String,
    pub rows: Vec<Row>,
    pub credentials: Vec<CredentialRow>,
    pub totals: Totals,
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

#[derive(Default)]
struct ProviderCell {
    cost: Option<f64>,
    tokens: Option<i64>,
    requests: Option<i64>,
}

fn add_opt<T: std::ops::Add<Output = T> + Copy>(slot: &mut Option<T>, v: T) {
    *slot = Some(match *slot {
        Some(x) => x + v,
        None => v,
    });
}

/// Whether a line's source bills (cost exports) or counts (usage exports).
fn is_cost_source(source: &str) -> bool {
    source.ends_with(".costs") || source.ends_with(".cost") || source.ends_with(".billing")
}

fn line_tokens(l: &ProviderLine) -> i64 {
    l.input_tokens + l.output_tokens
}

/// Builds the report. `gateway`: (provider, model key, day) → cells;
/// `gateway_by_credential`: (provider, credential) → cells, for the
/// records that name the credential they were sent with.
pub fn build(
    month: &str,
    gateway: &BTreeMap<(String, String, String), GatewayCell>,
    gateway_by_credential: &BTreeMap<(String, String), GatewayCell>,
    lines: &[ProviderLine],
) -> Reconciliation {
    // (provider, model key, day, line item) → provider cell.
    let mut billed: BTreeMap<(String, String, String, String), ProviderCell> = BTreeMap::new();
    let mut by_cred: BTreeMap<(String, String), ProviderCell> = BTreeMap::new();
    for l in lines {
        let key = (
            l.provider.clone(),
            if l.line_item.is_empty() {
                model_key(&l.model)
            } else {
                String::new()
            },
            day_of(l.start_ms),
            l.line_item.clone(),
        );
        let cell = billed.entry(key).or_default();
        let cred = (!l.credential.is_empty()).then(|| {
            by_cred
                .entry((l.provider.clone(), l.credential.clone()))
                .or_default()
        });
        if is_cost_source(&l.source) {
            let cost = l.cost_usd.unwrap_or(0.0);
            add_opt(&mut cell.cost, cost);
            if let Some(c) = cred {
                add_opt(&mut c.cost, cost);
                if l.source.ends_with(".billing") && l.line_item.is_empty() {
                    add_opt(&mut c.tokens, line_tokens(l));
                }
            }
            // A billing export counts its tokens itself.
            if l.source.ends_with(".billing") && l.line_item.is_empty() {
                add_opt(&mut cell.tokens, line_tokens(l));
            }
        } else {
            add_opt(&mut cell.tokens, line_tokens(l));
            add_opt(&mut cell.requests, l.requests);
            if let Some(c) = cred {
                add_opt(&mut c.tokens, line_tokens(l));
            }
        }
    }
    // An export without the model grouping bills a provider-day as one
    // amount with no model: the gateway's models that the bill does not name
    // that day are compared with it, as one row without a model.
    let mut gateway = gateway.clone();
    let unnamed: Vec<(String, String)> = billed
        .keys()
        .filter(|(_, m, _, item)| m.is_empty() && item.is_empty())
        .map(|(p, _, d, _)| (p.clone(), d.clone()))
        .collect();
    for (provider, day) in unnamed {
        let folded: Vec<(String, String, String)> = gateway
            .keys()
            .filter(|(p, m, d)| {
                *p == provider
                    && *d == day
                    && !m.is_empty()
                    && !billed.contains_key(&(p.clone(), m.clone(), d.clone(), String::new()))
            })
            .cloned()
            .collect();
        for key in folded {
            if let Some(cell) = gateway.remove(&key) {
                let into = gateway
                    .entry((provider.clone(), String::new(), day.clone()))
                    .or_default();
                into.cost_usd += cell.cost_usd;
                into.tokens += cell.tokens;
                into.requests += cell.requests;
            }
        }
    }
    let mut keys: Vec<(String, String, String, String)> = billed.keys().cloned().collect();
    keys.extend(
        gateway
            .keys()
            .map(|(p, m, d)| (p.clone(), m.clone(), d.clone(), String::new())),
    );
    keys.sort_by(|a, b| (&a.2, &a.0, &a.1, &a.3).cmp(&(&b.2, &b.0, &b.1, &b.3)));
    keys.dedup();
    let mut totals = Totals::default();
    let mut rows = Vec::with_capacity(keys.len());
    for key in keys {
        let (provider, model, day, item) = key.clone();
        let p = billed.get(&key);
        let g = if item.is_empty() {
            gateway.get(&(provider.clone(), model.clone(), day.clone()))
        } else {
            None
        };
        let g = g.cloned().unwrap_or_default();
        let provider_cost = p.and_then(|p| p.cost);
        let provider_tokens = p.and_then(|p| p.tokens);
        let (drift, unattributed) = if !item.is_empty() {
            (None, None)
        } else {
            match (provider_cost, provider_tokens) {
                (Some(pc), Some(pt)) if pt > 0 => {
                    let matched = pt.min(g.tokens);
                    let drift = (matched > 0)
                        .then(|| (pc / pt as f64 - g.cost_usd / g.tokens as f64) * matched as f64);
                    let unseen = (pt - matched).max(0);
                    (drift, Some(pc * unseen as f64 / pt as f64))
                }
                (Some(pc), _) => (None, Some((pc - g.cost_usd).max(0.0))),
                (None, _) => (None, None),
            }
        };
        totals.gateway_cost_usd += g.cost_usd;
        totals.gateway_tokens += g.tokens;
        totals.provider_cost_usd += provider_cost.unwrap_or(0.0);
        totals.provider_tokens += provider_tokens.unwrap_or(0);
        totals.drift += drift.unwrap_or(0.0);
        totals.unattributed_usd += unattributed.unwrap_or(0.0);
        if !item.is_empty() {
            totals.non_token_usd += provider_cost.unwrap_or(0.0);
        }
        rows.push(Row {
            provider,
            model: (!model.is_empty()).then_some(model),
            day,
            line_item: (!item.is_empty()).then_some(item),
            gateway_cost_usd: g.cost_usd,
            provider_cost_usd: provider_cost,
            gateway_tokens: g.tokens,
            provider_tokens,
            gateway_requests: g.requests,
            provider_requests: p.and_then(|p| p.requests),
            coverage: provider_cost.and_then(|pc| ratio(g.cost_usd, pc)),
            drift,
            unattributed_usd: unattributed,
        });
    }
    totals.coverage = ratio(totals.gateway_cost_usd, totals.provider_cost_usd);
    let mut cred_keys: Vec<(String, String)> = by_cred.keys().cloned().collect();
    cred_keys.extend(gateway_by_credential.keys().cloned());
    cred_keys.sort();
    cred_keys.dedup();
    let credentials = cred_keys
        .into_iter()
        .map(|key| {
            let p = by_cred.get(&key);
            let g = gateway_by_credential.get(&key).cloned().unwrap_or_default();
            let provider_cost = p.and_then(|p| p.cost);
            let provider_tokens = p.and_then(|p| p.tokens);
            CredentialRow {
                provider: key.0,
                credential: key.1,
                provider_cost_usd: provider_cost,
                provider_tokens,
                gateway_cost_usd: g.cost_usd,
                gateway_tokens: g.tokens,
                coverage: provider_cost.and_then(|pc| ratio(g.cost_usd, pc)),
                token_coverage: provider_tokens.and_then(|pt| ratio(g.tokens as f64, pt as f64)),
            }
        })
        .collect();
    Reconciliation {
        month: month.to_owned(),
        rows,
        credentials,
        totals,
    }
}

#[cfg(test)]
mod tests;
