//! Plain logic with no HTTP or storage: what a record is, how it is validated
//! and priced, and how usage queries are parsed and aggregated.
pub mod access;
pub mod aggregate;
pub mod alerts;
pub mod audit;
pub mod budgets;
pub mod finops;
pub mod keys;
pub mod leases;
pub mod openapi;
pub mod overrides;
pub mod pricing;
pub mod record;
pub mod time;
pub mod usage_query;
pub mod validate;
pub mod webhooks;
