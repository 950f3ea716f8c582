//! This VM's share of its limited keys' counters: what it counted and not
//! yet wrote, and what it last saw in shared data.
//!
//! A request that reads and writes the shared counter (a sync) writes this
//! VM's waiting requests and tokens with its own count and keeps the
//! counter as written. Until the next sync the VM admits the key's requests
//! against that copy plus its own counts, without a shared-data call, as
//! long as it has admitted fewer than `1/SHARE` of the requests the limit
//! still had room for at the sync (and likewise for tokens). So W workers
//! admitting at once can pass a limit by at most (W − 1) × limit / SHARE,
//! and only while every worker is within its share; a key near its limit
//! (room below SHARE) is synced on every request, exactly as without the
//! table. The copy is kept for the window it was read in and at most one
//! flush interval: `jobs::limits_flush` writes what waits and forgets the
//! copies, so other workers see a VM's counts at most one flush interval
//! (1 s by default) later. Counts go into the window current when they are
//! written (never earlier: a limit is at worst applied a little long).

use std::rc::Rc;

use super::{admit_at, judge, sync, Admission, Clock, Counter};
use crate::host::profile::Profile;
use crate::host::Host;
use crate::request::identity::KeyLimits;

/// Most keys a VM keeps counts for at once; past it a key's requests are
/// synced one by one and its tokens written at the call's end.
pub const MAX_KEYS: usize = 64;

/// A sync lets the VM admit up to this fraction (1/SHARE) of the room it saw.
pub const SHARE: u64 = 32;

#[derive(Debug, Clone, Copy)]
struct Seen {
    /// The shared counter right after this VM's last sync.
    counter: Counter,
    /// Requests and tokens the VM may count on `counter` before it syncs.
    requests_share: u64,
    tokens_share: u64,
}

#[derive(Debug)]
struct Entry {
    key: Rc<str>,
    /// Counted here since the last sync, not yet in shared data.
    requests: u64,
    tokens: u64,
    seen: Option<Seen>,
}

#[derive(Debug, Default)]
pub struct LocalCounts {
    entries: Vec<Entry>,
}

impl LocalCounts {
    fn find(&self, key_id: &str) -> Option<usize> {
        self.entries.iter().position(|e| &*e.key == key_id)
    }

    /// The key's entry, created when there is room.
    fn entry(&mut self, key_id: &Rc<str>) -> Option<&mut Entry> {
        let i = match self.find(key_id) {
            Some(i) => i,
            None if self.entries.len() < MAX_KEYS => {
                self.entries.push(Entry {
                    key: key_id.clone(),
                    requests: 0,
                    tokens: 0,
                    seen: None,
                });
                self.entries.len() - 1
            }
            None => return None,
        };
        self.entries.get_mut(i)
    }

    /// (requests, tokens) counted here for `key_id` and not yet written.
    #[cfg(test)]
    pub fn waiting(&self, key_id: &str) -> (u64, u64) {
        self.find(key_id)
            .and_then(|i| self.entries.get(i))
            .map_or((0, 0), |e| (e.requests, e.tokens))
    }

    /// Keep a finished call's `tokens` for `key_id`; false when the table is
    /// full (the caller writes them now).
    pub fn add_tokens(&mut self, key_id: &Rc<str>, tokens: u64) -> bool {
        match self.entry(key_id) {
            Some(e) => {
                e.tokens = e.tokens.saturating_add(tokens);
                true
            }
            None => false,
        }
    }

    /// Every key's waiting (requests, tokens), emptying the table and
    /// forgetting the copies of the counters.
    pub fn take_all(&mut self) -> Vec<(Rc<str>, (u64, u64))> {
        std::mem::take(&mut self.entries)
            .into_iter()
            .filter(|e| (e.requests, e.tokens) != (0, 0))
            .map(|e| (e.key, (e.requests, e.tokens)))
            .collect()
    }

    /// Forget the copies (the limits may have changed); counts still wait.
    pub fn forget_seen(&mut self) {
        for e in &mut self.entries {
            e.seen = None;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Count one request against the key's limits at `now_ms`: within this VM's
/// share without a shared-data call, otherwise with a sync.
pub fn admit(
    host: &mut dyn Host,
    profile: Profile,
    table: &mut LocalCounts,
    key_id: &Rc<str>,
    limits: &KeyLimits,
    now_ms: u64,
) -> Admission {
    let Some(e) = table.entry(key_id) else {
        return admit_at(host, profile, key_id, limits, now_ms, (0, 0)).0;
    };
    let clock = Clock::at(now_ms, key_id);
    if let Some(seen) = e.seen {
        if seen.counter.window == clock.window
            && e.requests < seen.requests_share
            && e.tokens < seen.tokens_share
        {
            let view = seen.counter.plus(e.requests, e.tokens);
            if let Admission::Allowed(state) = judge(&view, limits, clock.elapsed) {
                if limits.requests_per_minute.is_some() {
                    e.requests += 1;
                }
                return Admission::Allowed(state);
            }
        }
    }
    let (admission, stored) = sync(host, profile, key_id, limits, clock, (e.requests, e.tokens));
    e.seen = stored.map(|counter| {
        // What waited is in the counter now.
        e.requests = 0;
        e.tokens = 0;
        Seen {
            counter,
            requests_share: share(
                limits.requests_per_minute,
                counter.prev_requests,
                counter.requests,
                clock.elapsed,
            ),
            tokens_share: share(
                limits.tokens_per_minute,
                counter.prev_tokens,
                counter.tokens,
                clock.elapsed,
            ),
        }
    });
    admission
}

/// This VM's share of the room a limit had at a sync (no limit: no bound).
fn share(limit: Option<u64>, prev: u64, current: u64, elapsed: u64) -> u64 {
    limit.map_or(u64::MAX, |l| {
        l.saturating_sub(super::estimate(prev, current, elapsed)) / SHARE
    })
}

#[cfg(test)]
mod tests;
