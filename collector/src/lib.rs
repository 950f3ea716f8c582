//! aispend collector: ingests usage records from the gateway filter, prices
//! them, stores them and answers usage queries (CONTRACTS §4).
//!
//! Layers, one way: `http` (HTTP in and out) → `service` (the rules) →
//! `domain` (pure types and arithmetic) and `store` (the `Store` trait and
//! its SQLite and PostgreSQL backends). `app(state)` builds the whole HTTP
//! surface; `server::serve` runs it with connection limits; `main.rs` only
//! wires settings, the store and the server together.

pub mod domain;
pub mod error;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod server;
pub mod service;
pub mod settings;
pub mod state;
pub mod store;

use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post, put};
use axum::Router;

use crate::http::auth::{require_token, AnyToken};
use crate::service::ingest::MAX_BODY_BYTES;
pub use crate::state::{AppState, Tokens};

/// The collector's routes, each group behind the tokens of its role.
pub fn app(state: AppState) -> Router {
    let tokens = &state.tokens;
    let guard = |allowed: AnyToken| from_fn_with_state(allowed, require_token);
    let known = [
        tokens.ingest.clone(),
        tokens.read.clone(),
        tokens.admin.clone(),
    ];
    let only = |allowed: &[&Option<String>]| {
        AnyToken::new(allowed.iter().map(|t| (*t).clone()).collect(), &known)
    };
    let ingest = only(&[&tokens.ingest]);
    let read = only(&[&tokens.read]);
    // Budget reads take the read or the admin token; writes only admin.
    let budget_read = only(&[&tokens.read, &tokens.admin]);
    let admin = only(&[&tokens.admin]);

    let records = Router::new()
        .route("/v1/records", post(http::records::post_records))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .route_layer(from_fn_with_state(state.clone(), http::records::admit))
        .route_layer(guard(ingest));
    let reads = Router::new()
        .route("/v1/usage", get(http::usage::get_usage))
        .route("/v1/caps", get(http::caps::get_caps))
        .route_layer(guard(read));
    let budgets = {
        use http::budgets::{create, delete, get_one, list, replace};
        Router::new()
            .route(
                "/v1/budgets",
                get(list)
                    .route_layer(guard(budget_read.clone()))
                    .merge(post(create).route_layer(guard(admin.clone()))),
            )
            .route(
                "/v1/budgets/{id}",
                get(get_one)
                    .route_layer(guard(budget_read))
                    .merge(put(replace).delete(delete).route_layer(guard(admin))),
            )
    };
    // FinOps (SPEC §11). Until the role table lands: writes (GL accounts,
    // closing a month) take the admin token; exports and reports take the
    // read or the admin token, like budget reads.
    let finops = {
        use http::finops::{
            chargeback, close_month, closed_months, focus, list_gl_accounts, put_gl_account,
            showback, unattributed,
        };
        let finops_read = only(&[&tokens.read, &tokens.admin]);
        let finops_write = only(&[&tokens.admin]);
        Router::new()
            .route(
                "/v1/gl-accounts",
                get(list_gl_accounts).route_layer(guard(finops_read.clone())),
            )
            .route(
                "/v1/gl-accounts/{cost_center}",
                put(put_gl_account).route_layer(guard(finops_write.clone())),
            )
            .route(
                "/v1/closed-months",
                get(closed_months)
                    .route_layer(guard(finops_read.clone()))
                    .merge(post(close_month).route_layer(guard(finops_write))),
            )
            .route("/v1/export/chargeback", get(chargeback))
            .route("/v1/export/focus", get(focus))
            .route("/v1/reports/showback", get(showback))
            .route("/v1/reports/unattributed", get(unattributed))
            .route_layer(guard(finops_read))
    };
    Router::new()
        .route("/healthz", get(http::health::healthz))
        .route("/metrics", get(http::metrics::metrics))
        .merge(records)
        .merge(reads)
        .merge(budgets)
        .merge(finops)
        .with_state(state)
}
