//! This VM's rate-limit counts into the shared counters: the requests and
//! tokens it counted for a key and has not written with a sync are written
//! within one flush interval, and its copies of the counters are dropped
//! (`controls::limits::local`). No call to the collector.

use crate::controls;
use crate::filter::Filter;
use crate::host::Host;
use crate::jobs::{Answer, Job, Next};
use crate::vm::Shared;

#[derive(Debug, Default)]
pub struct LimitsFlush;

impl LimitsFlush {
    fn flush(host: &mut dyn Host, shared: &Shared) {
        let waiting = match shared.limit_counts.try_borrow_mut() {
            Ok(mut t) if !t.is_empty() => t.take_all(),
            _ => return,
        };
        let now = host.now_ms();
        for (key_id, counts) in waiting {
            controls::write_counts(host, &shared.filter, &key_id, counts, now);
        }
    }
}

impl Job for LimitsFlush {
    fn name(&self) -> &'static str {
        "limits_flush"
    }

    /// Counts wait at most one flush interval of the records (1 s by
    /// default): the tick already serves it, and registry keys may carry
    /// limits the config does not show, so the job is always on.
    fn period_ms(&self, filter: &Filter) -> Option<u64> {
        Some(filter.config.collector.flush_interval_ms)
    }

    fn run(&mut self, host: &mut dyn Host, shared: &Shared) -> Option<u32> {
        Self::flush(host, shared);
        None
    }

    fn on_answer(&mut self, _host: &mut dyn Host, _shared: &Shared, _answer: Answer<'_>) -> Next {
        Next::Later
    }

    fn on_shutdown(&mut self, host: &mut dyn Host, shared: &Shared) -> Option<u32> {
        Self::flush(host, shared);
        None
    }

    fn on_final(&mut self, host: &mut dyn Host, shared: &Shared) {
        Self::flush(host, shared);
    }
}
