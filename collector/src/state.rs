//! What every handler shares: the store, the price table, the bearer tokens
//! per role, the metrics and the caps cache.

use std::sync::Arc;

use crate::domain::keys::KeyPolicy;
use crate::domain::pricing::book::{PriceBook, PriceBookCell};
use crate::domain::pricing::PriceTable;
use crate::metrics::Metrics;
use crate::service::access::TokenCache;
use crate::service::alerts::{AlertSettings, Alerts};
use crate::service::caps::Caps;
use crate::service::ingest::IngestGate;
use crate::service::keys::Keys;
use crate::service::retention::RetentionHorizon;
use crate::store::{Store, StoreError};

/// The bootstrap bearer tokens (CONTRACTS §9): ingest → role `gateway`,
/// read → `viewer` (unscoped), admin → `admin`. `None` leaves that role open
/// to callers without a token (`--insecure-no-auth`). Checked by
/// `http::auth` (through `service::access`) before a request body is read.
#[derive(Clone, Default)]
pub struct Tokens {
    /// Role `gateway`: `POST /v1/records`, `GET /v1/caps`, `GET /v1/keys/registry`.
    pub ingest: Option<String>,
    /// Role `viewer`, unscoped: every read.
    pub read: Option<String>,
    /// Role `admin`: everything, including creating the other tokens.
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
    /// `prices` plus the stored price changes and discounts (SPEC §13):
    /// what ingest prices a record with, by its `ts`.
    pub book: Arc<PriceBookCell>,
    pub tokens: Tokens,
    pub metrics: Arc<Metrics>,
    /// The `GET /v1/caps` cache and the budget metrics.
    pub caps: Arc<Caps>,
    /// Bounds the ingest bodies read and parsed at once.
    pub ingest_gate: Arc<IngestGate>,
    /// The API tokens of the store, cached (`service::access`).
    pub token_cache: Arc<TokenCache>,
    /// Now, in epoch milliseconds: the wall clock, or a test's.
    pub clock: Clock,
    /// The key issuance policy and the registry snapshot cache.
    pub keys: Arc<Keys>,
    /// The retention horizon ingest refuses records before.
    pub retention: Arc<RetentionHorizon>,
    /// The tags a record must carry for its cost to count as covered
    /// (`AISPEND_REQUIRED_TAGS`).
    pub required_tags: Arc<Vec<String>>,
    /// Alert and webhook settings, the ingest kick, their counters.
    pub alerts: Arc<Alerts>,
}

/// Where "now" comes from (override expiry, token expiry, audit times).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

impl AppState {
    pub fn new(store: Arc<dyn Store>, prices: PriceTable, tokens: Tokens) -> Self {
        let prices = Arc::new(prices);
        Self {
            store,
            book: Arc::new(PriceBookCell::new(PriceBook::base_only(prices.clone()))),
            prices,
            tokens,
            metrics: Arc::new(Metrics::default()),
            caps: Arc::new(Caps::new()),
            ingest_gate: Arc::new(IngestGate::default()),
            token_cache: Arc::new(TokenCache::default()),
            clock: Arc::new(crate::domain::time::now_ms),
            keys: Arc::new(Keys::default()),
            retention: Arc::new(RetentionHorizon::default()),
            required_tags: Arc::new(KeyPolicy::default().required_tags),
            alerts: Arc::new(Alerts::default()),
        }
    }

    /// Replaces the clock (tests move time forward with it).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Now, in epoch milliseconds, from the state's clock.
    pub fn now(&self) -> i64 {
        (self.clock)()
    }

    /// Sets the key issuance policy (required tags, lifetimes). Its required
    /// tags are also the ones tag coverage counts.
    /// Sizes the leases of strict budgets (`domain::leases`).
    pub fn with_lease_policy(mut self, policy: crate::domain::leases::LeasePolicy) -> Self {
        self.caps = Arc::new(Caps::with_policy(policy));
        self
    }

    pub fn with_key_policy(mut self, policy: KeyPolicy) -> Self {
        self.required_tags = Arc::new(policy.required_tags.clone());
        self.keys = Arc::new(Keys::new(policy));
        self
    }

    /// Sets the tags coverage requires, alone (tests).
    pub fn with_required_tags(mut self, tags: Vec<String>) -> Self {
        self.required_tags = Arc::new(tags);
        self
    }

    /// Sets the alert and webhook settings.
    pub fn with_alerts(mut self, settings: AlertSettings) -> Self {
        self.alerts = Arc::new(Alerts::new(settings));
        self
    }

    /// Sets how many bytes of ingest bodies may be held at once.
    pub fn with_ingest_memory(mut self, bytes: usize) -> Self {
        self.ingest_gate = Arc::new(IngestGate::new(bytes));
        self
    }

    /// Counts a store failure (the `aispend_store_errors_total` metric).
    pub(crate) fn count_store_error(&self, error: &StoreError) {
        if error.kind() == crate::store::StoreErrorKind::BeyondRetention {
            return; // the caller's range, not a store failure
        }
        Metrics::add(&self.metrics.store_errors, 1);
    }
}
