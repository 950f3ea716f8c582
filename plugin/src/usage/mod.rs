//! Usage capture: which provider/operation a path is, what the client asked
//! for (request body), and the normalized token counts of CONTRACTS §3 read from the
//! response as it passes (JSON or SSE), one parser per provider.
//!
//! This is the seam between the filter and the provider parsers. The glue calls,
//! per request:
//!   1. `detect(path)` in request headers → `Option<Route>` (None: not an LLM call we meter),
//!   2. `inspect_request(&route, body)` once the request body is complete,
//!   3. `ResponseMeter::new(&route, &request, status, content_type)` in response headers
//!      (the filter notes `MeterStart::new(…)` there and builds the meter from it with
//!      the first byte it reads, or with the record when the first chunk is kept),
//!      then `meter.feed(chunk)` for every response body chunk as it passes (never buffered;
//!      `meter.feed_end(chunk, end_of_stream)` in the body callback that knows the last
//!      chunk — needed when the injected usage chunk is being removed, see `strip`),
//!      applying the returned `ChunkEdit`,
//!   4. `meter.finish(end_of_stream_seen)` → `Usage` for the record.
//!
//! Nothing here touches proxy_wasm.
//!
//! Layout: `route` (paths), `request` (request body and its rewrite), `meter`
//! (per-response state and the final `Usage`), `sse` (event framer),
//! `strip` (removing the injected usage chunk), `parser` (the trait) and
//! `providers/`, one module per wire format: `openai` (chat, embeddings),
//! `responses`, `anthropic`, `gemini`. JSON scanning lives in `crate::json`.

mod meter;
pub mod output_limit;
pub mod parser;
pub mod providers;
mod request;
mod route;
pub mod sse;
mod strip;

pub use meter::{Held, MeterStart, ResponseMeter, MAX_HELD};
pub use request::{body_scanner, inspect_request, inspect_scanned, inspect_whole_request};
pub use route::{classify, detect, unknown as unknown_route, PathKind};

/// Who serves the call. `as_str` values are the record's `provider` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    OpenAi,
    Azure,
    Anthropic,
    Gemini,
    /// A path on an LLM route that matches no known call
    /// (`usage.unknown_paths: "meter"`).
    Unknown,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Azure => "azure",
            Provider::Anthropic => "anthropic",
            Provider::Gemini => "gemini",
            Provider::Unknown => "unknown",
        }
    }
}

/// What kind of call. `as_str` values are the record's `operation` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Chat,
    Responses,
    Embeddings,
    Messages,
    Generate,
    /// Read as OpenAI-format JSON/SSE usage, if any.
    Unknown,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Chat => "chat",
            Operation::Responses => "responses",
            Operation::Embeddings => "embeddings",
            Operation::Messages => "messages",
            Operation::Generate => "generate",
            Operation::Unknown => "unknown",
        }
    }
}

/// A metered route, detected from the request path (CONTRACTS §3 table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub provider: Provider,
    pub operation: Operation,
    /// Model named by the path (Gemini `models/{m}:…`, Azure deployment `{d}`).
    pub path_model: Option<String>,
    /// The path itself says the response streams (Gemini `:streamGenerateContent`).
    pub path_stream: bool,
}

/// Switches from the filter config that change how requests are prepared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageOptions {
    /// Add `stream_options.include_usage` to OpenAI chat streams that lack it
    /// (config `usage.openai_stream_usage`, default true).
    pub openai_stream_usage: bool,
}

impl Default for UsageOptions {
    fn default() -> Self {
        UsageOptions {
            openai_stream_usage: true,
        }
    }
}

/// What the client asked for, read from the request body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    pub model: Option<String>,
    pub stream: bool,
    /// The client asked for the usage chunk itself (OpenAI `stream_options.include_usage`);
    /// when false and we added it, the usage-only chunk is removed from the client's view.
    pub client_wants_usage: bool,
    /// When Some, the glue replaces the request body with these bytes before it goes upstream.
    pub body_rewrite: Option<Vec<u8>>,
}

/// What the glue does with a response body chunk after `ResponseMeter::feed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkEdit {
    /// Pass the chunk on unchanged (the common case: no copy, no allocation).
    Keep,
    /// Replace the chunk with these bytes (e.g. the injected usage-only SSE event removed).
    Replace(Vec<u8>),
}

/// Normalized token counts (CONTRACTS §3) plus what the response said about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub cache_write_input_tokens: u64,
    pub output_tokens: u64,
    pub reasoning_tokens: u64,
    /// Model the provider reports in its response.
    pub model: Option<String>,
    /// Short error code when usage could not be read (`unparseable_body`,
    /// `body_too_large`, `incomplete_stream`, …); None when usage was read.
    pub error: Option<&'static str>,
}

/// Size a JSON body is expected to stay under. Response bodies are not kept:
/// the scanner keeps only the top-level `model`/`usage` values (each bounded),
/// so larger bodies are metered too; the bound applies to one unfinished
/// Responses API SSE event (`response.completed` repeats the whole response)
/// and is what the glue may use to bound a request body it buffers.
pub const MAX_JSON_BODY: usize = 4 << 20;
