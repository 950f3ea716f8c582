//! JSON without a document model: word-at-a-time byte scanning (`bytes`),
//! serde-free readers of the few values the filter needs (`fast`), the
//! incremental top-level scanner for bodies that arrive in chunks (`scan`),
//! and the writer the usage record is serialized with (`out`).

pub mod bytes;
pub mod fast;
pub mod out;
pub mod scan;
