//! What the filter needs from its host, as a trait: the glue implements it
//! over proxy-wasm hostcalls, tests implement it in memory (`testing`). Every
//! call is fallible on the host side; the trait absorbs failures into
//! `Option`/`Result` so nothing here can trap the VM.

use std::borrow::Cow;

/// The counters the filter exports (Envoy shows them as `wasmcustom.<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    RecordsEmitted,
    RecordsShipped,
    RecordsRetried,
    RecordsDropped,
    ShipFailures,
    Denied401,
    Denied400,
    Requests,
    Denied402,
    Denied429,
    Denied503,
    CapsPolls,
    CapsPollFailures,
    CapsStale,
    CapsUnenforced,
    LimitsUnenforced,
}

impl Metric {
    pub const ALL: [Metric; 16] = [
        Metric::RecordsEmitted,
        Metric::RecordsShipped,
        Metric::RecordsRetried,
        Metric::RecordsDropped,
        Metric::ShipFailures,
        Metric::Denied401,
        Metric::Denied400,
        Metric::Requests,
        Metric::Denied402,
        Metric::Denied429,
        Metric::Denied503,
        Metric::CapsPolls,
        Metric::CapsPollFailures,
        Metric::CapsStale,
        Metric::CapsUnenforced,
        Metric::LimitsUnenforced,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::RecordsEmitted => "aispend_records_emitted",
            Metric::RecordsShipped => "aispend_records_shipped",
            Metric::RecordsRetried => "aispend_records_retried",
            Metric::RecordsDropped => "aispend_records_dropped",
            Metric::ShipFailures => "aispend_ship_failures",
            Metric::Denied401 => "aispend_denied_401",
            Metric::Denied400 => "aispend_denied_400",
            Metric::Requests => "aispend_requests",
            Metric::Denied402 => "aispend_denied_402",
            Metric::Denied429 => "aispend_denied_429",
            Metric::Denied503 => "aispend_denied_503",
            Metric::CapsPolls => "aispend_caps_polls",
            Metric::CapsPollFailures => "aispend_caps_poll_failures",
            Metric::CapsStale => "aispend_caps_stale",
            Metric::CapsUnenforced => "aispend_caps_unenforced",
            Metric::LimitsUnenforced => "aispend_limits_unenforced",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// The host refused to start an HTTP call (unknown cluster, bad target).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DispatchError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedDataError {
    /// Someone else wrote the key since our read (retry with a fresh cas).
    CasMismatch,
    Other,
}

/// Host services used by the per-request flow and the root context.
pub trait Host {
    /// All request headers (lowercase names).
    fn request_headers(&mut self) -> Vec<(String, String)>;
    /// Set (`Some`) or remove (`None`) a request header.
    fn set_request_header(&mut self, name: &str, value: Option<&str>);
    /// Replace the whole request header map (one hostcall for all edits).
    fn replace_request_headers(&mut self, headers: &[(&str, Cow<'_, str>)]);
    fn response_header(&mut self, name: &str) -> Option<String>;
    fn add_response_header(&mut self, name: &str, value: &str);
    /// `size` bytes of the (buffered) request body from its start.
    fn request_body(&mut self, size: usize) -> Option<Vec<u8>>;
    fn replace_request_body(&mut self, body: &[u8]);
    /// The current response body chunk.
    fn response_body(&mut self, size: usize) -> Option<Vec<u8>>;
    fn replace_response_body(&mut self, body: &[u8]);
    /// Answer locally instead of going upstream.
    fn send_response(&mut self, status: u32, headers: &[(&str, &str)], body: &[u8]);
    /// A host property (`["metadata", "filter_metadata", …]`), raw bytes.
    fn property(&mut self, path: &[&str]) -> Option<Vec<u8>>;
    /// Wall clock, milliseconds since the Unix epoch.
    fn now_ms(&mut self) -> u64;
    fn increment_metric(&mut self, metric: Metric, delta: u64);
    fn shared_data_get(&mut self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    fn shared_data_set(
        &mut self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), SharedDataError>;
    /// Start an HTTP call; the answer arrives later on the root context.
    fn dispatch(
        &mut self,
        upstream: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u32, DispatchError>;
}
