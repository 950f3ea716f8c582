//! HTTP context: forwards each callback to `RequestFlow`.

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use crate::request::flow::{RequestFlow, Step};
use crate::vm::Shared;

use super::proxy_host::{MetricIds, ProxyHost};

pub struct Http {
    flow: RequestFlow,
    host: ProxyHost,
}

impl Http {
    pub fn new(shared: &Shared, metrics: MetricIds) -> Self {
        Http {
            flow: RequestFlow::new(shared),
            host: ProxyHost { metrics },
        }
    }
}

fn action(step: Step) -> Action {
    match step {
        Step::Continue => Action::Continue,
        Step::Pause => Action::Pause,
    }
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        action(self.flow.on_request_headers(&mut self.host, end_of_stream))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(
            self.flow
                .on_request_body(&mut self.host, body_size, end_of_stream),
        )
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.flow.on_response_headers(&mut self.host);
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(
            self.flow
                .on_response_body(&mut self.host, body_size, end_of_stream),
        )
    }

    fn on_log(&mut self) {
        self.flow.on_log(&mut self.host);
    }
}
