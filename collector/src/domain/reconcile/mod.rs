//! Reconciliation with the provider's bill (SPEC §13): providers' exports
//! (`import`) and the comparison with what the gateways measured (`report`).

pub mod import;
pub mod report;
