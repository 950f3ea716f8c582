//! HTTP in and out only: one module per resource, each handler extracts the
//! request, calls one `service` function and maps the result (errors through
//! `error::AppError`). `auth` is the token guard every route group wears.
//! No handler module imports another.

pub mod auth;
pub mod budgets;
pub mod caps;
pub mod finops;
pub mod health;
pub mod metrics;
pub mod records;
pub mod usage;
