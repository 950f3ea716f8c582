//! Strict budgets (SPEC §6) on the gateway side: the leases the collector
//! grants this host, kept in shared data so every worker reserves against
//! the same amount with compare-and-swap, and the prices to reserve with.
//!
//! Shared-data values (amounts in pico-USD, integers, so CAS updates add
//! exactly):
//! - `aispend:lease:<budget_id>`: `<seq>\t<period_start>\t<allowance>\t<used>\t<demand>\t<expires_at_ms>`.
//!   `used` counts reservations in flight and settled costs of the period;
//!   a reservation never takes `used` past `allowance`.
//! - `aispend:leases`: the strict budgets (one line each:
//!   `<budget_id>\t<scope name>=<value>\t…`), written by the poller.
//! - `aispend:prices`: `<price_version>` then one line per model,
//!   `<provider>:<model>\t<input>\t<cached_input>\t<cache_write>\t<output>\t<max_output or ->`
//!   (USD per token) or `<provider>:<model>\t-` when the collector has no price.
//! - `aispend:price_wants`: models strict calls asked for, one per line.
//! - `aispend:host`: this host's id (the first worker creates it).

use std::collections::HashMap;

use crate::controls::caps::{decode_scope, ScopeKey};
use crate::host::{Host, SharedDataError};
use crate::request::identity::{Principal, TagSchema};

pub const INDEX_KEY: &str = "aispend:leases";
pub const PRICES_KEY: &str = "aispend:prices";
pub const WANTS_KEY: &str = "aispend:price_wants";
pub const HOST_KEY: &str = "aispend:host";
const LEASE_PREFIX: &str = "aispend:lease:";
/// CAS attempts before a reservation gives up (many workers racing).
const MAX_ATTEMPTS: usize = 16;
/// At most this many models are asked for on a poll.
pub const MAX_WANTS: usize = 64;

/// USD → pico-USD, rounded up (a reservation never comes out short).
pub fn pico_ceil(usd: f64) -> u64 {
    if usd.is_finite() && usd > 0.0 {
        (usd * 1e12).ceil() as u64
    } else {
        0
    }
}

/// Decimal digits only (no sign, no spaces), at most `u64::MAX`. Up to 19
/// digits cannot overflow, so they add up unchecked: a checked 64-bit
/// multiply is a 128-bit multiply call on wasm32 (≈100 instructions a digit).
fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    let (head, last) = match digits.split_at_checked(19) {
        Some((head, last)) => (head, last),
        None => (digits, &[][..]),
    };
    let mut n: u64 = 0;
    for &b in head {
        let d = b.wrapping_sub(b'0');
        if d >= 10 {
            return None;
        }
        n = n * 10 + u64::from(d);
    }
    for &b in last {
        let d = b.wrapping_sub(b'0');
        if d >= 10 {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(d))?;
    }
    Some(n)
}

pub fn usd(pico: u64) -> f64 {
    pico as f64 / 1e12
}

pub fn lease_key(budget_id: &str) -> String {
    format!("{LEASE_PREFIX}{budget_id}")
}

/// One budget's lease as kept in shared data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub seq: i64,
    pub period_start: String,
    pub allowance: u64,
    pub used: u64,
    /// Worst cases that did not fit since the last poll (pico-USD).
    pub demand: u64,
    pub expires_at_ms: u64,
}

impl Lease {
    /// The shared-data text, written digit by digit: `format!` with six
    /// arguments costs ≈3,000 wasm instructions, on every reservation and
    /// settlement.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.period_start.len() + 5 * 21);
        if self.seq < 0 {
            out.push(b'-');
        }
        crate::json::out::unsigned(&mut out, self.seq.unsigned_abs());
        out.push(b'\t');
        out.extend_from_slice(self.period_start.as_bytes());
        for n in [self.allowance, self.used, self.demand, self.expires_at_ms] {
            out.push(b'\t');
            crate::json::out::unsigned(&mut out, n);
        }
        out
    }

    /// Reads what `encode` wrote (anything else: `None`).
    pub fn decode(value: &[u8]) -> Option<Lease> {
        // Tab-separated fields, found many bytes at a time; `rest` is None
        // once the last field was taken.
        let mut rest = Some(value);
        let mut field = || -> Option<&[u8]> {
            let text = rest?;
            match crate::json::bytes::find_byte(text, b'\t') {
                Some(p) => {
                    rest = text.get(p + 1..);
                    text.get(..p)
                }
                None => {
                    rest = None;
                    Some(text)
                }
            }
        };
        let seq = field()?;
        let seq = match seq.split_first() {
            Some((b'-', digits)) => 0i64.checked_sub_unsigned(parse_u64(digits)?)?,
            _ => i64::try_from(parse_u64(seq)?).ok()?,
        };
        let period_start = std::str::from_utf8(field()?).ok()?.to_string();
        let lease = Lease {
            seq,
            period_start,
            allowance: parse_u64(field()?)?,
            used: parse_u64(field()?)?,
            demand: parse_u64(field()?)?,
            expires_at_ms: parse_u64(field()?)?,
        };
        rest.is_none().then_some(lease)
    }

    pub fn room(&self) -> u64 {
        self.allowance.saturating_sub(self.used)
    }
}

/// Per-token prices (USD) of one model, as the collector publishes them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input: f64,
    pub cached_input: f64,
    pub cache_write: f64,
    pub output: f64,
    pub max_output_tokens: Option<u64>,
}

impl Price {
    /// The dearest way an input token can be billed.
    pub fn input_max(&self) -> f64 {
        self.input.max(self.cached_input).max(self.cache_write)
    }

    /// What a call's tokens cost (input includes cache reads and writes).
    pub fn cost(&self, u: &crate::usage::Usage) -> f64 {
        let plain = u
            .input_tokens
            .saturating_sub(u.cached_input_tokens)
            .saturating_sub(u.cache_write_input_tokens);
        plain as f64 * self.input
            + u.cached_input_tokens as f64 * self.cached_input
            + u.cache_write_input_tokens as f64 * self.cache_write
            + u.output_tokens as f64 * self.output
    }
}

/// What this host knows of a model's price.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Priced {
    Known(Price),
    /// The collector has no price for it.
    Unknown,
}

/// A strict budget this host holds a lease of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrictBudget {
    pub budget_id: String,
    pub scope: Vec<(ScopeKey, String)>,
}

impl StrictBudget {
    fn matches(&self, p: &Principal) -> bool {
        !self.scope.is_empty()
            && self.scope.iter().all(|(key, value)| match key {
                ScopeKey::KeyId => *p.key_id == **value,
                ScopeKey::Tag(i) => p.tags.iter().any(|(t, v)| t == i && v == value),
                ScopeKey::Unknown => false,
            })
    }
}

/// A worker's decoded copy of the index and prices (re-decoded on change).
#[derive(Debug, Default)]
pub struct StrictView {
    index_cas: Option<u32>,
    prices_cas: Option<u32>,
    pub budgets: Vec<StrictBudget>,
    pub prices: HashMap<String, Priced>,
}

impl StrictView {
    pub fn update(&mut self, host: &mut dyn Host, schema: &TagSchema) {
        let (index, cas) = host.shared_data_get(INDEX_KEY);
        if cas.is_none() || cas != self.index_cas {
            self.index_cas = cas;
            self.budgets = index
                .as_deref()
                .map(|v| decode_index(v, schema))
                .unwrap_or_default();
        }
        let (prices, cas) = host.shared_data_get(PRICES_KEY);
        if cas.is_none() || cas != self.prices_cas {
            self.prices_cas = cas;
            self.prices = prices.as_deref().map(decode_prices).unwrap_or_default();
        }
    }

    /// The strict budgets whose scope covers `p`.
    pub fn matching(&self, p: &Principal) -> Vec<String> {
        self.budgets
            .iter()
            .filter(|b| b.matches(p))
            .map(|b| b.budget_id.clone())
            .collect()
    }

    pub fn price(&self, provider: &str, model: &str) -> Option<Priced> {
        self.prices.get(&format!("{provider}:{model}")).copied()
    }
}

pub fn decode_index(value: &[u8], schema: &TagSchema) -> Vec<StrictBudget> {
    let Ok(text) = std::str::from_utf8(value) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split('\t');
            let budget_id = fields.next().filter(|s| !s.is_empty())?.to_string();
            let scope = decode_scope(fields, schema);
            Some(StrictBudget { budget_id, scope })
        })
        .collect()
}

pub fn decode_prices(value: &[u8]) -> HashMap<String, Priced> {
    let Ok(text) = std::str::from_utf8(value) else {
        return HashMap::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut f = line.split('\t');
            let model = f.next()?.to_string();
            let first = f.next()?;
            if first == "-" {
                return Some((model, Priced::Unknown));
            }
            let num = |s: Option<&str>| {
                s.and_then(|s| s.parse::<f64>().ok())
                    .filter(|x| x.is_finite() && *x >= 0.0)
            };
            let input = num(Some(first))?;
            let price = Price {
                input,
                cached_input: num(f.next())?,
                cache_write: num(f.next())?,
                output: num(f.next())?,
                max_output_tokens: f.next().and_then(|s| s.parse().ok()).filter(|n| *n > 0),
            };
            Some((model, Priced::Known(price)))
        })
        .collect()
}

/// Why a reservation did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not even `min_output_tokens` fit.
    NoRoom,
    /// No lease, or it expired without renewal.
    NoLease,
    /// Shared data kept refusing the write.
    Contended,
}

/// What a call needs: a fixed part (its input, pico-USD) and a price per
/// output token (pico-USD, fractional), for up to `out_tokens`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Need {
    pub fixed: u64,
    pub per_out: f64,
    pub out_tokens: u64,
    pub min_out: u64,
}

impl Need {
    pub fn cost(&self, out: u64) -> u64 {
        self.fixed
            .saturating_add((self.per_out * out as f64).ceil() as u64)
    }

    /// The most output tokens that fit in `room` (capped at `out_tokens`).
    pub fn fitting(&self, room: u64) -> u64 {
        if room < self.fixed {
            return 0;
        }
        if self.per_out <= 0.0 {
            return self.out_tokens;
        }
        let n = ((room - self.fixed) as f64 / self.per_out).floor();
        let mut n = if n >= self.out_tokens as f64 {
            self.out_tokens
        } else {
            n as u64
        };
        // Float rounding: step down until the rounded-up cost fits.
        while n > 0 && self.cost(n) > room {
            n -= 1;
        }
        n
    }
}

/// One budget's reservation, to settle later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub budget_id: String,
    pub period_start: String,
    pub amount: u64,
}

/// Reserve `need` against `budget_id`'s lease at `now_ms`: all of it when
/// it fits, else as many output tokens as fit (at least `need.min_out`).
/// Returns the reservation and the output tokens it covers. A shortfall is
/// added to the lease's demand (the next poll asks for it).
pub fn reserve(
    host: &mut dyn Host,
    budget_id: &str,
    need: &Need,
    now_ms: u64,
) -> Result<(Reservation, u64), Refusal> {
    let key = lease_key(budget_id);
    for _ in 0..MAX_ATTEMPTS {
        let (value, cas) = host.shared_data_get(&key);
        let Some(mut lease) = value.as_deref().and_then(Lease::decode) else {
            return Err(Refusal::NoLease);
        };
        if now_ms >= lease.expires_at_ms {
            return Err(Refusal::NoLease);
        }
        let full = need.cost(need.out_tokens);
        let out = need.fitting(lease.room());
        let fits = lease.room() >= need.fixed && out >= need.min_out.min(need.out_tokens);
        let amount = if fits { need.cost(out) } else { 0 };
        if full > amount {
            lease.demand = lease.demand.saturating_add(full - amount);
        }
        lease.used = lease.used.saturating_add(amount);
        match host.shared_data_set(&key, &lease.encode(), cas) {
            Ok(()) if fits => {
                let r = Reservation {
                    budget_id: budget_id.to_string(),
                    period_start: lease.period_start,
                    amount,
                };
                return Ok((r, out));
            }
            Ok(()) => return Err(Refusal::NoRoom),
            Err(SharedDataError::CasMismatch) => continue,
            Err(SharedDataError::Other) => return Err(Refusal::Contended),
        }
    }
    Err(Refusal::Contended)
}

/// Settle a reservation to `actual` (pico-USD): the lease's `used` moves by
/// `actual - amount`. A reservation of an earlier period changes nothing
/// (that period's spend is the collector's now). Returns whether it landed.
pub fn settle(host: &mut dyn Host, r: &Reservation, actual: u64) -> bool {
    let key = lease_key(&r.budget_id);
    for _ in 0..MAX_ATTEMPTS {
        let (value, cas) = host.shared_data_get(&key);
        let Some(mut lease) = value.as_deref().and_then(Lease::decode) else {
            return false;
        };
        if lease.period_start != r.period_start {
            return true;
        }
        lease.used = lease.used.saturating_sub(r.amount).saturating_add(actual);
        match host.shared_data_set(&key, &lease.encode(), cas) {
            Ok(()) => return true,
            Err(SharedDataError::CasMismatch) => continue,
            Err(SharedDataError::Other) => return false,
        }
    }
    false
}

/// Ask the poller for `model`'s price (once per model per host).
pub fn want_price(host: &mut dyn Host, provider: &str, model: &str) {
    let line = format!("{provider}:{model}");
    if line.contains(['\n', '\t']) {
        return;
    }
    for _ in 0..4 {
        let (value, cas) = host.shared_data_get(WANTS_KEY);
        let text = value
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok())
            .unwrap_or("")
            .to_string();
        if text.lines().any(|l| l == line) || text.lines().count() >= MAX_WANTS {
            return;
        }
        let cas = if value.is_some() { cas } else { Some(0) };
        let next = format!("{text}{line}\n");
        match host.shared_data_set(WANTS_KEY, next.as_bytes(), cas) {
            Ok(()) | Err(SharedDataError::Other) => return,
            Err(SharedDataError::CasMismatch) => continue,
        }
    }
}

#[cfg(test)]
mod tests;
