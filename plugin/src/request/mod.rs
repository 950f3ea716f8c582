//! One call's path through the filter, callback by callback (`flow`): who
//! is calling (`identity`, with `key_digest` remembering key hashes), which
//! client headers are tags and labels (`tags`), the decision as a value
//! (`decision`), what the provider receives (`upstream`), and the usage
//! record the call leaves (`record`).

pub mod decision;
pub mod flow;
pub mod identity;
pub mod key_digest;
pub mod key_registry;
pub mod record;
pub mod signing;
pub mod tags;
pub mod upstream;
