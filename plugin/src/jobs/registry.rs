//! The key registry poll (SPEC §8): on the root tick, fetch the collector's
//! `GET /v1/keys/registry` (with `If-None-Match`), validate the snapshot
//! whole, and keep it in shared data for every worker; each worker then
//! decodes it once per version into its own copy (`sync_view`), which the
//! request path reads without a hostcall.
//!
//! Workers share one poll: a worker skips its poll when the shared copy was
//! fetched within the interval (another worker fetched it), as caps do. A
//! failed or refused poll leaves the last good registry in place (a
//! registry that cannot be fetched never locks out keys that were valid;
//! expiry is still checked per request against the clock) and counts it in
//! `aispend_registry_stale`.

use std::cell::RefCell;

use crate::filter::Filter;
use crate::host::{DispatchError, Host, Metric, SharedDataError};
use crate::jobs::{slack_ms, Answer, Job, Next};
use crate::request::key_registry::{
    self, encode_data, encode_meta, split_meta, RegistryView, Sync, DATA_KEY, META_KEY,
};
use crate::vm::Shared;

/// CAS attempts per write (only pollers write these keys).
const MAX_ATTEMPTS: usize = 4;

#[derive(Debug, Default)]
pub struct RegistryPoller {
    in_flight: Option<u32>,
    /// The shared copy vanished (Kong zones evict): poll again at once.
    poll_again: bool,
}

impl Job for RegistryPoller {
    fn name(&self) -> &'static str {
        "registry"
    }

    fn period_ms(&self, filter: &Filter) -> Option<u64> {
        filter.config.identity.registry.as_ref().map(|r| r.poll_ms)
    }

    fn run(&mut self, host: &mut dyn Host, shared: &Shared) -> Option<u32> {
        self.tick(host, &shared.filter)
    }

    fn on_answer(&mut self, host: &mut dyn Host, shared: &Shared, answer: Answer<'_>) -> Next {
        self.on_response(host, &shared.filter, answer.status, answer.body);
        // This worker's request path sees its own poll right away.
        shared.sync_registry(host);
        if std::mem::take(&mut self.poll_again) {
            Next::Now
        } else {
            Next::Later
        }
    }

    fn after_tick(&mut self, host: &mut dyn Host, shared: &Shared) {
        // A version another worker fetched reaches this VM here.
        shared.sync_registry(host);
    }
}

impl RegistryPoller {
    /// Start a poll if one is due. Returns the call's token.
    pub fn tick(&mut self, host: &mut dyn Host, filter: &Filter) -> Option<u32> {
        let r = filter.config.identity.registry.as_ref()?;
        if self.in_flight.is_some() {
            return None;
        }
        let now = host.now_ms();
        let (meta, _) = host.shared_data_get(META_KEY);
        let meta = meta.as_deref().and_then(split_meta);
        let due_after = r.poll_ms - slack_ms(r.poll_ms);
        if meta.is_some_and(|(fetched, _)| now.saturating_sub(fetched) < due_after) {
            return None;
        }
        let col = &filter.config.collector;
        let auth = format!("Bearer {}", r.token(col));
        let etag = meta
            .filter(|(_, v)| !v.is_empty())
            .map(|(_, v)| format!("\"{v}\""));
        let mut headers = vec![
            (":method", "GET"),
            (":path", r.path.as_str()),
            (":authority", r.authority(col)),
            ("accept", "application/json"),
            ("authorization", auth.as_str()),
        ];
        if let Some(etag) = &etag {
            headers.push(("if-none-match", etag.as_str()));
        }
        let target = r.cluster(col);
        let timeout = col.timeout_ms.min(r.poll_ms).max(1);
        host.increment_metric(Metric::RegistryPolls, 1);
        match host.dispatch(target, &headers, b"", timeout) {
            Ok(token) => {
                self.in_flight = Some(token);
                Some(token)
            }
            Err(DispatchError) => {
                log::warn!("aispend: cannot dispatch the key registry poll to {target}");
                failed(host, etag.is_some());
                None
            }
        }
    }

    /// Settle the poll: a valid 200 replaces the registry (or only renews
    /// it when the version is the one already shared), 304 renews it, and
    /// anything else keeps the last good one. Returns whether the shared
    /// registry is now current.
    pub fn on_response(
        &mut self,
        host: &mut dyn Host,
        filter: &Filter,
        status: Option<u32>,
        body: &[u8],
    ) -> bool {
        self.in_flight = None;
        let Some(r) = filter.config.identity.registry.as_ref() else {
            return false;
        };
        let now = host.now_ms();
        let (meta, _) = host.shared_data_get(META_KEY);
        let shared_version = meta
            .as_deref()
            .and_then(split_meta)
            .map(|(_, v)| v.to_string())
            .filter(|v| !v.is_empty());
        let kept = shared_version.is_some();
        match status {
            Some(200) => match key_registry::from_collector(body, r.max_bytes) {
                Ok(snapshot) => {
                    let same = shared_version.as_deref() == Some(snapshot.version.as_str());
                    let written = (same
                        || write(
                            host,
                            DATA_KEY,
                            &encode_data(&snapshot.version, &snapshot.lines),
                        ))
                        && write(host, META_KEY, &encode_meta(now, &snapshot.version));
                    if !written {
                        log::warn!("aispend: cannot write the key registry to shared data");
                        failed(host, kept);
                    } else if !same {
                        log::info!(
                            "aispend: key registry version {} ({} secrets)",
                            snapshot.version,
                            snapshot.keys
                        );
                        host.increment_metric(Metric::RegistryUpdates, 1);
                    }
                    written
                }
                Err(e) => {
                    log::warn!("aispend: key registry refused whole, last good one kept: {e}");
                    host.increment_metric(Metric::RegistryRejected, 1);
                    if kept {
                        host.increment_metric(Metric::RegistryStale, 1);
                    }
                    false
                }
            },
            Some(304) => match shared_version {
                Some(version) => {
                    let ok = write(host, META_KEY, &encode_meta(now, &version));
                    if !ok {
                        failed(host, kept);
                    }
                    ok
                }
                // Evicted meanwhile (Kong zones can evict): poll afresh.
                None => {
                    self.poll_again = true;
                    false
                }
            },
            Some(401 | 403) => {
                log::error!(
                    "aispend: the collector refused the key registry poll ({status:?}): set identity.registry.token (default collector.token) to a gateway token"
                );
                failed(host, kept);
                false
            }
            other => {
                log::warn!("aispend: key registry poll answered {other:?}");
                failed(host, kept);
                false
            }
        }
    }
}

/// A poll without a usable answer; `kept`: the last known registry serves on.
fn failed(host: &mut dyn Host, kept: bool) {
    host.increment_metric(Metric::RegistryPollFailures, 1);
    if kept {
        host.increment_metric(Metric::RegistryStale, 1);
    }
}

/// Replace a shared value (get for the cas, then set; create when absent).
fn write(host: &mut dyn Host, key: &str, value: &[u8]) -> bool {
    for _ in 0..MAX_ATTEMPTS {
        let (current, cas) = host.shared_data_get(key);
        // Kong: cas 0 creates only if absent; Envoy: 0 writes unconditionally.
        let cas = if current.is_some() { cas } else { Some(0) };
        match host.shared_data_set(key, value, cas) {
            Ok(()) => return true,
            Err(SharedDataError::CasMismatch) => continue,
            Err(SharedDataError::Other) => return false,
        }
    }
    false
}

/// Bring this VM's copy of the registry up to date (root tick, and after
/// this worker's own poll): one small read per tick, and the whole registry
/// read and decoded only when its version changed. Without
/// `identity.registry` the copy is emptied.
pub fn sync_view(host: &mut dyn Host, filter: &Filter, view: &RefCell<RegistryView>) {
    let Ok(mut view) = view.try_borrow_mut() else {
        return;
    };
    if filter.config.identity.registry.is_none() {
        if !view.keys().is_empty() || !view.version().is_empty() {
            *view = RegistryView::default();
        }
        return;
    }
    let (meta, _) = host.shared_data_get(META_KEY);
    if let Sync::NeedData = view.check_meta(meta.as_deref()) {
        let (data, _) = host.shared_data_get(DATA_KEY);
        let is_static = |digest: &[u8; 32], key_id: &str| filter.identity.defines(digest, key_id);
        if !view.take_data(data.as_deref(), &filter.schema, &is_static) {
            // The keys were evicted (Kong zones can evict) while the meta
            // stayed: blank the meta so the next poll fetches them whole.
            // This copy keeps serving meanwhile.
            log::warn!("aispend: the shared key registry is gone; fetching it again");
            let _ = write(host, META_KEY, &encode_meta(0, ""));
        }
    }
}

#[cfg(test)]
mod tests;
