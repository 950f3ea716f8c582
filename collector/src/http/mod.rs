//! HTTP in and out only: one module per resource, each handler extracts the
//! request, calls one `service` function and maps the result (errors through
//! `error::AppError`). `auth` is the access check every route wears (the
//! table is `domain::access::ROUTES`). No handler module imports another,
//! except the shared JSON body parser of `budgets`.

pub mod audit;
pub mod auth;
pub mod budgets;
pub mod caps;
pub mod health;
pub mod metrics;
pub mod overrides;
pub mod records;
pub mod tokens;
pub mod usage;
