//! One call on a strict scope (SPEC §6): bound its worst-case cost, reserve
//! it against this host's leases, lower its output limit to what fits, and
//! settle to the real cost when its usage arrives. Plain logic over `Host`
//! (the leases live in shared data: `controls::lease`).
//!
//! The worst case of a call, in USD:
//! - input ≤ (body bytes + `media_tokens` × media parts + 64) tokens at the
//!   model's dearest input price (plain, cache read or cache write). Text is
//!   tokenized into tokens of at least one byte, and the body's JSON holds
//!   every byte of the prompt's text (escaped, so never fewer bytes); tool
//!   definitions and tool results are text in the body too. Images, files
//!   and audio passed by URL or id are not bounded by their bytes: each part
//!   counts `caps.strict.media_tokens`. The 64 cover the provider's per-call
//!   message framing. Context the provider keeps between calls (a previous
//!   response, a conversation, a stored prompt, a Gemini cache) is not in
//!   the body either: a call naming one counts `caps.strict.context_tokens`.
//! - output ≤ the call's output limit, else the model's maximum (from the
//!   collector's price table), else `caps.strict.default_output_tokens`,
//!   which is then written into the body so the provider honours it; times
//!   the answers the call asks for (chat's `n`, Gemini's `candidateCount`:
//!   each answer may use the whole limit, and all are billed).

use crate::config::{FailureMode, StrictConfig, Unpriced};
use crate::controls::lease::{
    self, pico_ceil, usd, Need, Price, Priced, Refusal, Reservation, StrictView,
};
use crate::host::Host;
use crate::request::decision::Denial;
use crate::usage::output_limit::{self, Shape};
use crate::usage::{Route, Usage};

/// Tokens added to every input bound for message framing.
const FRAMING_TOKENS: u64 = 64;

pub const CLAMPED_HEADER: &str = "x-aispend-clamped-max-tokens";

/// What was reserved for one admitted call, to settle at its end.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub reservations: Vec<Reservation>,
    /// `None`: an unpriced model reserved a configured amount.
    pub price: Option<Price>,
}

impl Held {
    /// The largest reservation (what the record shows), in USD.
    pub fn reserved_usd(&self) -> f64 {
        usd(self
            .reservations
            .iter()
            .map(|r| r.amount)
            .max()
            .unwrap_or(0))
    }
}

/// The decision on a strict call's body.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    Admit {
        held: Held,
        /// The output limit written into the body, when lowered (the
        /// `x-aispend-clamped-max-tokens` value).
        clamped: Option<u64>,
        /// The body to send instead, when its output limit changed.
        body: Option<Vec<u8>>,
    },
    Deny(Denial),
    /// No lease and `fail_open`: the call passes unreserved (counted).
    Unenforced,
}

/// Everything `admit` reads besides the host.
pub struct Call<'a> {
    pub config: &'a StrictConfig,
    pub failure_mode: FailureMode,
    pub view: &'a StrictView,
    pub budgets: &'a [String],
    pub route: &'a Route,
    pub model: Option<&'a str>,
    pub body: &'a [u8],
    pub now_ms: u64,
}

pub fn admit(host: &mut dyn Host, call: &Call<'_>) -> Admission {
    let cfg = call.config;
    let provider = call.route.provider.as_str();
    let model = call.model.unwrap_or("");
    let priced = call.model.and_then(|m| call.view.price(provider, m));
    let price = match priced {
        Some(Priced::Known(p)) => Some(p),
        Some(Priced::Unknown) if cfg.unpriced == Unpriced::Reserve => None,
        Some(Priced::Unknown) => return Admission::Deny(Denial::unpriced_model(model)),
        None => {
            if call.model.is_some() {
                lease::want_price(host, provider, model);
            }
            if cfg.unpriced == Unpriced::Reserve || call.model.is_none() {
                None
            } else {
                return Admission::Deny(Denial::price_pending(model));
            }
        }
    };
    let shape = output_limit::shape(call.route);
    let output_limit::Asked {
        limit: asked,
        choices,
        kept_context,
    } = output_limit::asked(shape, call.body);
    let (need, inject) = match price {
        Some(p) => {
            let media = output_limit::media_refs(call.body);
            let input = (call.body.len() as u64)
                .saturating_add(media.saturating_mul(cfg.media_tokens))
                .saturating_add(if kept_context { cfg.context_tokens } else { 0 })
                .saturating_add(FRAMING_TOKENS);
            let (out, inject) = match (shape, asked, p.max_output_tokens) {
                (Shape::NoOutput, _, _) => (0, false),
                (_, Some(n), max) => (max.map_or(n, |m| n.min(m)), false),
                (_, None, Some(max)) => (max, false),
                (_, None, None) => (cfg.default_output_tokens, true),
            };
            // Each token of the limit may be written once per answer asked for.
            let choices = choices as f64;
            let need = Need {
                fixed: pico_ceil(input as f64 * p.input_max()),
                per_out: p.output * 1e12 * choices,
                out_tokens: out,
                min_out: cfg.min_output_tokens,
            };
            (need, inject)
        }
        None => (
            Need {
                fixed: pico_ceil(cfg.unpriced_reserve_usd),
                per_out: 0.0,
                out_tokens: 0,
                min_out: 0,
            },
            false,
        ),
    };
    let mut out = need.out_tokens;
    let mut held = Held {
        reservations: Vec::with_capacity(call.budgets.len()),
        price,
    };
    let mut unenforced = false;
    for budget in call.budgets {
        let this = Need {
            out_tokens: out,
            ..need
        };
        match lease::reserve(host, budget, &this, call.now_ms) {
            Ok((r, fits)) => {
                out = out.min(fits);
                held.reservations.push(r);
            }
            Err(Refusal::NoRoom) => {
                release(host, &held);
                return Admission::Deny(Denial::budget_no_room(budget, cfg.min_output_tokens));
            }
            Err(Refusal::NoLease | Refusal::Contended) => match call.failure_mode {
                FailureMode::FailOpen => unenforced = true,
                FailureMode::FailClosed => {
                    release(host, &held);
                    return Admission::Deny(Denial::budget_no_lease(budget));
                }
            },
        }
    }
    if held.reservations.is_empty() && unenforced {
        return Admission::Unenforced;
    }
    let lowered = price.is_some() && out < need.out_tokens;
    let (clamped, body) = if lowered || (inject && price.is_some()) {
        match output_limit::rewrite(shape, call.body, out) {
            Some(body) => (lowered.then_some(out), Some(body)),
            None if lowered => {
                // A limit we cannot write is a worst case we cannot bound.
                release(host, &held);
                let budget = call.budgets.first().map_or("", String::as_str);
                return Admission::Deny(Denial::budget_no_room(budget, cfg.min_output_tokens));
            }
            None => (None, None),
        }
    } else {
        (None, None)
    };
    Admission::Admit {
        held,
        clamped,
        body,
    }
}

/// Give back every reservation (an error, a reset, a refusal).
pub fn release(host: &mut dyn Host, held: &Held) {
    for r in &held.reservations {
        lease::settle(host, r, 0);
    }
}

/// Settle at the call's end; returns the settled cost (USD) for its record.
/// An answered call (status < 400) without usage keeps its reservation (the
/// provider may have billed what it streamed); a failed call costs what its
/// usage says (usually nothing). An unpriced model settles to 0, as the
/// collector counts it.
pub fn settle(host: &mut dyn Host, held: &Held, status: u32, usage: &Usage) -> f64 {
    let Some(price) = held.price else {
        release(host, held);
        return 0.0;
    };
    let no_usage = usage.input_tokens == 0 && usage.output_tokens == 0;
    let answered = (1..400).contains(&status);
    let mut settled = 0;
    for r in &held.reservations {
        let actual = if answered && no_usage {
            r.amount
        } else {
            pico_ceil(price.cost(usage))
        };
        settled = settled.max(actual);
        lease::settle(host, r, actual);
    }
    usd(settled)
}

#[cfg(test)]
mod tests;
