//! What every handler shares: the store, the price table, the bearer tokens
//! per role, the metrics and the caps cache.

use std::sync::Arc;

use crate::domain::pricing::PriceTable;
use crate::metrics::Metrics;
use crate::service::caps::Caps;
use crate::service::ingest::IngestGate;
use crate::store::{Store, StoreError};

/// Bearer tokens per audience; `None` disables the check (`--insecure-no-auth`).
/// They are checked by `http::auth` before a request body is read.
#[derive(Clone, Default)]
pub struct Tokens {
    /// The gateway filter: `POST /v1/records`.
    pub ingest: Option<String>,
    /// Readers: `GET /v1/usage`, `GET /v1/caps`, budget reads.
    pub read: Option<String>,
    /// For the budget API: writes need it, reads accept it too.
    pub admin: Option<String>,
}

impl std::fmt::Debug for Tokens {
    /// Never prints a token, only whether it is set.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |t: &Option<String>| if t.is_some() { "set" } else { "unset" };
        f.debug_struct("Tokens")
            .field("ingest", &set(&self.ingest))
            .field("read", &set(&self.read))
            .field("admin", &set(&self.admin))
            .finish()
    }
}

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub prices: Arc<PriceTable>,
    pub tokens: Tokens,
    pub metrics: Arc<Metrics>,
    /// The `GET /v1/caps` cache and the budget metrics.
    pub caps: Arc<Caps>,
    /// Bounds the ingest bodies read and parsed at once.
    pub ingest_gate: Arc<IngestGate>,
    /// The tags a record must carry for its cost to count as covered
    /// (`AISPEND_REQUIRED_TAGS`).
    pub required_tags: Arc<Vec<String>>,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, prices: PriceTable, tokens: Tokens) -> Self {
        Self {
            store,
            prices: Arc::new(prices),
            tokens,
            metrics: Arc::new(Metrics::default()),
            caps: Arc::new(Caps::new()),
            ingest_gate: Arc::new(IngestGate::default()),
            required_tags: Arc::new(
                crate::settings::parse_required_tags(crate::settings::DEFAULT_REQUIRED_TAGS)
                    .unwrap_or_default(),
            ),
        }
    }

    /// Sets the tags coverage requires.
    pub fn with_required_tags(mut self, tags: Vec<String>) -> Self {
        self.required_tags = Arc::new(tags);
        self
    }

    /// Sets how many bytes of ingest bodies may be held at once.
    pub fn with_ingest_memory(mut self, bytes: usize) -> Self {
        self.ingest_gate = Arc::new(IngestGate::new(bytes));
        self
    }

    /// Counts a store failure (the `aispend_store_errors_total` metric).
    pub(crate) fn count_store_error(&self, _error: &StoreError) {
        Metrics::add(&self.metrics.store_errors, 1);
    }
}
