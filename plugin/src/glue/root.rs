//! Root context: parses the config (refusing to start on a bad one), owns
//! the VM's shipper and flushes it to the collector on every tick.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, MapType, MetricType};

use crate::controls::caps::CapsView;
use crate::filter::Filter;
use crate::host::{Host as _, Metric};
use crate::jobs::caps_poll::CapsPoller;
use crate::jobs::ship;
use crate::jobs::shipper::{Counters, Shipper};
use crate::request::flow::Shared;
use crate::request::record::IdGen;

use super::http::Http;
use super::proxy_host::{MetricIds, ProxyHost};

#[derive(Default)]
pub struct Root {
    shared: Option<Shared>,
    metrics: Option<MetricIds>,
    published: Counters,
    ids: Option<Rc<RefCell<IdGen>>>,
    caps: CapsPoller,
    /// The tick runs at the shorter of the flush and caps intervals; records
    /// still go out at most once per flush interval.
    next_flush_ms: u64,
}

impl Root {
    fn host(&mut self) -> ProxyHost {
        let metrics = self.metrics.get_or_insert_with(define_metrics).clone();
        ProxyHost { metrics }
    }

    fn flush(&mut self) {
        let mut host = self.host();
        let Some(shared) = &self.shared else { return };
        let now = host.now_ms();
        // A tick may come slightly early; allow 1/8 of the interval.
        let interval = shared.filter.config.collector.flush_interval_ms;
        if now.saturating_add(interval / 8) < self.next_flush_ms {
            return;
        }
        self.next_flush_ms = now.saturating_add(interval);
        if let Ok(mut shipper) = shared.shipper.try_borrow_mut() {
            ship::flush(&mut host, &shared.filter, &mut shipper);
            ship::publish_metrics(&mut host, &mut self.published, shipper.counters());
        }
    }

    fn poll_caps(&mut self) {
        let mut host = self.host();
        let Some(shared) = &self.shared else { return };
        self.caps.tick(&mut host, &shared.filter);
        // Flags another worker fetched reach this VM's request path here.
        shared.sync_caps(&mut host);
        shared.publish_requests(&mut host);
    }
}

fn define_metrics() -> MetricIds {
    let mut ids = [None; Metric::ALL.len()];
    for m in Metric::ALL {
        if let Some(slot) = ids.get_mut(m.index()) {
            *slot = hostcalls::define_metric(MetricType::Counter, m.name()).ok();
        }
    }
    Rc::new(ids)
}

fn seeded_ids() -> IdGen {
    let mut seed = [0u8; 16];
    match getrandom::fill(&mut seed) {
        Ok(()) => IdGen::new(seed),
        Err(_) => {
            let nanos = hostcalls::get_current_time()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            IdGen::from_time(nanos, seed.as_ptr() as u64)
        }
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let mut host = self.host();
        let Some(shared) = &self.shared else { return };
        // A timeout or reset arrives here too, without a `:status`.
        let status = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
            .and_then(|s| std::str::from_utf8(&s).ok().and_then(|s| s.parse().ok()));
        let body = if body_size > 0 {
            hostcalls::get_buffer(
                proxy_wasm::types::BufferType::HttpCallResponseBody,
                0,
                body_size,
            )
            .ok()
            .flatten()
        } else {
            None
        };
        if self.caps.owns(token) {
            self.caps.on_response(&mut host, status, body.as_deref());
            shared.sync_caps(&mut host);
            return;
        }
        let Ok(mut shipper) = shared.shipper.try_borrow_mut() else {
            return;
        };
        ship::on_response(
            &mut host,
            &mut shipper,
            status,
            body.as_deref().unwrap_or_default(),
        );
        // Drain a backlog (after an outage) faster than one batch per flush
        // interval: at once where the host allows a dispatch from inside a
        // call's response (Envoy), else on the very next tick (Kong, whose
        // workers crash on a dispatch made here).
        if status == Some(200) && shipper.buffered() >= shared.filter.config.collector.max_batch {
            if shared.filter.profile.dispatch_in_call_response() {
                ship::flush(&mut host, &shared.filter, &mut shipper);
            } else {
                self.next_flush_ms = 0;
            }
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = hostcalls::get_buffer(
            proxy_wasm::types::BufferType::PluginConfiguration,
            0,
            usize::MAX,
        )
        .ok()
        .flatten()
        .unwrap_or_default();
        let filter = match Filter::from_json(&bytes) {
            Ok(f) => f,
            Err(e) => {
                log::error!("aispend: {e}");
                return false;
            }
        };
        let mut host = self.host();
        let ids = self
            .ids
            .get_or_insert_with(|| Rc::new(RefCell::new(seeded_ids())))
            .clone();
        // A reconfigure keeps the records already buffered and the caps seen.
        let (shipper, caps, requests) = match self.shared.take() {
            Some(old) => (old.shipper, old.caps, old.requests),
            None => (
                Rc::new(RefCell::new(Shipper::new(filter.shipper_settings()))),
                Rc::new(RefCell::new(CapsView::new(crate::host::Host::now_ms(
                    &mut host,
                )))),
                Rc::default(),
            ),
        };
        let flush = filter.config.collector.flush_interval_ms;
        let caps_cfg = &filter.config.caps;
        let interval = if caps_cfg.enabled {
            crate::jobs::caps_poll::tick_period_ms(flush, caps_cfg.poll_interval_ms)
        } else {
            flush
        };
        self.shared = Some(Shared {
            filter: Rc::new(filter),
            shipper,
            ids,
            caps,
            requests,
        });
        let _ = hostcalls::set_tick_period(Duration::from_millis(interval));
        true
    }

    fn on_tick(&mut self) {
        // Records first: their call is the one a slow collector must not delay.
        self.flush();
        self.poll_caps();
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = self.shared.as_ref()?;
        let metrics = self.metrics.clone().unwrap_or_default();
        Some(Box::new(Http::new(shared, metrics)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
