//! Envoy vs Kong: every host difference the logic cares about, in one place
//! (see shared/KONG-HOST.md). Issue 8 completes the Kong side.

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
