//! The rules between the HTTP handlers and the store. Handlers in `http/`
//! extract the request and call one function here; these functions apply
//! the domain rules (`domain/`), call the store and answer plain values or
//! an `AppError`, which `error.rs` maps to a status code.
//!
//! - `access`: the caller behind a bearer token (cached) and `/v1/tokens`.
//! - `audit`: `audit::record`, the one line every write adds; `/v1/audit`.
//! - `ingest`: validate each record, price it, insert the valid ones.
//! - `budgets`: budget CRUD and each budget's spend and state now.
//! - `caps`: the cap flags gateways poll, computed from the budgets' state
//!   and cached.
//! - `overrides`: the two-person hard-cap override.
//! - `keys`: virtual keys (issue, change, rotate, revoke; every change
//!   through one `commit`) and the registry snapshot gateways poll.
//! - `usage`: usage reports and whether the store answers.
//! - `retention`: the background deletion of old raw records.

pub mod access;
pub mod alerts;
pub mod audit;
pub mod budgets;
pub mod caps;
pub mod finops;
pub mod ingest;
pub mod keys;
pub mod overrides;
pub mod prices;
pub mod reconcile;
pub mod retention;
pub mod usage;
pub mod webhook_client;
pub mod webhooks;
