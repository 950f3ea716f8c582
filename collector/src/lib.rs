//! aispend collector: ingests usage records from the gateway filter, prices
//! them, stores them and answers usage queries (CONTRACTS §4).
//!
//! Layers, one way: `http` (HTTP in and out) → `service` (the rules) →
//! `domain` (pure types and arithmetic) and `store` (the `Store` trait and
//! its SQLite and PostgreSQL backends). `app(state)` builds the whole HTTP
//! surface; `server::serve` runs it with connection limits; `main.rs` only
//! wires settings, the store and the server together.

pub mod cli;
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
use axum::routing::{delete, get, patch, post, put, MethodRouter};
use axum::Router;

use crate::domain::access::ROUTES;
use crate::service::ingest::MAX_BODY_BYTES;
pub use crate::state::{AppState, Tokens};

/// The handler of one row of the access table (`domain::access::ROUTES`),
/// `None` for a row whose feature is not in this build.
fn handler(method: &str, path: &str, state: &AppState) -> Option<MethodRouter<AppState>> {
    use http::{
        alerts, audit, budgets, caps, finops, health, keys, metrics, openapi, overrides, prices,
        reconcile, records, tokens, ui, usage, webhooks,
    };
    Some(match (method, path) {
        ("GET", "/healthz") => get(health::healthz),
        ("GET", "/metrics") => get(metrics::metrics),
        ("GET", "/openapi.json") => get(openapi::openapi),
        ("GET", "/ui") => get(ui::index),
        ("GET", "/ui/") => get(ui::index),
        ("GET", "/ui/app.js") => get(ui::script),
        ("GET", "/ui/app.css") => get(ui::style),
        ("GET", "/v1/whoami") => get(tokens::whoami),
        ("POST", "/v1/records") => post(records::post_records)
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .route_layer(from_fn_with_state(state.clone(), records::admit)),
        ("GET", "/v1/usage") => get(usage::get_usage),
        ("GET", "/v1/caps") => get(caps::get_caps),
        ("GET", "/v1/budgets") => get(budgets::list),
        ("POST", "/v1/budgets") => post(budgets::create),
        ("GET", "/v1/budgets/{id}") => get(budgets::get_one),
        ("PUT", "/v1/budgets/{id}") => put(budgets::replace),
        ("DELETE", "/v1/budgets/{id}") => delete(budgets::delete),
        ("GET", "/v1/budgets/{id}/leases") => get(budgets::leases),
        ("POST", "/v1/tokens") => post(tokens::create),
        ("GET", "/v1/tokens") => get(tokens::list),
        ("DELETE", "/v1/tokens/{id}") => delete(tokens::revoke),
        ("GET", "/v1/audit") => get(audit::list),
        ("POST", "/v1/overrides") => post(overrides::request),
        ("GET", "/v1/overrides") => get(overrides::list),
        ("POST", "/v1/overrides/{id}/approve") => post(overrides::approve),
        ("POST", "/v1/keys") => post(keys::create),
        ("GET", "/v1/keys") => get(keys::list),
        ("POST", "/v1/keys/revoke") => post(keys::revoke_by_tags),
        ("GET", "/v1/keys/registry") => get(keys::registry),
        ("GET", "/v1/keys/{key_id}") => get(keys::get_one),
        ("PATCH", "/v1/keys/{key_id}") => patch(keys::patch),
        ("POST", "/v1/keys/{key_id}/rotate") => post(keys::rotate),
        ("DELETE", "/v1/keys/{key_id}") => delete(keys::delete),
        ("GET", "/v1/gl-accounts") => get(finops::list_gl_accounts),
        ("PUT", "/v1/gl-accounts/{cost_center}") => put(finops::put_gl_account),
        ("GET", "/v1/closed-months") => get(finops::closed_months),
        ("POST", "/v1/closed-months") => post(finops::close_month),
        ("GET", "/v1/export/chargeback") => get(finops::chargeback),
        ("GET", "/v1/export/focus") => get(finops::focus),
        ("GET", "/v1/reports/showback") => get(finops::showback),
        ("GET", "/v1/reports/unattributed") => get(finops::unattributed),
        ("GET", "/v1/prices") => get(prices::list),
        ("POST", "/v1/prices") => post(prices::change),
        ("POST", "/v1/prices/recompute") => post(prices::recompute),
        ("POST", "/v1/provider-usage") => {
            post(reconcile::import).layer(DefaultBodyLimit::max(reconcile::MAX_IMPORT_BYTES))
        }
        ("GET", "/v1/reconciliation") => get(reconcile::report),
        ("GET", "/v1/forecast") => get(alerts::forecast),
        ("GET", "/v1/alerts") => get(alerts::list),
        ("POST", "/v1/alerts/{id}/ack") => post(alerts::ack),
        ("POST", "/v1/webhooks") => post(webhooks::create),
        ("GET", "/v1/webhooks") => get(webhooks::list),
        ("DELETE", "/v1/webhooks/{id}") => delete(webhooks::delete),
        ("GET", "/v1/webhooks/{id}/deliveries") => get(webhooks::deliveries),
        _ => return None,
    })
}

/// The collector's routes: every row of the access table that has a
/// handler, each behind `http::auth::authorize` (which applies the row).
pub fn app(state: AppState) -> Router {
    let mut router = Router::new();
    for rule in ROUTES {
        if let Some(method_router) = handler(rule.method, rule.path, &state) {
            router = router.route(rule.path, method_router);
        }
    }
    router
        .route_layer(from_fn_with_state(state.clone(), http::auth::authorize))
        .with_state(state)
}

/// The rows of the access table this build serves (the rest belong to
/// features merged later); the role × route matrix test walks these.
pub fn served_routes(state: &AppState) -> Vec<&'static domain::access::RouteRule> {
    ROUTES
        .iter()
        .filter(|rule| handler(rule.method, rule.path, state).is_some())
        .collect()
}
