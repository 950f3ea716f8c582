//! `Host` over proxy-wasm hostcalls. Every hostcall result is handled: a
//! failed call degrades to "absent", it never unwraps (a panic would trap the
//! VM and take the worker's filter down with it).

use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, Status};

use crate::host::{DispatchError, HeaderBlock, Host, Metric, SharedDataError};

/// Metric ids by `Metric::index`, defined once per VM by the root context.
pub type MetricIds = Rc<[Option<u32>; Metric::ALL.len()]>;

pub struct ProxyHost {
    pub metrics: MetricIds,
}

// The SDK's `get_map_bytes` copies every name and value into its own
// allocation (and panics on an unexpected status); this takes the host's
// serialized map as one buffer instead, for `HeaderBlock` to read in place.
// (Header map *writes* are never used: see `profile`.)
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> Status;
    // The SDK's `get_current_time` builds a `SystemTime` that `now_ms` then
    // turns back into milliseconds through u128 arithmetic: three clock
    // reads per call paid for it. One division does the same.
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> Status;
}

fn header_block(map: MapType) -> HeaderBlock {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a pointer to `size` bytes it allocated in this
    // module's memory through `proxy_on_memory_allocate` (a boxed slice of
    // exactly `size` bytes), whose ownership passes to us.
    let status = unsafe { proxy_get_header_map_pairs(map, &mut data, &mut size) };
    if status != Status::Ok || data.is_null() {
        return HeaderBlock::default();
    }
    // SAFETY: see above; capacity == length == size as allocated.
    let bytes = unsafe { Vec::from_raw_parts(data, size, size) };
    HeaderBlock::from_wire(bytes)
}

impl Host for ProxyHost {
    fn request_headers(&mut self) -> HeaderBlock {
        header_block(MapType::HttpRequestHeaders)
    }
    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        let _ = hostcalls::set_map_value_bytes(
            MapType::HttpRequestHeaders,
            name,
            value.map(str::as_bytes),
        );
    }
    fn add_request_header(&mut self, name: &str, value: &str) {
        let _ = hostcalls::add_map_value_bytes(MapType::HttpRequestHeaders, name, value.as_bytes());
    }
    fn set_property(&mut self, path: &[&str], value: &[u8]) -> bool {
        hostcalls::set_property(path.to_vec(), Some(value)).is_ok()
    }
    fn response_headers(&mut self) -> HeaderBlock {
        header_block(MapType::HttpResponseHeaders)
    }
    fn add_response_header(&mut self, name: &str, value: &str) {
        let _ =
            hostcalls::add_map_value_bytes(MapType::HttpResponseHeaders, name, value.as_bytes());
    }
    fn replace_response_header(&mut self, name: &str, value: &str) {
        let _ = hostcalls::set_map_value_bytes(
            MapType::HttpResponseHeaders,
            name,
            Some(value.as_bytes()),
        );
    }
    fn request_body(&mut self, size: usize) -> Option<Vec<u8>> {
        hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size)
            .ok()
            .flatten()
    }
    fn replace_request_body(&mut self, body: &[u8]) {
        // Replace the whole buffered body: start 0, size = everything.
        let _ = hostcalls::set_buffer(BufferType::HttpRequestBody, 0, usize::MAX, body);
    }
    fn response_body(&mut self, size: usize) -> Option<Vec<u8>> {
        hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size)
            .ok()
            .flatten()
    }
    fn replace_response_body(&mut self, body: &[u8]) {
        let _ = hostcalls::set_buffer(BufferType::HttpResponseBody, 0, usize::MAX, body);
    }
    fn send_response(&mut self, status: u32, headers: &[(&str, &str)], body: &[u8]) {
        let _ = hostcalls::send_http_response(status, headers.to_vec(), Some(body));
    }
    fn property(&mut self, path: &[&str]) -> Option<Vec<u8>> {
        hostcalls::get_property(path.to_vec()).ok().flatten()
    }
    fn now_ms(&mut self) -> u64 {
        let mut nanos: u64 = 0;
        // SAFETY: the host writes one u64 through the pointer it is given.
        match unsafe { proxy_get_current_time_nanoseconds(&mut nanos) } {
            Status::Ok => nanos / 1_000_000,
            _ => 0,
        }
    }
    fn increment_metric(&mut self, metric: Metric, delta: u64) {
        if let Some(Some(id)) = self.metrics.get(metric.index()) {
            let _ = hostcalls::increment_metric(*id, delta.min(i64::MAX as u64) as i64);
        }
    }
    fn shared_data_get(&mut self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }
    fn shared_data_set(
        &mut self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), SharedDataError> {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(SharedDataError::CasMismatch),
            Err(_) => Err(SharedDataError::Other),
        }
    }
    fn dispatch(
        &mut self,
        upstream: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u32, DispatchError> {
        hostcalls::dispatch_http_call(
            upstream,
            headers.to_vec(),
            Some(body),
            Vec::new(),
            Duration::from_millis(timeout_ms),
        )
        .map_err(|_| DispatchError)
    }
}
