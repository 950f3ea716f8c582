//! The strict-budget part of the caps poll (SPEC §6): what the poll
//! reports (this host's id, each lease's seq, used and demand, the models
//! it needs prices of) and how a 200 answer's leases and prices land in
//! shared data (`controls::lease` describes the values). Pure over `Host`.

use serde::Deserialize;

use crate::controls::lease::{
    lease_key, pico_ceil, usd, Lease, HOST_KEY, INDEX_KEY, MAX_WANTS, PRICES_KEY, WANTS_KEY,
};
use crate::filter::Filter;
use crate::host::{Host, SharedDataError};

const MAX_ATTEMPTS: usize = 8;

/// This host's id: `caps.strict.host_id`, else the one in shared data. With
/// none there yet, this worker proposes `fresh` (random) and answers `None`.
///
/// Kong creates the key only if absent, so the value read is final. Envoy
/// has no create-only write: workers starting together may each write
/// theirs, and a worker that read the first one in between would poll
/// under an id that is then overwritten, leaving a lease no one renews
/// (never an overspend, but its room stays held). So on Envoy a worker uses
/// the shared id only once it read the same value on an earlier tick
/// (`seen`, this worker's memory; a proposer remembers its own): every
/// proposal is written within the tick that found none, so a value still
/// there one tick later stayed.
pub fn host_id(
    host: &mut dyn Host,
    filter: &Filter,
    fresh: &[u8; 32],
    seen: &mut Option<String>,
) -> Option<String> {
    if let Some(id) = &filter.config.caps.strict.host_id {
        return Some(id.clone());
    }
    if let (Some(v), _) = host.shared_data_get(HOST_KEY) {
        let (id, _) = host_value(&v);
        let id = String::from_utf8(id.to_vec())
            .ok()
            .filter(|s| !s.is_empty())?;
        if filter.profile.create_cas().is_some() || seen.as_deref() == Some(id.as_str()) {
            return Some(id);
        }
        *seen = Some(id);
        return None;
    }
    let id = format!("gw-{}", String::from_utf8_lossy(fresh));
    // Kong creates only if absent; a lost race is fine either way.
    let _ = host.shared_data_set(HOST_KEY, id.as_bytes(), filter.profile.create_cas());
    // Still there on the next tick: no other worker overwrote it.
    *seen = Some(id);
    None
}

/// The host key's value, `<id>` or `<id>\t<claimed until ms>`: the id and
/// the claim's end (0 when unclaimed).
fn host_value(value: &[u8]) -> (&[u8], u64) {
    let mut fields = value.split(|&b| b == b'\t');
    let id = fields.next().unwrap_or_default();
    let claimed_until = fields
        .next()
        .and_then(|t| std::str::from_utf8(t).ok())
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(0);
    (id, claimed_until)
}

/// Take this host's poll claim until `until_ms`: one root of a host at a
/// time sends a poll naming the host. Two named polls in flight at once
/// would both report the same state (before the first lease: none), and
/// the collector reads a host that reports no grant while it holds one as
/// a host that lost its state: all it was granted counts as used. The
/// claim lives in the host key (which exists once the id is settled, so
/// compare-and-swap decides; with a configured id the key is created first
/// and claimed from the next tick). Returns the value written, to release.
pub fn claim(host: &mut dyn Host, id: &str, now_ms: u64, until_ms: u64) -> Option<String> {
    let (value, cas) = host.shared_data_get(HOST_KEY);
    let Some(value) = value else {
        let _ = host.shared_data_set(HOST_KEY, id.as_bytes(), None);
        return None;
    };
    let (current, claimed_until) = host_value(&value);
    if current != id.as_bytes() || claimed_until > now_ms {
        return None;
    }
    let claimed = format!("{id}\t{until_ms}");
    match host.shared_data_set(HOST_KEY, claimed.as_bytes(), cas) {
        Ok(()) => Some(claimed),
        Err(_) => None,
    }
}

/// Give the claim back (the poll was answered or never left), unless it
/// expired and another root holds one now.
pub fn release(host: &mut dyn Host, claimed: &str) {
    let (value, cas) = host.shared_data_get(HOST_KEY);
    if value.as_deref() != Some(claimed.as_bytes()) {
        return;
    }
    let id = claimed.split('\t').next().unwrap_or_default();
    let _ = host.shared_data_set(HOST_KEY, id.as_bytes(), cas);
}

/// Whether the poll should name this host: strict budgets exist (the last
/// answer said so) or it still holds leases (to return them). Otherwise the
/// poll stays a plain one, answered 304 while nothing changed.
pub fn wanted(host: &mut dyn Host) -> bool {
    let (index, _) = host.shared_data_get(INDEX_KEY);
    if index.is_some_and(|v| !v.is_empty()) {
        return true;
    }
    let (flags, _) = host.shared_data_get(crate::controls::caps::SHARED_KEY);
    flags
        .as_deref()
        .and_then(crate::controls::caps::split)
        .is_some_and(|(_, _, f)| crate::controls::caps::strict_marked(f))
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
fn encode(value: &str, out: &mut String) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// The poll's query, and the models it asks prices for.
pub fn query(host: &mut dyn Host, host_id: &str, configured: &[String]) -> (String, Vec<String>) {
    let mut q = String::from("host=");
    encode(host_id, &mut q);
    let (index, _) = host.shared_data_get(INDEX_KEY);
    let index = index
        .as_deref()
        .and_then(|v| std::str::from_utf8(v).ok())
        .unwrap_or("")
        .to_string();
    for budget in index.lines().filter_map(|l| l.split('\t').next()) {
        let (value, _) = host.shared_data_get(&lease_key(budget));
        let report = match value.as_deref().and_then(Lease::decode) {
            Some(l) => format!("{budget},{},{},{}", l.seq, usd(l.used), usd(l.demand)),
            None => format!("{budget},-,0,0"),
        };
        q.push_str("&lease=");
        encode(&report, &mut q);
    }
    let (wants, _) = host.shared_data_get(WANTS_KEY);
    let mut asked: Vec<String> = configured.to_vec();
    for want in wants
        .as_deref()
        .and_then(|v| std::str::from_utf8(v).ok())
        .unwrap_or("")
        .lines()
    {
        if !want.is_empty() && !asked.iter().any(|a| a == want) {
            asked.push(want.to_string());
        }
    }
    asked.truncate(MAX_WANTS);
    for model in &asked {
        q.push_str("&model=");
        encode(model, &mut q);
    }
    (q, asked)
}

#[derive(Debug, Deserialize)]
struct Answer {
    #[serde(default)]
    leases: Vec<LeaseDoc>,
    #[serde(default)]
    prices: std::collections::BTreeMap<String, PriceDoc>,
    #[serde(default)]
    price_version: String,
}

#[derive(Debug, Deserialize)]
struct LeaseDoc {
    budget_id: String,
    #[serde(default)]
    scope: std::collections::BTreeMap<String, String>,
    seq: i64,
    allowance_usd: f64,
    used_usd: f64,
    expires_in_ms: u64,
    period_start: String,
}

#[derive(Debug, Deserialize)]
struct PriceDoc {
    input: f64,
    cached_input: f64,
    cache_write: f64,
    output: f64,
    max_output_tokens: Option<u64>,
}

fn clean(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| c.is_control() || c == '=')
}

/// Take in a 200 answer: every lease (a newer grant replaces the shared
/// one, keeping what workers used), the index of strict budgets, and the
/// prices of the models `asked` (those it did not price: unknown).
pub fn apply(
    host: &mut dyn Host,
    body: &[u8],
    asked: &[String],
    now_ms: u64,
) -> Result<(), String> {
    let answer: Answer = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut index = String::new();
    for l in &answer.leases {
        let amounts = [l.allowance_usd, l.used_usd];
        if !clean(&l.budget_id)
            || !clean(&l.period_start)
            || amounts.iter().any(|x| !x.is_finite() || *x < 0.0)
            || l.scope.iter().any(|(k, v)| !clean(k) || !clean(v))
        {
            return Err(format!("bad lease of budget {:?}", l.budget_id));
        }
        index.push_str(&l.budget_id);
        for (name, value) in &l.scope {
            index.push('\t');
            index.push_str(name);
            index.push('=');
            index.push_str(value);
        }
        index.push('\n');
        take_grant(host, l, now_ms);
    }
    write(host, INDEX_KEY, index.as_bytes());
    if !asked.is_empty() {
        let mut prices = format!("{}\n", answer.price_version.replace('\n', ""));
        for model in asked {
            prices.push_str(model);
            match answer.prices.get(model) {
                Some(p) => {
                    let all = [p.input, p.cached_input, p.cache_write, p.output];
                    if all.iter().any(|x| !x.is_finite() || *x < 0.0) {
                        return Err(format!("bad price of {model:?}"));
                    }
                    let max = p
                        .max_output_tokens
                        .map_or("-".to_string(), |n| n.to_string());
                    prices.push_str(&format!(
                        "\t{}\t{}\t{}\t{}\t{max}\n",
                        p.input, p.cached_input, p.cache_write, p.output
                    ));
                }
                None => prices.push_str("\t-\n"),
            }
        }
        write(host, PRICES_KEY, prices.as_bytes());
    }
    Ok(())
}

/// One grant into its shared lease: only a newer `seq` (or a new period)
/// replaces it; `used` stays what the workers counted (or, for a lease this
/// host did not hold, what the collector says it may already have used).
fn take_grant(host: &mut dyn Host, l: &LeaseDoc, now_ms: u64) {
    let key = lease_key(&l.budget_id);
    for _ in 0..MAX_ATTEMPTS {
        let (value, cas) = host.shared_data_get(&key);
        let current = value.as_deref().and_then(Lease::decode);
        let next = match &current {
            Some(c) if c.period_start == l.period_start && c.seq >= l.seq => return,
            Some(c) if c.period_start == l.period_start => Lease {
                seq: l.seq,
                period_start: c.period_start.clone(),
                allowance: lease_floor(l.allowance_usd),
                used: c.used,
                demand: 0,
                expires_at_ms: now_ms.saturating_add(l.expires_in_ms),
            },
            _ => Lease {
                seq: l.seq,
                period_start: l.period_start.clone(),
                allowance: lease_floor(l.allowance_usd),
                used: pico_ceil(l.used_usd),
                demand: 0,
                expires_at_ms: now_ms.saturating_add(l.expires_in_ms),
            },
        };
        let cas = if value.is_some() { cas } else { Some(0) };
        match host.shared_data_set(&key, &next.encode(), cas) {
            Ok(()) => return,
            Err(SharedDataError::CasMismatch) => continue,
            Err(SharedDataError::Other) => return,
        }
    }
}

/// USD → pico-USD rounded down (an allowance never comes out larger).
fn lease_floor(usd: f64) -> u64 {
    if usd.is_finite() && usd > 0.0 {
        (usd * 1e12).floor() as u64
    } else {
        0
    }
}

fn write(host: &mut dyn Host, key: &str, value: &[u8]) {
    for _ in 0..MAX_ATTEMPTS {
        let (current, cas) = host.shared_data_get(key);
        if current.as_deref() == Some(value) {
            return;
        }
        let cas = if current.is_some() { cas } else { Some(0) };
        match host.shared_data_set(key, value, cas) {
            Ok(()) | Err(SharedDataError::Other) => return,
            Err(SharedDataError::CasMismatch) => continue,
        }
    }
}

#[cfg(test)]
mod tests;
