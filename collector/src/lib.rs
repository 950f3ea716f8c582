//! aispend collector: ingests usage records from the gateway filter, prices
//! them, stores them and answers usage queries (SPEC §4).
//!
//! `app(state)` builds the whole HTTP surface; `main.rs` only wires settings,
//! the store and the listener around it.

pub mod domain;
pub mod error;
pub mod http;
pub mod metrics;
pub mod settings;
pub mod store;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::Router;

use crate::domain::pricing::PriceTable;
use crate::http::RequiredToken;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

/// Bearer tokens per audience; `None` disables the check (`--insecure-no-auth`).
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    pub ingest: Option<String>,
    pub read: Option<String>,
    /// For the budget API (writes); not used by any route yet.
    pub admin: Option<String>,
}

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub prices: Arc<PriceTable>,
    pub tokens: Tokens,
    pub metrics: Arc<Metrics>,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, prices: PriceTable, tokens: Tokens) -> Self {
        Self {
            store,
            prices: Arc::new(prices),
            tokens,
            metrics: Arc::new(Metrics::default()),
        }
    }

    fn count_store_error(&self, _error: &StoreError) {
        Metrics::add(&self.metrics.store_errors, 1);
    }
}

/// The collector's routes.
pub fn app(state: AppState) -> Router {
    let ingest = Router::new()
        .route("/v1/records", post(http::records::post_records))
        .layer(DefaultBodyLimit::max(http::records::MAX_BODY_BYTES))
        .route_layer(from_fn_with_state(
            RequiredToken(state.tokens.ingest.clone()),
            http::require_token,
        ));
    let read = Router::new()
        .route("/v1/usage", get(http::usage::get_usage))
        .route_layer(from_fn_with_state(
            RequiredToken(state.tokens.read.clone()),
            http::require_token,
        ));
    Router::new()
        .route("/healthz", get(http::health::healthz))
        .route("/metrics", get(http::metrics::metrics))
        .merge(ingest)
        .merge(read)
        .with_state(state)
}
