//! Reference for `make bench`: a filter that makes the host calls any
//! attribution filter needs for one chat call — and nothing else. It reads
//! the request headers, removes the credential and adds the seven tag
//! headers, reads the request body, reads the response status and content
//! type, adds the request id to the response, reads the response body and
//! the clock twice. It decides nothing and ships nothing. Its ratio to the
//! no-op filter is the ceiling for aispend's in the same Envoy: what is left
//! between the two is aispend's own logic.
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};
use std::hint::black_box;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(FloorRoot) });
}}

const TAGS: [&str; 7] = [
    "x-aispend-org",
    "x-aispend-team",
    "x-aispend-project",
    "x-aispend-cost-center",
    "x-aispend-environment",
    "x-aispend-key-id",
    "x-aispend-request-id",
];

struct FloorRoot;
impl Context for FloorRoot {}
impl RootContext for FloorRoot {
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Floor))
    }
}

struct Floor;
impl Context for Floor {}
impl HttpContext for Floor {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        black_box(hostcalls::get_current_time().ok());
        black_box(hostcalls::get_map_bytes(MapType::HttpRequestHeaders).ok());
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, "authorization", None);
        for name in TAGS {
            let _ = hostcalls::add_map_value(MapType::HttpRequestHeaders, name, "value-of-a-tag");
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, size: usize, _: bool) -> Action {
        black_box(hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size).ok());
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        black_box(hostcalls::get_map_value(MapType::HttpResponseHeaders, ":status").ok());
        black_box(hostcalls::get_map_value(MapType::HttpResponseHeaders, "content-type").ok());
        let _ = hostcalls::add_map_value(
            MapType::HttpResponseHeaders,
            "x-aispend-request-id",
            "0123456789abcdef0123456789abcdef",
        );
        Action::Continue
    }

    fn on_http_response_body(&mut self, size: usize, _: bool) -> Action {
        black_box(hostcalls::get_current_time().ok());
        black_box(hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size).ok());
        Action::Continue
    }
}
