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

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

use crate::domain::pricing::PriceTable;
use crate::http::budgets::AnyToken;
use crate::http::caps::{Caps, DEFAULT_POLL_INTERVAL_MS};
use crate::http::RequiredToken;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

/// Bearer tokens per audience; `None` disables the check (`--insecure-no-auth`).
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    pub ingest: Option<String>,
    pub read: Option<String>,
    /// For the budget API: writes need it, reads accept it too.
    pub admin: Option<String>,
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
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, prices: PriceTable, tokens: Tokens) -> Self {
        Self {
            store,
            prices: Arc::new(prices),
            tokens,
            metrics: Arc::new(Metrics::default()),
            caps: Arc::new(Caps::new(DEFAULT_POLL_INTERVAL_MS)),
        }
    }

    /// Sets the `poll_interval_ms` that `GET /v1/caps` tells gateways.
    pub fn with_caps_poll_ms(mut self, poll_interval_ms: u64) -> Self {
        self.caps = Arc::new(Caps::new(poll_interval_ms));
        self
    }

    fn count_store_error(&self, _error: &StoreError) {
        Metrics::add(&self.metrics.store_errors, 1);
    }
}

/// After a successful ingest, lets the caps cache know spend may have moved.
async fn note_ingest(State(caps): State<Arc<Caps>>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if response.status().is_success() {
        caps.records_ingested();
    }
    response
}

/// The collector's routes.
pub fn app(state: AppState) -> Router {
    let ingest = Router::new()
        .route("/v1/records", post(http::records::post_records))
        .layer(DefaultBodyLimit::max(http::records::MAX_BODY_BYTES))
        .route_layer(from_fn_with_state(state.caps.clone(), note_ingest))
        .route_layer(from_fn_with_state(
            RequiredToken(state.tokens.ingest.clone()),
            http::require_token,
        ));
    let read = Router::new()
        .route("/v1/usage", get(http::usage::get_usage))
        .route("/v1/caps", get(http::caps::get_caps))
        .route_layer(from_fn_with_state(
            RequiredToken(state.tokens.read.clone()),
            http::require_token,
        ));
    Router::new()
        .route("/healthz", get(http::health::healthz))
        .route("/metrics", get(http::metrics::metrics))
        .merge(ingest)
        .merge(read)
        .merge(budget_routes(&state.tokens))
        .with_state(state)
}

/// The budget API: GET with the read or admin token, writes with admin only.
fn budget_routes(tokens: &Tokens) -> Router<AppState> {
    use http::budgets::{create, delete, get_one, list, replace, require_any_token};
    let reader = || {
        from_fn_with_state(
            AnyToken(vec![tokens.read.clone(), tokens.admin.clone()]),
            require_any_token,
        )
    };
    let admin = || from_fn_with_state(RequiredToken(tokens.admin.clone()), http::require_token);
    Router::new()
        .route(
            "/v1/budgets",
            get(list)
                .route_layer(reader())
                .merge(post(create).route_layer(admin())),
        )
        .route(
            "/v1/budgets/{id}",
            get(get_one).route_layer(reader()).merge(
                axum::routing::put(replace)
                    .delete(delete)
                    .route_layer(admin()),
            ),
        )
}
