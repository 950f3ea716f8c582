//! SQLite-only behaviour (the behaviour every store shares is in
//! `store/tests.rs`): how ingest stores ids and rows, how record rows are
//! matched back after duplicates, and sealed days.

mod ingest;
mod records;
mod seal;
