//! The rules between the HTTP handlers and the store. Handlers in `http/`
//! extract the request and call one function here; these functions apply
//! the domain rules (`domain/`), call the store and answer plain values or
//! an `AppError`, which `error.rs` maps to a status code.
//!
//! - `ingest`: validate each record, price it, insert the valid ones.
//! - `budgets`: budget CRUD and each budget's spend and state now.
//! - `caps`: the cap flags gateways poll, computed from the budgets' state
//!   and cached.
//! - `usage`: usage reports and whether the store answers.

pub mod budgets;
pub mod caps;
pub mod finops;
pub mod ingest;
pub mod usage;
