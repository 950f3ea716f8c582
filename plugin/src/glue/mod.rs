//! The only code that talks to proxy-wasm: adapts host callbacks to
//! `flow::RequestFlow` (HTTP contexts) and `ingest` (root context), and
//! hostcalls to the `Host` trait. Compiled on wasm32 only.

mod http;
mod proxy_host;
mod root;

use proxy_wasm::traits::RootContext;

/// Small blocks recycled per size class in front of dlmalloc (see `alloc`).
#[global_allocator]
static ALLOCATOR: crate::alloc::ClassCache<std::alloc::System> =
    crate::alloc::ClassCache::new(std::alloc::System);
use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(root::Root::default()) });
}}
