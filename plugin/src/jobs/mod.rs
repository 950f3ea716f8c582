//! Background work on the root context's tick, run by one scheduler:
//! shipping usage records to the collector (`ship`, over the `shipper`
//! buffer), polling budget caps (`caps_poll`) and the key registry
//! (`registry`), writing rate-limit tokens that wait (`limits_flush`). Each job is a small type
//! implementing [`Job`]; a new poller (key registry, leases) is one more
//! job in [`Scheduler::standard`], with no change to the glue.
//!
//! The glue only forwards: `on_tick` → [`Scheduler::on_tick`], a dispatch
//! answer → [`Scheduler::on_answer`], the host's shutdown →
//! [`Scheduler::on_shutdown`]. Everything here runs against the `Host`
//! trait and is tested with the in-memory host.

pub mod caps_poll;
pub mod limits_flush;
pub mod registry;
pub mod ship;
pub mod shipper;
pub mod strict_poll;

use crate::filter::Filter;
use crate::host::Host;
use crate::vm::Shared;

/// The answer to a call a job made: `status` is None when the call failed
/// or timed out without one.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    pub status: Option<u32>,
    pub body: &'a [u8],
}

/// What a job wants after an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Its regular period.
    Later,
    /// Again as soon as the host allows (a backlog to drain).
    Now,
}

pub trait Job {
    fn name(&self) -> &'static str;
    /// How often the job runs under `filter`; None when it is switched off.
    fn period_ms(&self, filter: &Filter) -> Option<u64>;
    /// Do the work that is due; the token of the call it started, if any.
    fn run(&mut self, host: &mut dyn Host, shared: &Shared) -> Option<u32>;
    /// Settle the answer to the call `run` started.
    fn on_answer(&mut self, host: &mut dyn Host, shared: &Shared, answer: Answer<'_>) -> Next;
    /// After every tick, whether or not the job ran (publish counters, take
    /// in shared state).
    fn after_tick(&mut self, _host: &mut dyn Host, _shared: &Shared) {}
    /// The VM is shutting down and the host waits: start the last work.
    /// Returns the token of a call started, if any.
    fn on_shutdown(&mut self, _host: &mut dyn Host, _shared: &Shared) -> Option<u32> {
        None
    }
    /// The VM is going and the host will not wait (Kong): no call can be
    /// made any more; settle and publish what is left.
    fn on_final(&mut self, _host: &mut dyn Host, _shared: &Shared) {}
    /// While shutting down: after an answer, the next call to make, if any.
    fn continue_shutdown(
        &mut self,
        _host: &mut dyn Host,
        _shared: &Shared,
        _answer: Answer<'_>,
    ) -> Option<u32> {
        None
    }
}

/// Ticks may come slightly early: a job is due within 1/8 of its period.
pub fn slack_ms(period_ms: u64) -> u64 {
    period_ms / 8
}

struct Slot {
    job: Box<dyn Job>,
    next_due_ms: u64,
    in_flight: Option<u32>,
}

/// Whether the host is done with the VM's background work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Nothing pending: the VM may go now.
    Done,
    /// Calls are still out; the host must wait for them.
    Waiting,
}

pub struct Scheduler {
    slots: Vec<Slot>,
    shutting_down: bool,
}

impl Scheduler {
    pub fn new(jobs: Vec<Box<dyn Job>>) -> Self {
        Scheduler {
            slots: jobs
                .into_iter()
                .map(|job| Slot {
                    job,
                    next_due_ms: 0,
                    in_flight: None,
                })
                .collect(),
            shutting_down: false,
        }
    }

    /// Every job of the filter: records first (the call a slow collector
    /// must not delay), then the caps poll, then the key registry poll.
    pub fn standard() -> Self {
        Scheduler::new(vec![
            Box::new(ship::ShipJob::default()),
            Box::new(caps_poll::CapsPoller::default()),
            Box::new(registry::RegistryPoller::default()),
            Box::new(limits_flush::LimitsFlush),
        ])
    }

    /// The root tick period serving every job's period: their greatest
    /// common divisor, so each runs on time (200 and 300 ms → 100), or the
    /// shortest when the divisor would make ticks needlessly frequent.
    pub fn tick_period_ms(&self, filter: &Filter) -> u64 {
        let periods: Vec<u64> = self
            .slots
            .iter()
            .filter_map(|s| s.job.period_ms(filter))
            .collect();
        let shortest = periods.iter().copied().min().unwrap_or(1000);
        let gcd = periods.iter().copied().fold(0, |a, b| {
            let (mut a, mut b) = (a, b);
            while b != 0 {
                (a, b) = (b, a % b);
            }
            a
        });
        let period = if gcd >= 50 { gcd } else { shortest };
        match filter.profile.max_tick_ms() {
            Some(max) => period.min(max),
            None => period,
        }
    }

    pub fn on_tick(&mut self, host: &mut dyn Host, shared: &Shared) {
        if self.shutting_down {
            return;
        }
        let now = host.now_ms();
        for slot in &mut self.slots {
            let Some(period) = slot.job.period_ms(&shared.filter) else {
                continue;
            };
            if slot.in_flight.is_some() || now.saturating_add(slack_ms(period)) < slot.next_due_ms {
                continue;
            }
            slot.next_due_ms = now.saturating_add(period);
            slot.in_flight = slot.job.run(host, shared);
        }
        for slot in &mut self.slots {
            slot.job.after_tick(host, shared);
        }
    }

    /// Route a dispatch answer to the job that made the call. Returns
    /// whether shutdown work is now complete (the glue then tells the host).
    pub fn on_answer(
        &mut self,
        host: &mut dyn Host,
        shared: &Shared,
        token: u32,
        answer: Answer<'_>,
    ) -> Shutdown {
        let dispatch_here = shared.filter.profile.dispatch_in_call_response();
        if let Some(slot) = self.slots.iter_mut().find(|s| s.in_flight == Some(token)) {
            slot.in_flight = None;
            if self.shutting_down {
                slot.in_flight = slot.job.continue_shutdown(host, shared, answer);
            } else if slot.job.on_answer(host, shared, answer) == Next::Now {
                if dispatch_here {
                    slot.in_flight = slot.job.run(host, shared);
                } else {
                    // Kong: never dispatch from inside a call's response;
                    // the next tick runs it.
                    slot.next_due_ms = 0;
                }
            }
        }
        self.status()
    }

    /// The host is stopping the VM (Envoy's drain or SIGTERM): give every
    /// job its last run. Only hosts that wait for the VM's `done` get
    /// `Waiting` (Kong's engine traps on `proxy_done`).
    pub fn on_shutdown(&mut self, host: &mut dyn Host, shared: &Shared) -> Shutdown {
        if !shared.filter.profile.waits_for_done() {
            for slot in &mut self.slots {
                slot.job.on_final(host, shared);
            }
            return Shutdown::Done;
        }
        self.shutting_down = true;
        for slot in &mut self.slots {
            if slot.in_flight.is_none() {
                slot.in_flight = slot.job.on_shutdown(host, shared);
            }
        }
        self.status()
    }

    fn status(&self) -> Shutdown {
        if self.shutting_down && self.slots.iter().all(|s| s.in_flight.is_none()) {
            Shutdown::Done
        } else {
            Shutdown::Waiting
        }
    }
}

#[cfg(test)]
mod tests;
