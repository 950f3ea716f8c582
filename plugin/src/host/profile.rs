//! Envoy vs Kong: every host difference the logic cares about, in one place.
//!
//! Kong 3.9 runs proxy-wasm filters in ngx_wasm_module (commit 9136e463,
//! which Kong 3.9.0–3.9.3 pin) on Wasmtime, behind nginx's `proxy_pass`.
//! What this module relies on, read from the engine's sources and checked by
//! running aispend in it (the test host `tests/wasm_host/` reproduces each
//! rule; its `headers.py` and `profiles.py` cite the source lines):
//! - Request headers ([`Profile::removal`], [`Profile::clears_duplicates`]):
//!   a removed header is only marked (`hash = 0`) and nginx's `proxy_pass`
//!   still forwards it; setting a header overwrites its first copy in place
//!   and marks the others, which then leak the same way. So on Kong a header
//!   the provider must not see is overwritten with an empty value, and a
//!   request carrying two copies of such a header is refused (400). A header
//!   map write clears every header, then stops at the read-only `:scheme`:
//!   the filter never writes whole maps, on either host.
//! - The request line ([`Profile::query_edit`]): Kong's `proxy_pass` sends
//!   `$upstream_uri`, built by Kong before the filter runs, so `:path` edits
//!   do not reach the upstream; the filter rewrites `ngx.upstream_uri` (and
//!   `request.query`, nginx's `$args`, which a plain `proxy_pass` sends).
//! - The tick ([`Profile::max_tick_ms`]): a backlog drains one batch per
//!   tick on Kong, so the tick stays at 100 ms.
//! - Request body length ([`Profile::recomputes_content_length`]): nginx
//!   writes `Content-Length` from the body it sends; Envoy forwards the
//!   client's, so a rewritten body needs it removed first.
//! - `dispatch_http_call` from inside `on_http_call_response` crashes nginx
//!   workers under load ([`Profile::dispatch_in_call_response`]); targets
//!   are `host:port` resolved by nginx, not clusters (config validation).
//! - Shared data: `set` with cas 0 succeeds only if the key is absent
//!   ([`Profile::create_cas`]); zones may evict keys.
//! - No Envoy `metadata.*` properties (the `jwt` source is refused for Kong
//!   at configure time); `end_of_stream` is always false in the headers
//!   callbacks ([`Profile::headers_eos_reliable`]).
//! - Calling `proxy_get_log_level`, `proxy_done`, `proxy_resume_*`,
//!   `proxy_close_stream`, `proxy_continue_response`, `proxy_grpc_*`,
//!   `proxy_get_status` or `proxy_resolve_shared_queue` traps: the filter
//!   calls none of them on any host.

use crate::config::{err, is_host_port, Config, ConfigError, Gateway, Source};

/// The headers a Kong auth plugin (`key-auth`, `jwt`, `openid-connect`, …)
/// sets for the consumer it authenticated, most specific first; trusted
/// only where the config says the route has such a plugin.
pub const KONG_CONSUMER_HEADERS: [&str; 3] = [
    "x-consumer-username",
    "x-consumer-id",
    "x-credential-identifier",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    pub gateway: Gateway,
}

/// How a request header the upstream must not see is taken out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Removed (Envoy).
    Remove,
    /// Overwritten in place with an empty value (Kong: removal leaks).
    Blank,
}

/// Where a query-string change goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryEdit {
    /// Rewrite the `:path` header (Envoy).
    Path,
    /// Set the `ngx.upstream_uri` and `request.query` properties (Kong).
    QueryProperty,
}

impl Profile {
    pub fn new(gateway: Gateway) -> Self {
        Profile { gateway }
    }

    fn is_kong(self) -> bool {
        matches!(self.gateway, Gateway::Kong)
    }

    /// The record's `gateway` field.
    pub fn name(self) -> &'static str {
        match self.gateway {
            Gateway::Envoy => "envoy",
            Gateway::Kong => "kong",
        }
    }

    pub fn removal(self) -> Removal {
        if self.is_kong() {
            Removal::Blank
        } else {
            Removal::Remove
        }
    }

    /// Whether one edit takes out every copy of a repeated header (Envoy's
    /// remove and set do; Kong's leave the later copies to the upstream).
    pub fn clears_duplicates(self) -> bool {
        !self.is_kong()
    }

    pub fn query_edit(self) -> QueryEdit {
        if self.is_kong() {
            QueryEdit::QueryProperty
        } else {
            QueryEdit::Path
        }
    }

    /// Whether the host writes the upstream `content-length` from the body it
    /// sends (nginx), so a rewritten body needs no header edit.
    pub fn recomputes_content_length(self) -> bool {
        self.is_kong()
    }

    /// Refuse at start what this host cannot do, instead of failing on
    /// every call. Kong has no Envoy clusters (dispatch targets are the
    /// `host:port` nginx resolves) and no dynamic metadata (so no verified
    /// JWT claims).
    pub fn check_config(self, c: &Config) -> Result<(), ConfigError> {
        if !self.is_kong() {
            return Ok(());
        }
        if c.identity.sources.contains(&Source::Jwt) {
            return Err(err(
                "identity.sources",
                "\"jwt\" needs Envoy's jwt_authn dynamic metadata, which Kong does not have; use \"kong_consumer\"",
            ));
        }
        let targets = [
            ("collector.cluster", Some(&c.collector.cluster)),
            ("caps.cluster", c.caps.cluster.as_ref()),
            (
                "identity.registry.cluster",
                c.identity
                    .registry
                    .as_ref()
                    .and_then(|r| r.cluster.as_ref()),
            ),
        ];
        for (field, target) in targets {
            if target.is_some_and(|t| !is_host_port(t)) {
                return Err(err(
                    field,
                    "with gateway \"kong\" this is the host:port nginx resolves, not an Envoy cluster name",
                ));
            }
        }
        Ok(())
    }

    /// Where a verified JWT claim is read (Envoy's `jwt_authn` writes the
    /// payload into dynamic metadata); None on hosts without it.
    pub fn claim_path<'a>(
        self,
        namespace: &'a str,
        payload_key: &'a str,
        claim: &'a str,
    ) -> Option<[&'a str; 5]> {
        (!self.is_kong()).then_some(["metadata", "filter_metadata", namespace, payload_key, claim])
    }

    /// Whether the host waits for the VM's `proxy_done` after `on_done`
    /// returned false (Envoy), so records can still be shipped when it
    /// stops. Kong's engine traps on `proxy_done`: nothing can wait there.
    pub fn waits_for_done(self) -> bool {
        !self.is_kong()
    }

    /// The longest root tick this host may run. Where no dispatch may start
    /// from a call's response (Kong), a backlog drains one batch per tick,
    /// so the tick stays short (the scheduler still runs each job at its own
    /// period): 500 records × 10 ticks/s per worker with the defaults.
    pub fn max_tick_ms(self) -> Option<u64> {
        self.is_kong().then_some(100)
    }

    /// Whether a dispatch may start from inside another call's response.
    pub fn dispatch_in_call_response(self) -> bool {
        !self.is_kong()
    }

    /// The cas to create a key that may not exist. Envoy: 0 writes
    /// unconditionally, so `None` with a prior read is the safe form; Kong:
    /// 0 means "only if absent" (a real create-if-missing).
    pub fn create_cas(self) -> Option<u32> {
        if self.is_kong() {
            Some(0)
        } else {
            None
        }
    }

    /// Whether `end_of_stream` in a headers callback can be trusted to mean
    /// "no body" (Kong always says false).
    pub fn headers_eos_reliable(self) -> bool {
        !self.is_kong()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_difference_has_one_answer_per_host() {
        let envoy = Profile::new(Gateway::Envoy);
        let kong = Profile::new(Gateway::Kong);
        assert_eq!((envoy.name(), kong.name()), ("envoy", "kong"));
        assert_eq!(envoy.removal(), Removal::Remove);
        assert_eq!(kong.removal(), Removal::Blank);
        assert!(envoy.clears_duplicates() && !kong.clears_duplicates());
        assert_eq!(envoy.query_edit(), QueryEdit::Path);
        assert_eq!(kong.query_edit(), QueryEdit::QueryProperty);
        assert!(!envoy.recomputes_content_length() && kong.recomputes_content_length());
        assert!(envoy.dispatch_in_call_response() && !kong.dispatch_in_call_response());
        assert!(envoy.waits_for_done() && !kong.waits_for_done());
        assert_eq!((envoy.max_tick_ms(), kong.max_tick_ms()), (None, Some(100)));
        assert_eq!((envoy.create_cas(), kong.create_cas()), (None, Some(0)));
        assert!(envoy.headers_eos_reliable() && !kong.headers_eos_reliable());
        assert_eq!(
            envoy.claim_path("ns", "jwt_payload", "team"),
            Some(["metadata", "filter_metadata", "ns", "jwt_payload", "team"])
        );
        assert_eq!(kong.claim_path("ns", "jwt_payload", "team"), None);
    }

    #[test]
    fn kong_refuses_what_it_cannot_do_at_start() {
        let config = |extra: &str| {
            crate::config::parse(
                format!(r#"{{"gateway":"kong","collector":{{"cluster":"127.0.0.1:9","token":"t"}}{extra}}}"#)
                    .as_bytes(),
            )
        };
        assert!(config("").is_ok());
        let jwt = config(r#","identity":{"sources":["jwt"],"jwt":{"claims":{}}}"#).unwrap_err();
        assert_eq!(jwt.path, "identity.sources");
        let cluster = config(r#","caps":{"cluster":"aispend_collector"}"#).unwrap_err();
        assert_eq!(cluster.path, "caps.cluster");
        let envoy = Profile::new(Gateway::Envoy);
        let named =
            crate::config::parse(br#"{"collector":{"cluster":"aispend_collector","token":"t"}}"#)
                .unwrap();
        assert!(envoy.check_config(&named).is_ok());
    }
}
