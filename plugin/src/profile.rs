//! Envoy vs Kong: every host difference the logic cares about, in one place.
//!
//! Kong 3.9 runs proxy-wasm filters in ngx_wasm_module (prerelease-0.6.0 line,
//! Wasmtime). What this module and the code around it rely on, from its docs:
//! - `docs/PROXY_WASM.md`, "Supported Host ABI": calling `proxy_get_log_level`,
//!   `proxy_done`, `proxy_resume_*`, `proxy_close_stream`,
//!   `proxy_continue_response`, `proxy_grpc_*`, `proxy_get_status` or
//!   `proxy_resolve_shared_queue` traps. The filter calls none of them on any
//!   host: it never pauses then resumes (the request body is buffered by
//!   returning Pause until end of stream, then Continue), never uses queues
//!   or gRPC, and reads the dispatch status from the `:status` header.
//! - `docs/PROXY_WASM.md`, "HTTP Dispatches": the target is `host:port`
//!   resolved by nginx, not a cluster (config validation enforces the form
//!   for `gateway: "kong"`); dispatches are allowed from `on_tick`, where the
//!   filter makes them, and answer on the root context.
//! - `docs/DIRECTIVES.md` (`shm_kv`) and `src/common/shm/ngx_wa_shm_kv.c`:
//!   `set` with cas 0 succeeds only if the key is absent ([`Profile::create_cas`]);
//!   zones may evict: a rate-limit key that disappeared starts a new window,
//!   and the caps key is written again by the next poll.
//! - `docs/PROXY_WASM_HOST_DIFFERENCES.md`: no Envoy `metadata.*` properties
//!   (so the `jwt` identity source is refused for Kong at configure time),
//!   values come back as strings ([`Profile::property_string`]).
//! - `docs/PROXY_WASM.md`, callbacks: `end_of_stream` is always false in the
//!   headers callbacks ([`Profile::headers_eos_reliable`]).
//!
//! The same rules are enforced on the compiled .wasm by the test host in
//! `tests/wasm_host/` (its `profiles.py` cites the same documents).

use crate::config::Gateway;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    pub gateway: Gateway,
}

impl Profile {
    pub fn new(gateway: Gateway) -> Self {
        Profile { gateway }
    }

    /// The record's `gateway` field.
    pub fn name(self) -> &'static str {
        match self.gateway {
            Gateway::Envoy => "envoy",
            Gateway::Kong => "kong",
        }
    }

    /// `dispatch_http_call`'s upstream: an Envoy cluster name, or for Kong
    /// the `host:port` nginx resolves. Both are the configured
    /// `collector.cluster` verbatim; the difference is what operators write
    /// there, and CONFIG.md says so.
    pub fn dispatch_target(self, cluster: &str) -> &str {
        cluster
    }

    /// The cas to create a key that may not exist. Envoy: 0 writes
    /// unconditionally, so `None` with a prior read is the safe form; Kong:
    /// 0 means "only if absent" (a real create-if-missing).
    pub fn create_cas(self) -> Option<u32> {
        match self.gateway {
            Gateway::Envoy => None,
            Gateway::Kong => Some(0),
        }
    }

    /// Whether `end_of_stream` in a headers callback can be trusted to mean
    /// "no body" (Kong always says false).
    pub fn headers_eos_reliable(self) -> bool {
        matches!(self.gateway, Gateway::Envoy)
    }

    /// Properties come back as raw bytes in Envoy (a string leaf is its
    /// UTF-8) and as strings in Kong; both decode the same way here.
    pub fn property_string(self, raw: &[u8]) -> Option<String> {
        std::str::from_utf8(raw).ok().map(str::to_string)
    }
}
