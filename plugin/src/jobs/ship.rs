//! The shipping job: every flush interval send the next batch of usage
//! records to the collector's `POST /v1/records`, settle it when the answer
//! (or the failure) comes, drain a backlog batch after batch, and publish
//! the shipper's counters as host metrics. On shutdown (where the host
//! waits), everything still buffered goes out, backoff or not.

use crate::filter::Filter;
use crate::host::{DispatchError, Host, Metric};
use crate::jobs::shipper::{Counters, Outcome, Shipper};
use crate::jobs::{Answer, Job, Next};
use crate::vm::Shared;

#[derive(Debug, Default)]
pub struct ShipJob {
    /// Counters as last published (metrics are deltas).
    published: Counters,
}

impl ShipJob {
    fn publish(&mut self, host: &mut dyn Host, shared: &Shared) {
        if let Ok(shipper) = shared.shipper.try_borrow() {
            let now = shipper.counters();
            let dropped = now.dropped.saturating_sub(self.published.dropped);
            if dropped > 0 {
                // Counted in aispend_records_dropped; said once per tick too.
                log::error!(
                    "aispend: {dropped} usage records dropped: the buffer (collector.max_buffer) was full; raise collector.max_batch or check the collector"
                );
            }
            publish_metrics(host, &mut self.published, now);
        }
        shared.publish_requests(host);
    }
}

impl Job for ShipJob {
    fn name(&self) -> &'static str {
        "ship"
    }

    fn period_ms(&self, filter: &Filter) -> Option<u64> {
        Some(filter.config.collector.flush_interval_ms)
    }

    fn run(&mut self, host: &mut dyn Host, shared: &Shared) -> Option<u32> {
        let mut shipper = shared.shipper.try_borrow_mut().ok()?;
        flush(host, &shared.filter, &mut shipper)
    }

    fn on_answer(&mut self, host: &mut dyn Host, shared: &Shared, answer: Answer<'_>) -> Next {
        let Ok(mut shipper) = shared.shipper.try_borrow_mut() else {
            return Next::Later;
        };
        let outcome = on_response(host, &mut shipper, answer.status, answer.body);
        let backlog = shipper.buffered() >= shared.filter.config.collector.max_batch;
        match outcome {
            // Drain a backlog (after an outage) faster than one batch per
            // flush interval; a split batch goes on at once too.
            Outcome::Acked { .. } if backlog => Next::Now,
            Outcome::Refused => Next::Now,
            _ => Next::Later,
        }
    }

    fn after_tick(&mut self, host: &mut dyn Host, shared: &Shared) {
        self.publish(host, shared);
    }

    fn on_shutdown(&mut self, host: &mut dyn Host, shared: &Shared) -> Option<u32> {
        let token = {
            let mut shipper = shared.shipper.try_borrow_mut().ok()?;
            send(host, &shared.filter, &mut shipper, None)
        };
        log::warn!("aispend: shutting down; shipping the records still buffered");
        token
    }

    fn on_final(&mut self, host: &mut dyn Host, shared: &Shared) {
        if let Ok(mut shipper) = shared.shipper.try_borrow_mut() {
            let lost = shipper.abandon();
            if lost > 0 {
                log::error!(
                    "aispend: the host stops the VM without waiting; {lost} buffered records lost"
                );
            }
        }
        // Counted in aispend_records_dropped, so emitted = stored + dropped holds.
        self.publish(host, shared);
    }

    fn continue_shutdown(
        &mut self,
        host: &mut dyn Host,
        shared: &Shared,
        answer: Answer<'_>,
    ) -> Option<u32> {
        let token = {
            let mut shipper = shared.shipper.try_borrow_mut().ok()?;
            let outcome = on_response(host, &mut shipper, answer.status, answer.body);
            if outcome == Outcome::Retry {
                // No retry while the host waits: what is left is lost, and counted.
                let lost = shipper.abandon();
                log::error!("aispend: collector unreachable at shutdown; {lost} records lost");
                None
            } else {
                send(host, &shared.filter, &mut shipper, None)
            }
        };
        self.publish(host, shared);
        token
    }
}

/// Send the next batch if the shipper has one due. Returns the call's token.
pub fn flush(host: &mut dyn Host, filter: &Filter, shipper: &mut Shipper) -> Option<u32> {
    let now = host.now_ms();
    send(host, filter, shipper, Some(now))
}

/// `POST /v1/records` with the batch due at `due` (None: the next batch
/// regardless of backoff); a refused dispatch settles it as a retry.
fn send(
    host: &mut dyn Host,
    filter: &Filter,
    shipper: &mut Shipper,
    due: Option<u64>,
) -> Option<u32> {
    let batch = match due {
        Some(now) => shipper.poll(now)?,
        None => shipper.poll_now()?,
    };
    let body = batch.body;
    let now = host.now_ms();
    let c = &filter.config.collector;
    let auth = format!("Bearer {}", c.token);
    let headers = [
        (":method", "POST"),
        (":path", c.path.as_str()),
        (":authority", c.authority()),
        ("content-type", "application/json"),
        ("authorization", auth.as_str()),
    ];
    let target = c.cluster.as_str();
    match host.dispatch(target, &headers, body, c.timeout_ms) {
        Ok(token) => Some(token),
        Err(DispatchError) => {
            // No call was started (unknown cluster, host refused): same as a
            // failed send, so the records wait with backoff.
            log::warn!("aispend: cannot dispatch to collector {target}");
            shipper.on_result(now, Outcome::Retry);
            None
        }
    }
}

/// What the collector's answer means for the batch: `status` is None when
/// the call failed or timed out without a response; `body` is its body.
pub fn outcome(status: Option<u32>, body: &[u8]) -> Outcome {
    match status {
        Some(200) => Outcome::Acked {
            rejected: rejected_in(body),
        },
        // Wrong token, timeout, rate limit: the batch is fine, try it later.
        Some(401 | 408 | 429) => Outcome::Retry,
        // The batch itself was refused (too large, not JSON, …).
        Some(400..=499) => Outcome::Refused,
        _ => Outcome::Retry,
    }
}

/// How many records a 200's `rejected` list names; the first reason is
/// logged (the collector names the field).
fn rejected_in(body: &[u8]) -> u64 {
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(default)]
        rejected: Vec<Rejected>,
    }
    #[derive(serde::Deserialize)]
    struct Rejected {
        #[serde(default)]
        index: Option<u64>,
        #[serde(default)]
        error: Option<String>,
    }
    let Ok(answer) = serde_json::from_slice::<Answer>(body) else {
        return 0;
    };
    if let Some(first) = answer.rejected.first() {
        log::warn!(
            "aispend: collector rejected {} record(s) of a batch; dropped, counted in aispend_records_rejected (record {}: {})",
            answer.rejected.len(),
            first.index.map_or_else(|| "?".to_string(), |i| i.to_string()),
            first.error.as_deref().unwrap_or("no reason given"),
        );
    }
    answer.rejected.len() as u64
}

/// Settle the outstanding batch from the collector's answer.
pub fn on_response(
    host: &mut dyn Host,
    shipper: &mut Shipper,
    status: Option<u32>,
    body: &[u8],
) -> Outcome {
    let now = host.now_ms();
    let outcome = outcome(status, body);
    match outcome {
        Outcome::Retry => {
            log::warn!("aispend: collector answered {status:?}; records kept for retry")
        }
        Outcome::Refused => log::warn!(
            "aispend: collector refused a batch ({status:?}): {}; splitting it",
            String::from_utf8_lossy(body.get(..body.len().min(200)).unwrap_or_default())
        ),
        Outcome::Acked { .. } => {}
    }
    shipper.on_result(now, outcome);
    outcome
}

/// Increment each metric by how much its counter grew since `published`.
pub fn publish_metrics(host: &mut dyn Host, published: &mut Counters, now: Counters) {
    let pairs = [
        (Metric::RecordsEmitted, published.emitted, now.emitted),
        (Metric::RecordsShipped, published.shipped, now.shipped),
        (Metric::RecordsRetried, published.retried, now.retried),
        (Metric::RecordsDropped, published.dropped, now.dropped),
        (Metric::RecordsRejected, published.rejected, now.rejected),
        (
            Metric::ShipFailures,
            published.failed_sends,
            now.failed_sends,
        ),
    ];
    for (metric, before, after) in pairs {
        if after > before {
            host.increment_metric(metric, after - before);
        }
    }
    *published = now;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::memory::MemoryHost;

    fn filter() -> Filter {
        Filter::from_json(
            br#"{"collector":{"cluster":"aispend_collector","authority":"collector","token":"tok","max_batch":2,"max_buffer":10}}"#,
        )
        .unwrap()
    }

    #[test]
    fn flush_posts_a_batch_with_auth_and_settles_on_200() {
        let f = filter();
        let mut s = Shipper::new(f.shipper_settings());
        for i in 0..3 {
            s.push(format!(r#"{{"n":{i}}}"#).as_bytes());
        }
        let mut host = MemoryHost::with_request(&[]);
        assert!(flush(&mut host, &f, &mut s).is_some());
        let (target, headers, body) = host.dispatched[0].clone();
        assert_eq!(target, "aispend_collector");
        assert!(headers.contains(&(":path".into(), "/v1/records".into())));
        assert!(headers.contains(&(":authority".into(), "collector".into())));
        assert!(headers.contains(&("authorization".into(), "Bearer tok".into())));
        assert_eq!(body, br#"{"records":[{"n":0},{"n":1}]}"#);
        // Nothing else goes out while that batch is outstanding.
        assert!(flush(&mut host, &f, &mut s).is_none());
        on_response(&mut host, &mut s, Some(200), b"{}");
        assert_eq!(s.counters().shipped, 2);
        assert!(flush(&mut host, &f, &mut s).is_some());
        assert_eq!(host.dispatched[1].2, br#"{"records":[{"n":2}]}"#);
    }

    #[test]
    fn dispatch_error_and_non_200_are_retried() {
        let f = filter();
        let mut s = Shipper::new(f.shipper_settings());
        s.push(b"{}");
        let mut host = MemoryHost::with_request(&[]);
        host.dispatch_fails = true;
        assert!(flush(&mut host, &f, &mut s).is_none());
        assert_eq!(s.counters().retried, 1);
        assert_eq!(s.buffered(), 1);
        host.dispatch_fails = false;
        host.now_ms += f.config.collector.flush_interval_ms;
        assert!(flush(&mut host, &f, &mut s).is_some());
        on_response(&mut host, &mut s, Some(503), b"");
        assert_eq!(s.counters().retried, 2);
        on_response(&mut host, &mut s, None, b"");
        assert_eq!(s.buffered(), 1, "a late duplicate answer changes nothing");
    }

    #[test]
    fn answers_map_to_outcomes() {
        let rejected = br#"{"accepted":1,"duplicates":0,"rejected":[{"index":1,"error":"field `model`: too long"}]}"#;
        assert_eq!(outcome(Some(200), rejected), Outcome::Acked { rejected: 1 });
        assert_eq!(
            outcome(Some(200), b"not json"),
            Outcome::Acked { rejected: 0 }
        );
        for refused in [400, 413, 415, 422] {
            assert_eq!(outcome(Some(refused), b""), Outcome::Refused, "{refused}");
        }
        for retry in [Some(401), Some(408), Some(429), Some(500), Some(503), None] {
            assert_eq!(outcome(retry, b""), Outcome::Retry, "{retry:?}");
        }
    }

    #[test]
    fn metrics_are_published_as_deltas() {
        let mut host = MemoryHost::with_request(&[]);
        let mut published = Counters::default();
        let now = Counters {
            emitted: 5,
            shipped: 3,
            ..Counters::default()
        };
        publish_metrics(&mut host, &mut published, now);
        publish_metrics(&mut host, &mut published, Counters { emitted: 7, ..now });
        assert_eq!(host.metric(Metric::RecordsEmitted), 7);
        assert_eq!(host.metric(Metric::RecordsShipped), 3);
    }
}
