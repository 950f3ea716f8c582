//! Usage capture: which provider/operation a path is, what the client asked
//! for (request body), and the normalized token counts of SPEC §3 read from the
//! response as it passes (JSON or SSE), one parser per provider.
//!
//! This is the seam between the filter and the provider parsers. The glue calls,
//! per request:
//!   1. `detect(path)` in request headers → `Option<Route>` (None: not an LLM call we meter),
//!   2. `inspect_request(&route, body)` once the request body is complete,
//!   3. `ResponseMeter::new(&route, &request, status, content_type)` in response headers,
//!      then `meter.feed(chunk)` for every response body chunk as it passes (never buffered),
//!   4. `meter.finish(end_of_stream_seen)` → `Usage` for the record.
//! Nothing here touches proxy_wasm.

/// Who serves the call. `as_str` values are the record's `provider` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    OpenAi,
    Azure,
    Anthropic,
    Gemini,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Azure => "azure",
            Provider::Anthropic => "anthropic",
            Provider::Gemini => "gemini",
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
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Chat => "chat",
            Operation::Responses => "responses",
            Operation::Embeddings => "embeddings",
            Operation::Messages => "messages",
            Operation::Generate => "generate",
        }
    }
}

/// A metered route, detected from the request path (SPEC §3 table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub provider: Provider,
    pub operation: Operation,
    /// Model named by the path (Gemini `models/{m}:…`, Azure deployment `{d}`).
    pub path_model: Option<String>,
    /// The path itself says the response streams (Gemini `:streamGenerateContent`).
    pub path_stream: bool,
}

/// Detect provider and operation from the request path (query string allowed).
pub fn detect(path: &str) -> Option<Route> {
    let path = path.split('?').next().unwrap_or(path);
    let route = |provider, operation| {
        Some(Route {
            provider,
            operation,
            path_model: None,
            path_stream: false,
        })
    };
    match path {
        "/v1/chat/completions" => route(Provider::OpenAi, Operation::Chat),
        "/v1/responses" => route(Provider::OpenAi, Operation::Responses),
        "/v1/embeddings" => route(Provider::OpenAi, Operation::Embeddings),
        "/v1/messages" => route(Provider::Anthropic, Operation::Messages),
        _ => None,
    }
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

/// Read `model` and `stream` from a JSON request body. Unparseable bodies give
/// defaults: the provider will answer the error, and we record it.
pub fn inspect_request(route: &Route, body: &[u8], _opts: &UsageOptions) -> RequestInfo {
    #[derive(serde::Deserialize)]
    struct Req<'a> {
        #[serde(borrow)]
        model: Option<std::borrow::Cow<'a, str>>,
        #[serde(default)]
        stream: bool,
    }
    let parsed: Option<Req> = serde_json::from_slice(body).ok();
    RequestInfo {
        model: parsed
            .as_ref()
            .and_then(|r| r.model.as_ref().map(|m| m.to_string()))
            .or_else(|| route.path_model.clone()),
        stream: parsed.map(|r| r.stream).unwrap_or(false) || route.path_stream,
        client_wants_usage: false,
        body_rewrite: None,
    }
}

/// Normalized token counts (SPEC §3) plus what the response said about itself.
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

/// Largest JSON body kept to read usage from; larger bodies are recorded with
/// `error: "body_too_large"` (the call itself is never failed).
pub const MAX_JSON_BODY: usize = 4 << 20;

/// Reads usage from one response as its body chunks pass.
#[derive(Debug)]
pub struct ResponseMeter {
    route: Route,
    status: u32,
    body: Vec<u8>,
    too_large: bool,
}

impl ResponseMeter {
    pub fn new(
        route: &Route,
        _request: &RequestInfo,
        status: u32,
        _content_type: Option<&str>,
    ) -> Self {
        ResponseMeter {
            route: route.clone(),
            status,
            body: Vec::new(),
            too_large: false,
        }
    }

    /// Feed a response body chunk as it passes; the answer says whether the
    /// client sees it unchanged.
    pub fn feed(&mut self, chunk: &[u8]) -> ChunkEdit {
        if self.too_large || self.status >= 400 {
            return ChunkEdit::Keep;
        }
        if self.body.len() + chunk.len() > MAX_JSON_BODY {
            self.too_large = true;
            self.body = Vec::new();
            return ChunkEdit::Keep;
        }
        self.body.extend_from_slice(chunk);
        ChunkEdit::Keep
    }

    /// The usage of the whole response. `end_of_stream` is false when the
    /// response was cut off before its end.
    pub fn finish(&mut self, _end_of_stream: bool) -> Usage {
        if self.status >= 400 {
            return Usage::default();
        }
        if self.too_large {
            return Usage {
                error: Some("body_too_large"),
                ..Usage::default()
            };
        }
        let _ = &self.route;
        parse_openai_json(&self.body)
    }
}

fn parse_openai_json(body: &[u8]) -> Usage {
    #[derive(serde::Deserialize, Default)]
    struct Details {
        #[serde(default)]
        cached_tokens: u64,
        #[serde(default)]
        reasoning_tokens: u64,
    }
    #[derive(serde::Deserialize)]
    struct U {
        #[serde(default)]
        prompt_tokens: u64,
        #[serde(default)]
        completion_tokens: u64,
        #[serde(default)]
        prompt_tokens_details: Option<Details>,
        #[serde(default)]
        completion_tokens_details: Option<Details>,
    }
    #[derive(serde::Deserialize)]
    struct Resp {
        model: Option<String>,
        usage: Option<U>,
    }
    match serde_json::from_slice::<Resp>(body) {
        Ok(Resp {
            model,
            usage: Some(u),
        }) => Usage {
            input_tokens: u.prompt_tokens,
            cached_input_tokens: u
                .prompt_tokens_details
                .map(|d| d.cached_tokens)
                .unwrap_or(0),
            cache_write_input_tokens: 0,
            output_tokens: u.completion_tokens,
            reasoning_tokens: u
                .completion_tokens_details
                .map(|d| d.reasoning_tokens)
                .unwrap_or(0),
            model,
            error: None,
        },
        Ok(Resp { model, usage: None }) => Usage {
            model,
            error: Some("no_usage"),
            ..Usage::default()
        },
        Err(_) => Usage {
            error: Some("unparseable_body"),
            ..Usage::default()
        },
    }
}
