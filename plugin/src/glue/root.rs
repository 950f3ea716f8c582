//! Root context: forwards the host's callbacks to `vm::Shared` (config) and
//! `jobs::Scheduler` (tick, dispatch answers, shutdown). Nothing decides here.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, MapType, MetricType};

use crate::filter::Filter;
use crate::host::{Host as _, Metric};
use crate::jobs::{Answer, Scheduler, Shutdown};
use crate::request::record::IdGen;
use crate::vm::Shared;

use super::http::Http;
use super::proxy_host::{MetricIds, ProxyHost};

pub struct Root {
    shared: Option<Shared>,
    metrics: Option<MetricIds>,
    ids: Option<Rc<RefCell<IdGen>>>,
    jobs: Scheduler,
}

impl Default for Root {
    fn default() -> Self {
        Root {
            shared: None,
            metrics: None,
            ids: None,
            jobs: Scheduler::standard(),
        }
    }
}

impl Root {
    fn host(&mut self) -> ProxyHost {
        let metrics = self.metrics.get_or_insert_with(define_metrics).clone();
        ProxyHost { metrics }
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
            hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                .ok()
                .flatten()
        } else {
            None
        };
        let answer = Answer {
            status,
            body: body.as_deref().unwrap_or_default(),
        };
        if self.jobs.on_answer(&mut host, shared, token, answer) == Shutdown::Done {
            let _ = hostcalls::done();
        }
    }

    fn on_done(&mut self) -> bool {
        let mut host = self.host();
        let Some(shared) = &self.shared else {
            return true;
        };
        self.jobs.on_shutdown(&mut host, shared) == Shutdown::Done
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
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
        let now = self.host().now_ms();
        let ids = self
            .ids
            .get_or_insert_with(|| Rc::new(RefCell::new(seeded_ids())))
            .clone();
        let shared = Shared::configure(self.shared.take(), filter, ids, now);
        shared.warn_config(&mut self.host());
        let period = self.jobs.tick_period_ms(&shared.filter);
        self.shared = Some(shared);
        let _ = hostcalls::set_tick_period(Duration::from_millis(period));
        true
    }

    fn on_tick(&mut self) {
        let mut host = self.host();
        if let Some(shared) = &self.shared {
            self.jobs.on_tick(&mut host, shared);
        }
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
