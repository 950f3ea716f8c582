//! The root context's side of caps: on its tick, poll the collector's
//! `GET /v1/caps` (with `If-None-Match`) and keep the answer in shared data
//! for every worker's request path. Pure over `Host`, so it is unit-tested.
//!
//! Workers share one copy: a worker skips its poll when the shared copy is
//! younger than the poll interval (another worker fetched it), so a gateway
//! with N workers makes about one poll per interval, at most N.

use crate::controls::caps::{self, SHARED_KEY};
use crate::filter::Filter;
use crate::host::{DispatchError, Host, Metric, SharedDataError};
use crate::jobs::strict_poll;
use crate::jobs::{slack_ms, Answer, Job, Next};
use crate::vm::Shared;

/// CAS attempts when writing the flags (only pollers write this key).
const MAX_ATTEMPTS: usize = 4;

#[derive(Debug, Default)]
pub struct CapsPoller {
    /// Token of the poll in flight.
    in_flight: Option<u32>,
    /// The shared copy vanished (Kong zones evict): poll again at once.
    poll_again: bool,
    /// The models whose prices the poll in flight asked for.
    asked: Vec<String>,
    /// The poll in flight named this host (its answer carries leases).
    named: bool,
    /// The host id this worker read on an earlier tick (`strict_poll::host_id`).
    seen_host: Option<String>,
    /// The host's poll claim this root holds while its named poll is in
    /// flight (`strict_poll::claim`).
    claimed: Option<String>,
}

impl Job for CapsPoller {
    fn name(&self) -> &'static str {
        "caps_poll"
    }

    fn period_ms(&self, filter: &Filter) -> Option<u64> {
        let c = &filter.config.caps;
        c.enabled.then_some(c.poll_interval_ms)
    }

    fn run(&mut self, host: &mut dyn Host, shared: &Shared) -> Option<u32> {
        let host_id = if shared.filter.config.caps.strict.enabled && strict_poll::wanted(host) {
            let now = host.now_ms();
            let fresh = shared
                .ids
                .try_borrow_mut()
                .map(|mut ids| ids.next_id(now))
                .unwrap_or([b'0'; 32]);
            strict_poll::host_id(host, &shared.filter, &fresh, &mut self.seen_host)
        } else {
            None
        };
        self.tick_as(host, &shared.filter, host_id.as_deref())
    }

    fn on_answer(&mut self, host: &mut dyn Host, shared: &Shared, answer: Answer<'_>) -> Next {
        self.on_response(host, answer.status, Some(answer.body));
        // This worker's request path sees its own poll right away.
        shared.sync_caps(host);
        if std::mem::take(&mut self.poll_again) {
            Next::Now
        } else {
            Next::Later
        }
    }

    fn after_tick(&mut self, host: &mut dyn Host, shared: &Shared) {
        // Flags another worker fetched reach this VM's request path here.
        shared.sync_caps(host);
    }
}

impl CapsPoller {
    pub fn is_polling(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Whether `token` answers our poll (the root also gets ingest answers).
    pub fn owns(&self, token: u32) -> bool {
        self.in_flight == Some(token)
    }

    /// Start a poll if one is due. Returns the call's token.
    pub fn tick(&mut self, host: &mut dyn Host, filter: &Filter) -> Option<u32> {
        self.tick_as(host, filter, None)
    }

    /// `tick`, as the gateway host `host_id` when it holds strict leases:
    /// the poll then reports its leases and asks for prices (never a 304).
    pub fn tick_as(
        &mut self,
        host: &mut dyn Host,
        filter: &Filter,
        host_id: Option<&str>,
    ) -> Option<u32> {
        let c = &filter.config.caps;
        if !c.enabled || self.in_flight.is_some() {
            return None;
        }
        let now = host.now_ms();
        // When it runs is the scheduler's business; whether another worker
        // fetched the flags within this interval is this job's.
        let due_after = c.poll_interval_ms - slack_ms(c.poll_interval_ms);
        let (value, _) = host.shared_data_get(SHARED_KEY);
        let shared = value.as_deref().and_then(caps::split);
        if shared.is_some_and(|(fetched, _, _)| now.saturating_sub(fetched) < due_after) {
            return None;
        }
        let col = &filter.config.collector;
        // An answer older than the staleness limit is worthless anyway.
        let timeout = col.timeout_ms.min(c.stale_after_ms).max(1);
        // One named poll per host at a time: without the claim, this tick
        // polls unnamed (flags only; another root brings the leases).
        let host_id = match host_id {
            Some(id) => {
                self.claimed = strict_poll::claim(host, id, now, now.saturating_add(timeout));
                self.claimed.as_ref().map(|_| id)
            }
            None => None,
        };
        let auth = c.token.as_ref().map(|t| format!("Bearer {t}"));
        self.named = host_id.is_some();
        let path = match host_id {
            Some(id) => {
                let (query, asked) = strict_poll::query(host, id, &c.strict.models);
                self.asked = asked;
                format!("{}?{query}", c.path)
            }
            None => c.path.clone(),
        };
        let mut headers = vec![
            (":method", "GET"),
            (":path", path.as_str()),
            (":authority", c.authority(col)),
            ("accept", "application/json"),
        ];
        if let Some(auth) = &auth {
            headers.push(("authorization", auth.as_str()));
        }
        if let Some((_, version, _)) = shared.filter(|(_, v, _)| !v.is_empty() && host_id.is_none())
        {
            headers.push(("if-none-match", version));
        }
        let target = c.cluster(col);
        host.increment_metric(Metric::CapsPolls, 1);
        match host.dispatch(target, &headers, b"", timeout) {
            Ok(token) => {
                self.in_flight = Some(token);
                Some(token)
            }
            Err(DispatchError) => {
                log::warn!("aispend: cannot dispatch caps poll to {target}");
                host.increment_metric(Metric::CapsPollFailures, 1);
                if let Some(claimed) = self.claimed.take() {
                    strict_poll::release(host, &claimed);
                }
                None
            }
        }
    }

    /// Settle the poll: 200 replaces the flags, 304 only renews their
    /// fetched-at time, anything else keeps the old flags (they age toward
    /// `stale_after_ms`). Returns whether the shared copy was renewed.
    pub fn on_response(
        &mut self,
        host: &mut dyn Host,
        status: Option<u32>,
        body: Option<&[u8]>,
    ) -> bool {
        self.in_flight = None;
        let now = host.now_ms();
        // Whatever the answer, the next tick may name the host again (after
        // the leases below landed, so it reports them).
        let claimed = self.claimed.take();
        let renewed = match status {
            Some(200) => match caps::from_collector(body.unwrap_or_default()) {
                Ok((version, flags)) => {
                    let asked = std::mem::take(&mut self.asked);
                    // Only an answer to a poll naming this host carries its leases.
                    if std::mem::take(&mut self.named) {
                        if let Err(e) =
                            strict_poll::apply(host, body.unwrap_or_default(), &asked, now)
                        {
                            log::warn!("aispend: bad leases in the /v1/caps answer: {e}");
                        }
                    }
                    write(host, &caps::encode(now, &version, &flags))
                }
                Err(e) => {
                    log::warn!("aispend: bad /v1/caps answer: {e}");
                    false
                }
            },
            Some(304) => {
                let (value, _) = host.shared_data_get(SHARED_KEY);
                match value.as_deref().and_then(caps::split) {
                    Some((_, version, flags)) => write(host, &caps::encode(now, version, flags)),
                    // Evicted meanwhile (Kong zones can evict): poll afresh.
                    None => {
                        self.poll_again = true;
                        false
                    }
                }
            }
            Some(401 | 403) => {
                log::error!(
                    "aispend: the collector refused the caps poll ({status:?}): set caps.token to its read token; no budget cap is enforced until then"
                );
                false
            }
            other => {
                log::warn!("aispend: caps poll answered {other:?}");
                false
            }
        };
        if let Some(claimed) = claimed {
            strict_poll::release(host, &claimed);
        }
        if !renewed {
            host.increment_metric(Metric::CapsPollFailures, 1);
        }
        renewed
    }
}

/// Replace the shared flags (get for the cas, then set; create when absent).
fn write(host: &mut dyn Host, value: &[u8]) -> bool {
    for _ in 0..MAX_ATTEMPTS {
        let (current, cas) = host.shared_data_get(SHARED_KEY);
        // Kong: cas 0 creates only if absent; Envoy: 0 writes unconditionally.
        let cas = if current.is_some() { cas } else { Some(0) };
        match host.shared_data_set(SHARED_KEY, value, cas) {
            Ok(()) => return true,
            Err(SharedDataError::CasMismatch) => continue,
            Err(SharedDataError::Other) => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests;
