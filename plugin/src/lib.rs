//! aispend's proxy-wasm filter. Everything that decides is plain Rust in the
//! modules below, tested natively; only `glue` (compiled on wasm32) talks to
//! the host through proxy-wasm.

pub mod bytes;
pub mod caps;
pub mod caps_poll;
pub mod config;
pub mod controls;
pub mod decision;
pub mod filter;
pub mod flow;
pub mod host;
pub mod identity;
pub mod ingest;
pub mod json_out;
pub mod key_digest;
pub mod limits;
pub mod profile;
pub mod record;
pub mod shipper;
pub mod tags;
pub mod testing;
pub mod upstream;
pub mod usage;

#[cfg(target_arch = "wasm32")]
mod glue;
