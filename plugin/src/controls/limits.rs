//! Per-key rate limits (CONTRACTS §6): requests and tokens per minute, counted in
//! the host's shared data so every worker of a gateway shares one counter.
//!
//! Window: fixed one-minute windows, shifted per key by an offset taken from
//! the key's hash (so all keys do not reset at the same instant), with a
//! sliding estimate `prev × (1 − elapsed fraction) + current` so a burst at a
//! window edge cannot get twice the limit through.
//!
//! A call's tokens are known only at its end. What a VM counts (requests
//! it admitted, tokens of finished calls) waits in its `local::LocalCounts`
//! and goes into the shared counter with the key's next sync or within one
//! flush interval of the records (`jobs::limits_flush`). Far from its limit
//! a key is synced once per share of its room (`local`), not per call; the
//! VM judges its own calls with its waiting counts included, and other
//! workers see them at most one flush interval (1 s by default) later.
//! Waiting counts go into the window current when they are written (never
//! earlier: a limit is at worst applied a little long, never short).
//!
//! Updates are compare-and-swap with bounded retries, written to work with
//! both hosts' CAS semantics (see `Profile::create_cas`): read (value, cas);
//! an existing key is written back with its cas; an absent key is created
//! with the profile's create cas (Kong: "only if absent", so a concurrent
//! creator makes us retry). Every failure degrades per `limits.failure_mode`.

use crate::config::FailureMode;
use crate::host::profile::Profile;
use crate::host::{Host, SharedDataError};
use crate::request::identity::KeyLimits;

pub const WINDOW_MS: u64 = 60_000;
/// CAS attempts before giving up (contention between workers is short-lived).
pub const MAX_ATTEMPTS: usize = 8;
/// Shared-data key prefix; no `/`, so in Kong it lives in the `*` shm_kv zone.
pub const KEY_PREFIX: &str = "aispend:rl:";

/// One key's counters as stored in shared data (5 × u64 little-endian).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counter {
    pub window: u64,
    pub requests: u64,
    pub tokens: u64,
    pub prev_requests: u64,
    pub prev_tokens: u64,
}

const ENCODED_LEN: usize = 40;

impl Counter {
    pub fn encode(&self) -> [u8; ENCODED_LEN] {
        let mut out = [0u8; ENCODED_LEN];
        let fields = [
            self.window,
            self.requests,
            self.tokens,
            self.prev_requests,
            self.prev_tokens,
        ];
        for (slot, v) in out.chunks_exact_mut(8).zip(fields) {
            slot.copy_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// None for anything that is not our encoding (then the key starts over).
    pub fn decode(bytes: &[u8]) -> Option<Counter> {
        if bytes.len() != ENCODED_LEN {
            return None;
        }
        let mut f = bytes
            .chunks_exact(8)
            .map(|c| <[u8; 8]>::try_from(c).map(u64::from_le_bytes).unwrap_or(0));
        Some(Counter {
            window: f.next()?,
            requests: f.next()?,
            tokens: f.next()?,
            prev_requests: f.next()?,
            prev_tokens: f.next()?,
        })
    }

    /// With `requests` and `tokens` more in the current window.
    pub fn plus(mut self, requests: u64, tokens: u64) -> Counter {
        self.requests = self.requests.saturating_add(requests);
        self.tokens = self.tokens.saturating_add(tokens);
        self
    }

    /// The counter as seen in `window`: the stored current window becomes the
    /// previous one, or everything is zero after a longer gap.
    pub fn rolled(self, window: u64) -> Counter {
        if self.window == window {
            self
        } else if self.window.checked_add(1) == Some(window) {
            Counter {
                window,
                requests: 0,
                tokens: 0,
                prev_requests: self.requests,
                prev_tokens: self.tokens,
            }
        } else {
            Counter {
                window,
                ..Counter::default()
            }
        }
    }
}

/// Where a key stands within its own window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    pub window: u64,
    /// Milliseconds since the key's window started (0..WINDOW_MS).
    pub elapsed: u64,
}

impl Clock {
    pub fn at(now_ms: u64, key_id: &str) -> Clock {
        let shifted = now_ms.wrapping_add(window_offset(key_id));
        Clock {
            window: shifted / WINDOW_MS,
            elapsed: shifted % WINDOW_MS,
        }
    }
}

/// FNV-1a of the key id, spread over the window: each key resets at its own
/// moment of the minute.
pub fn window_offset(key_id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h % WINDOW_MS
}

/// Sliding estimate of usage over the last minute (rounded up: a limit is
/// never exceeded through rounding).
pub fn estimate(prev: u64, current: u64, elapsed: u64) -> u64 {
    let remaining = WINDOW_MS.saturating_sub(elapsed) as u128;
    let decayed = (prev as u128 * remaining).div_ceil(WINDOW_MS as u128);
    (decayed as u64).saturating_add(current)
}

/// Milliseconds until `estimate` falls to `allowed` or below, given the
/// counts now and no new traffic.
pub fn wait_ms(prev: u64, current: u64, allowed: u64, elapsed: u64) -> u64 {
    let w = WINDOW_MS as u128;
    if current <= allowed {
        if prev == 0 {
            return 0;
        }
        // ceil(prev × (W − x) / W) ≤ allowed − current  ⇐  x ≥ W − (allowed − current)·W/prev
        let room = (allowed - current) as u128;
        let x = w.saturating_sub(room * w / prev as u128);
        (x as u64).saturating_sub(elapsed)
    } else {
        // The current count only decays once it is the previous window.
        let room = allowed as u128;
        let x = w.saturating_sub(room * w / current as u128);
        WINDOW_MS.saturating_sub(elapsed).saturating_add(x as u64)
    }
}

/// A limited key's standing, for the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateState {
    pub limits: KeyLimits,
    pub remaining_requests: u64,
    pub remaining_tokens: u64,
}

impl RateState {
    /// OpenAI's header names (CONTRACTS §5), only for the limits the key has.
    pub fn headers(&self, out: &mut Vec<(&'static str, String)>) {
        if let Some(rpm) = self.limits.requests_per_minute {
            out.push(("x-ratelimit-limit-requests", rpm.to_string()));
            out.push((
                "x-ratelimit-remaining-requests",
                self.remaining_requests.to_string(),
            ));
        }
        if let Some(tpm) = self.limits.tokens_per_minute {
            out.push(("x-ratelimit-limit-tokens", tpm.to_string()));
            out.push((
                "x-ratelimit-remaining-tokens",
                self.remaining_tokens.to_string(),
            ));
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed(RateState),
    Limited {
        state: RateState,
        retry_after_s: u64,
    },
    /// Shared data could not be updated (CAS retries exhausted, host error).
    Unenforced,
}

/// What one request does to its key's counter, decided from the counter.
pub(crate) fn judge(c: &Counter, limits: &KeyLimits, elapsed: u64) -> Admission {
    let used_requests = estimate(c.prev_requests, c.requests, elapsed);
    let used_tokens = estimate(c.prev_tokens, c.tokens, elapsed);
    let mut state = RateState {
        limits: *limits,
        remaining_requests: 0,
        remaining_tokens: 0,
    };
    let mut wait = 0;
    if let Some(rpm) = limits.requests_per_minute {
        // This request counts: it needs used + 1 ≤ rpm.
        if used_requests >= rpm {
            wait = wait.max(wait_ms(c.prev_requests, c.requests, rpm - 1, elapsed));
        }
        state.remaining_requests = rpm.saturating_sub(used_requests.saturating_add(1));
    }
    if let Some(tpm) = limits.tokens_per_minute {
        // Tokens are known only after a call: a key already at its budget
        // is stopped on its next call.
        if used_tokens >= tpm {
            wait = wait.max(wait_ms(c.prev_tokens, c.tokens, tpm - 1, elapsed));
        }
        state.remaining_tokens = tpm.saturating_sub(used_tokens);
    }
    let over = limits
        .requests_per_minute
        .is_some_and(|r| used_requests >= r)
        || limits.tokens_per_minute.is_some_and(|t| used_tokens >= t);
    if over {
        state.remaining_requests = limits
            .requests_per_minute
            .map_or(0, |r| r.saturating_sub(used_requests));
        Admission::Limited {
            state,
            retry_after_s: wait.div_ceil(1000).max(1),
        }
    } else {
        Admission::Allowed(state)
    }
}

/// Read-modify-write of one key's counter with CAS and bounded retries.
/// `update` sees the rolled counter and returns the new one, or `Err(out)` to
/// stop without writing.
fn cas_update<T>(
    host: &mut dyn Host,
    profile: Profile,
    key: &str,
    window: u64,
    mut update: impl FnMut(&Counter) -> Result<(Counter, T), T>,
) -> Option<T> {
    for _ in 0..MAX_ATTEMPTS {
        let (value, cas) = host.shared_data_get(key);
        let counter = value
            .as_deref()
            .and_then(Counter::decode)
            .unwrap_or_default()
            .rolled(window);
        let (next, out) = match update(&counter) {
            Ok(v) => v,
            Err(out) => return Some(out),
        };
        let cas = match (value.is_some(), cas) {
            (true, Some(cas)) => Some(cas),
            _ => profile.create_cas(),
        };
        match host.shared_data_set(key, &next.encode(), cas) {
            Ok(()) => return Some(out),
            Err(SharedDataError::CasMismatch) => continue,
            Err(SharedDataError::Other) => return None,
        }
    }
    None
}

pub fn shared_key(key_id: &str) -> String {
    let mut key = String::with_capacity(KEY_PREFIX.len() + key_id.len());
    key.push_str(KEY_PREFIX);
    key.push_str(key_id);
    key
}

/// Count one request against the key's limits, or say why not.
/// One shared-data get (+ one set when the request counts) in the common case.
pub fn admit(host: &mut dyn Host, profile: Profile, key_id: &str, limits: &KeyLimits) -> Admission {
    let now_ms = host.now_ms();
    admit_at(host, profile, key_id, limits, now_ms, (0, 0)).0
}

/// `admit` at `now_ms`, a clock the caller has already read, with this
/// VM's `pending` (requests, tokens) of the key not yet in the counter
/// (`local`): they count in the judgement and are written with the request.
/// Returns the admission and, when the request is allowed, the counter as
/// it now stands in shared data (pending and this request included).
pub fn admit_at(
    host: &mut dyn Host,
    profile: Profile,
    key_id: &str,
    limits: &KeyLimits,
    now_ms: u64,
    pending: (u64, u64),
) -> (Admission, Option<Counter>) {
    sync(
        host,
        profile,
        key_id,
        limits,
        Clock::at(now_ms, key_id),
        pending,
    )
}

/// `admit_at` where the caller has already placed the key in its window.
pub(crate) fn sync(
    host: &mut dyn Host,
    profile: Profile,
    key_id: &str,
    limits: &KeyLimits,
    clock: Clock,
    pending: (u64, u64),
) -> (Admission, Option<Counter>) {
    let key = shared_key(key_id);
    let counts_requests = limits.requests_per_minute.is_some();
    let result = cas_update(host, profile, &key, clock.window, |c| {
        let seen = c.plus(pending.0, pending.1);
        match judge(&seen, limits, clock.elapsed) {
            Admission::Allowed(state) => {
                let mut next = seen;
                if counts_requests {
                    next.requests = next.requests.saturating_add(1);
                }
                if next == *c {
                    // A tokens-only key with nothing pending: nothing to add.
                    return Err((Admission::Allowed(state), Some(next)));
                }
                Ok((next, (Admission::Allowed(state), Some(next))))
            }
            // A limited request is not counted (what is pending waits for
            // the flush).
            other => Err((other, None)),
        }
    });
    result.unwrap_or((Admission::Unenforced, None))
}

/// Add a finished call's tokens to the key's counter. Returns false when the
/// update could not be made (counted as unenforced by the caller).
pub fn add_tokens(host: &mut dyn Host, profile: Profile, key_id: &str, tokens: u64) -> bool {
    let now_ms = host.now_ms();
    add_counts_at(host, profile, key_id, (0, tokens), now_ms)
}

/// Add (requests, tokens) this VM counted to the key's counter at `now_ms`,
/// a clock the caller has already read.
pub fn add_counts_at(
    host: &mut dyn Host,
    profile: Profile,
    key_id: &str,
    counts: (u64, u64),
    now_ms: u64,
) -> bool {
    if counts == (0, 0) {
        return true;
    }
    let clock = Clock::at(now_ms, key_id);
    let key = shared_key(key_id);
    cas_update(host, profile, &key, clock.window, |c| {
        Ok((c.plus(counts.0, counts.1), ()))
    })
    .is_some()
}

/// Whether an unenforceable limit lets the request through.
pub fn open_on_failure(mode: FailureMode) -> bool {
    mode == FailureMode::FailOpen
}

pub mod local;

#[cfg(test)]
mod tests;
