//! FinOps views of usage (SPEC §11): the reporting period (`month=` or
//! `week=`), chargeback lines, FOCUS rows, the showback tree and tag
//! coverage. Pure: every function here works on `UsageReport`s the service
//! asked the store for (rollups, never a scan of records).

pub mod chargeback;
pub mod coverage;
pub mod focus;
pub mod period;
pub mod showback;
pub mod spend;

#[cfg(test)]
mod tests;
