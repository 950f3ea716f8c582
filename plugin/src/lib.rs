//! aispend's proxy-wasm filter. Everything that decides is plain Rust in the
//! modules below, tested natively; only `glue` (compiled on wasm32) talks to
//! the host through proxy-wasm.

pub mod alloc;
pub mod ascii;
pub mod config;
pub mod controls;
pub mod filter;
pub mod host;
pub mod jobs;
pub mod json;
pub mod request;
pub mod usage;
pub mod vm;

#[cfg(target_arch = "wasm32")]
mod glue;
