//! Per-VM state: what the root context and every HTTP context of one VM
//! share (proxy-wasm runs them all on one thread), and how it survives a
//! reconfigure.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::controls::{self, caps::CapsView, limits::local::LocalCounts};
use crate::filter::Filter;
use crate::host::{Host, Metric};
use crate::jobs::shipper::Shipper;
use crate::request::key_registry::RegistryView;
use crate::request::record::IdGen;

#[derive(Debug)]
pub struct Shared {
    pub filter: Rc<Filter>,
    pub shipper: Rc<RefCell<Shipper>>,
    pub ids: Rc<RefCell<IdGen>>,
    /// This VM's decoded copy of the shared cap flags.
    pub caps: Rc<RefCell<CapsView>>,
    /// This VM's decoded copy of the shared key registry.
    pub registry: Rc<RefCell<RegistryView>>,
    /// Requests seen since the root last published `aispend_requests`: a
    /// hostcall per request for a counter is not worth its cost.
    pub requests: Rc<Cell<u64>>,
    /// Rate-limit counts of this VM not yet in the shared counters, and its
    /// copies of them (`controls::limits::local`).
    pub limit_counts: Rc<RefCell<LocalCounts>>,
}

impl Shared {
    /// Fresh per-VM state for `filter`, started at `now_ms`.
    pub fn new(filter: Filter, ids: IdGen, now_ms: u64) -> Self {
        Self::configure(None, filter, Rc::new(RefCell::new(ids)), now_ms)
    }

    /// The state for a new config. A reconfigure keeps the records already
    /// buffered (and a send in flight), the caps seen and the request count;
    /// the record ids continue from the same generator.
    pub fn configure(
        old: Option<Shared>,
        filter: Filter,
        ids: Rc<RefCell<IdGen>>,
        now_ms: u64,
    ) -> Self {
        // Counts still wait; the copies go (the limits may have changed).
        let limit_counts: Rc<RefCell<LocalCounts>> = old
            .as_ref()
            .map(|o| o.limit_counts.clone())
            .unwrap_or_default();
        if let Ok(mut t) = limit_counts.try_borrow_mut() {
            t.forget_seen();
        }
        let (shipper, caps, registry, requests) = match old {
            Some(old) => {
                if let Ok(mut s) = old.shipper.try_borrow_mut() {
                    s.reconfigure(filter.shipper_settings());
                }
                // The copy is kept (no key lockout meanwhile) and decoded
                // again at the next tick: static keys or tags may differ.
                if let Ok(mut r) = old.registry.try_borrow_mut() {
                    r.invalidate();
                }
                (old.shipper, old.caps, old.registry, old.requests)
            }
            None => (
                Rc::new(RefCell::new(Shipper::new(filter.shipper_settings()))),
                Rc::new(RefCell::new(CapsView::new(now_ms))),
                Rc::default(),
                Rc::default(),
            ),
        };
        Shared {
            filter: Rc::new(filter),
            shipper,
            ids,
            caps,
            registry,
            requests,
            limit_counts,
        }
    }

    /// Log the config's warnings once (at configure) and count them.
    pub fn warn_config(&self, host: &mut dyn Host) {
        let warnings = self.filter.warnings();
        for w in &warnings {
            log::error!("aispend: {w}");
        }
        if !warnings.is_empty() {
            host.increment_metric(Metric::ConfigWarnings, warnings.len() as u64);
        }
    }

    /// Every record buffered so far, parsed, as the collector would get them.
    #[cfg(test)]
    pub fn take_records(&self) -> Vec<serde_json::Value> {
        let mut s = self.shipper.borrow_mut();
        let mut out = Vec::new();
        while let Some(batch) = s.poll(u64::MAX) {
            let v: serde_json::Value = serde_json::from_slice(batch.body).unwrap_or_default();
            out.extend(v["records"].as_array().into_iter().flatten().cloned());
            s.on_result(
                u64::MAX,
                crate::jobs::shipper::Outcome::Acked { rejected: 0 },
            );
        }
        out
    }

    /// Take in the shared cap flags (see `controls::sync_caps_view`).
    pub fn sync_caps(&self, host: &mut dyn Host) {
        controls::sync_caps_view(host, &self.filter, &self.caps);
    }

    /// Take in the shared key registry (see `jobs::registry::sync_view`).
    pub fn sync_registry(&self, host: &mut dyn Host) {
        crate::jobs::registry::sync_view(host, &self.filter, &self.registry);
    }

    /// Publish the requests counted since the last call.
    pub fn publish_requests(&self, host: &mut dyn Host) {
        let n = self.requests.replace(0);
        if n > 0 {
            host.increment_metric(Metric::Requests, n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(max_batch: usize) -> Filter {
        Filter::from_json(
            format!(r#"{{"collector":{{"cluster":"c","token":"t","max_batch":{max_batch}}}}}"#)
                .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn caps_without_a_token_is_counted_at_start() {
        use crate::host::memory::MemoryHost;
        let mut host = MemoryHost::with_request(&[]);
        Shared::new(filter(10), IdGen::new([1; 16]), 0).warn_config(&mut host);
        assert_eq!(host.metric(Metric::ConfigWarnings), 1);
        let with_token =
            Filter::from_json(br#"{"collector":{"cluster":"c","token":"t"},"caps":{"token":"r"}}"#)
                .unwrap();
        Shared::new(with_token, IdGen::new([1; 16]), 0).warn_config(&mut host);
        let off = Filter::from_json(
            br#"{"collector":{"cluster":"c","token":"t"},"caps":{"enabled":false}}"#,
        )
        .unwrap();
        Shared::new(off, IdGen::new([1; 16]), 0).warn_config(&mut host);
        assert_eq!(
            host.metric(Metric::ConfigWarnings),
            1,
            "nothing to warn about"
        );
    }

    #[test]
    fn a_reconfigure_keeps_buffered_records_and_takes_the_new_settings() {
        let first = Shared::new(filter(10), IdGen::new([1; 16]), 0);
        for i in 0..5 {
            first
                .shipper
                .borrow_mut()
                .push(format!("{{\"i\":{i}}}").as_bytes());
        }
        first.requests.set(3);
        let ids = first.ids.clone();
        let second = Shared::configure(Some(first), filter(2), ids, 10);
        assert_eq!(second.shipper.borrow().buffered(), 5, "no record lost");
        assert_eq!(second.requests.get(), 3);
        let mut shipper = second.shipper.borrow_mut();
        let batch = shipper.poll(10).unwrap();
        assert_eq!(batch.records, 2, "the new max_batch applies");
        assert_eq!(second.filter.config.collector.max_batch, 2);
    }
}
