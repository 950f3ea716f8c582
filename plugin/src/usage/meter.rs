//! `ResponseMeter`: reads usage from one response as its chunks pass.

use super::parser::{BodyWalk, Tally, UsageParser, Verdict};
use super::providers::anthropic::AnthropicParser;
use super::providers::gemini::GeminiParser;
use super::providers::openai::ChatParser;
use super::providers::responses::ResponsesParser;
use super::sse::{SseEvent, SseFramer, DEFAULT_EVENT_LIMIT};
use super::strip::Stripper;
use super::{ChunkEdit, Operation, RequestInfo, Route, Usage, MAX_JSON_BODY};
use crate::json::fast as json_fast;
use crate::json::scan::{scanned_of, top_level_of, CaptureScanner, MAX_KEYS};

/// Bound on one captured JSON value (`usage`, `model`): far above any real
/// usage object, far below a body.
const MAX_CAPTURED_VALUE: usize = 64 << 10;

/// The provider parsers, dispatched statically (no allocation per request).
#[derive(Debug)]
enum Parser {
    Chat(ChatParser),
    Responses(ResponsesParser),
    Anthropic(AnthropicParser),
    Gemini(GeminiParser),
}

impl Parser {
    /// The wire format follows the operation (an OpenAI-compatible chat
    /// endpoint of another provider speaks OpenAI's format).
    fn for_route(route: &Route, strip_usage_chunk: bool) -> Parser {
        match route.operation {
            Operation::Chat | Operation::Embeddings | Operation::Unknown => {
                Parser::Chat(ChatParser::new(strip_usage_chunk))
            }
            Operation::Responses => Parser::Responses(ResponsesParser::default()),
            Operation::Messages => Parser::Anthropic(AnthropicParser::default()),
            Operation::Generate => Parser::Gemini(GeminiParser::default()),
        }
    }

    fn get(&mut self) -> &mut dyn UsageParser {
        match self {
            Parser::Chat(p) => p,
            Parser::Responses(p) => p,
            Parser::Anthropic(p) => p,
            Parser::Gemini(p) => p,
        }
    }

    fn read_event(&mut self, event: &SseEvent<'_>) -> Verdict {
        match self {
            Parser::Chat(p) => p.read_event(event),
            Parser::Responses(p) => p.read_event(event),
            Parser::Anthropic(p) => p.read_event(event),
            Parser::Gemini(p) => p.read_event(event),
        }
    }
}

/// Hand a whole body's values to the parser, unless one is too large.
fn read_whole(p: &mut dyn UsageParser, values: &[Option<&[u8]>; MAX_KEYS]) -> JsonBody {
    let too_large = values
        .iter()
        .flatten()
        .any(|v| v.len() > MAX_CAPTURED_VALUE);
    if !too_large {
        p.read_json(values);
    }
    JsonBody::Whole {
        complete: true,
        too_large,
    }
}

/// A JSON body: most arrive whole in their first callback and are read in
/// place; only a body split across callbacks pays for a scanner and copies.
#[derive(Debug)]
enum JsonBody {
    /// No byte yet.
    Fresh,
    /// Read in place from its only chunk.
    Whole {
        complete: bool,
        too_large: bool,
    },
    Chunked(Box<CaptureScanner>),
}

#[derive(Debug)]
enum Body {
    /// Error responses: nothing to read (the status says what happened).
    Ignored,
    Json(JsonBody),
    Sse {
        framer: Box<SseFramer>,
        /// Present when the usage-only chunk is removed from the client's view.
        stripper: Option<Box<Stripper>>,
        finished: bool,
    },
}

/// Reads usage from one response as its body chunks pass.
#[derive(Debug)]
pub struct ResponseMeter {
    parser: Parser,
    body: Body,
}

/// What a response's headers tell its meter: enough to build it when the
/// first byte must be read, or, for a JSON answer whose first chunk is kept
/// (`Held`), only in the shipper's pass with the call's record (the
/// parser's setup then runs there, warm, and not on each call's path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeterStart {
    status: u32,
    sse: bool,
}

impl MeterStart {
    pub fn new(
        route: &Route,
        request: &RequestInfo,
        status: u32,
        content_type: Option<&str>,
    ) -> Self {
        let sse = match content_type {
            Some(ct) => ct
                .trim_start()
                .get(..17)
                .is_some_and(|t| t.eq_ignore_ascii_case("text/event-stream")),
            None => request.stream || route.path_stream,
        };
        MeterStart { status, sse }
    }

    /// The meter would read a JSON body (as `ResponseMeter::may_hold` for
    /// one that has not been fed yet).
    pub fn may_hold(&self) -> bool {
        self.status < 400 && !self.sse
    }

    /// The meter, for the same route and request info the headers saw.
    pub fn meter(&self, route: &Route, request: &RequestInfo) -> ResponseMeter {
        // OpenAI sends the usage-only chunk only when asked; when the client
        // did not ask, the filter did (or nothing comes and nothing is cut).
        let strip = route.operation == Operation::Chat && !request.client_wants_usage;
        let parser = Parser::for_route(route, strip);
        let body = if self.status >= 400 {
            Body::Ignored
        } else if self.sse {
            let limit = match route.operation {
                // `response.completed` repeats the whole response.
                Operation::Responses => MAX_JSON_BODY,
                _ => DEFAULT_EVENT_LIMIT,
            };
            Body::Sse {
                framer: Box::new(SseFramer::new(limit)),
                stripper: strip.then(|| Box::new(Stripper::new(limit))),
                finished: false,
            }
        } else {
            Body::Json(JsonBody::Fresh)
        };
        ResponseMeter { parser, body }
    }
}

impl ResponseMeter {
    pub fn new(
        route: &Route,
        request: &RequestInfo,
        status: u32,
        content_type: Option<&str>,
    ) -> Self {
        MeterStart::new(route, request, status, content_type).meter(route, request)
    }

    /// Whether the body is JSON (never edited for the client) and no byte
    /// of it was fed yet: its first chunk may then be kept and fed later
    /// (`Held`), with the call's record.
    pub fn may_hold(&self) -> bool {
        matches!(self.body, Body::Json(JsonBody::Fresh))
    }

    /// Feed what was kept (`Held`): the meter then goes on as if it had
    /// read it as it passed, the same chunk with the same ends.
    pub fn resume(&mut self, held: Held) {
        self.feed_end(&held.chunk, held.chunk_was_last);
        if held.ended_after && !held.chunk_was_last {
            self.feed_end(&[], true);
        }
    }

    /// Feed a response body chunk as it passes; the answer says whether the
    /// client sees it unchanged.
    pub fn feed(&mut self, chunk: &[u8]) -> ChunkEdit {
        self.feed_end(chunk, false)
    }

    /// Like `feed`, for the body callback that knows whether this chunk is
    /// the last. When the usage-only chunk is being removed, bytes of an
    /// unfinished event are held until the event is complete (a client cannot
    /// use half an event anyway); the last chunk releases whatever is held.
    pub fn feed_end(&mut self, chunk: &[u8], end_of_stream: bool) -> ChunkEdit {
        let parser = &mut self.parser;
        match &mut self.body {
            Body::Ignored => ChunkEdit::Keep,
            Body::Json(json) => {
                match json {
                    JsonBody::Fresh => {
                        let p = parser.get();
                        // A first chunk that is a complete object is the whole
                        // document (only whitespace may follow), however the
                        // host flags the end: read it in place, in one walk
                        // where the parser can.
                        let walk = p.read_body(chunk, MAX_CAPTURED_VALUE);
                        if let BodyWalk::Read { too_large } = walk {
                            *json = JsonBody::Whole {
                                complete: true,
                                too_large,
                            };
                            return ChunkEdit::Keep;
                        }
                        // Refused: the members walk below would refuse too.
                        let walked = walk == BodyWalk::Unsupported;
                        let keys = p.json_keys();
                        let whole = if end_of_stream {
                            if walked {
                                top_level_of(chunk, keys)
                            } else {
                                scanned_of(chunk, keys)
                            }
                        } else if walked {
                            // Not known to be the last chunk: the members walk
                            // only, so a partial body is not scanned twice.
                            json_fast::top_level_ranges::<MAX_KEYS>(chunk, keys)
                                .map(|ranges| ranges.map(|r| r.and_then(|r| chunk.get(r))))
                        } else {
                            None
                        };
                        *json = match whole {
                            Some(values) => read_whole(p, &values),
                            None if end_of_stream => JsonBody::Whole {
                                complete: false,
                                too_large: false,
                            },
                            None => {
                                let mut scanner = CaptureScanner::new(keys, MAX_CAPTURED_VALUE);
                                scanner.feed(chunk);
                                JsonBody::Chunked(Box::new(scanner))
                            }
                        };
                    }
                    JsonBody::Chunked(scanner) => scanner.feed(chunk),
                    JsonBody::Whole { complete, .. } => {
                        if !chunk.iter().all(|b| crate::json::is_ws(*b)) {
                            // Bytes after the document: not one JSON value.
                            *complete = false;
                        }
                    }
                }
                ChunkEdit::Keep
            }
            Body::Sse {
                framer,
                stripper,
                finished,
            } => {
                if *finished {
                    return ChunkEdit::Keep;
                }
                let chunk_start = framer.offset();
                let mut on_event = |event: &SseEvent<'_>| {
                    if parser.read_event(event) == Verdict::Strip {
                        if let Some(s) = stripper.as_deref_mut() {
                            s.cut(event.start, event.end);
                        }
                    }
                };
                framer.feed(chunk, &mut on_event);
                if end_of_stream {
                    framer.finish(&mut on_event);
                    *finished = true;
                }
                let settled = if end_of_stream {
                    framer.offset()
                } else {
                    framer.event_start()
                };
                match stripper.as_deref_mut() {
                    Some(s) => s.edit(chunk, chunk_start, settled),
                    None => ChunkEdit::Keep,
                }
            }
        }
    }

    /// The usage of the whole response. `end_of_stream` is false when the
    /// response was cut off before its end.
    pub fn finish(&mut self, end_of_stream: bool) -> Usage {
        let parser = &mut self.parser;
        match &mut self.body {
            Body::Ignored => Usage::default(),
            Body::Json(json) => {
                let (complete, too_large) = match json {
                    JsonBody::Fresh => (false, false),
                    JsonBody::Whole {
                        complete,
                        too_large,
                    } => (*complete, *too_large),
                    JsonBody::Chunked(scanner) => (scanner.complete(), scanner.overflowed()),
                };
                if too_large {
                    return failed("body_too_large");
                }
                if !complete {
                    return failed(if end_of_stream {
                        "unparseable_body"
                    } else {
                        "incomplete_stream"
                    });
                }
                let p = parser.get();
                if let JsonBody::Chunked(scanner) = json {
                    let mut values: [Option<&[u8]>; MAX_KEYS] = [None; MAX_KEYS];
                    for (k, slot) in values.iter_mut().enumerate().take(p.json_keys().len()) {
                        *slot = scanner.value(k);
                    }
                    p.read_json(&values);
                }
                let tally = p.tally();
                let error = if tally.malformed {
                    Some("unparseable_body")
                } else if !tally.usage_seen {
                    Some("no_usage")
                } else {
                    None
                };
                usage(tally, error)
            }
            Body::Sse {
                framer, finished, ..
            } => {
                if !*finished {
                    framer.finish(|event| {
                        parser.read_event(event);
                    });
                    *finished = true;
                }
                let p = parser.get();
                p.settle();
                let tally = p.tally();
                let error = if tally.stream_error {
                    Some("stream_error")
                } else if tally.complete {
                    None
                } else if !end_of_stream {
                    Some("incomplete_stream")
                } else if framer.overflowed_events() > 0 {
                    Some("event_too_large")
                } else if tally.done_marker {
                    // A finished OpenAI stream that was never asked for usage
                    // (the config switch is off and the client did not ask).
                    Some("no_usage")
                } else {
                    Some("incomplete_stream")
                };
                usage(tally, error)
            }
        }
    }
}

fn failed(error: &'static str) -> Usage {
    Usage {
        error: Some(error),
        ..Usage::default()
    }
}

fn usage(tally: &Tally, error: Option<&'static str>) -> Usage {
    let c = tally.counts;
    Usage {
        input_tokens: c.input_tokens,
        cached_input_tokens: c.cached_input_tokens,
        cache_write_input_tokens: c.cache_write_input_tokens,
        output_tokens: c.output_tokens,
        reasoning_tokens: c.reasoning_tokens,
        model: tally.model.clone(),
        error,
    }
}

/// The first chunk of a JSON response body, kept to be fed to its meter
/// later (`ResponseMeter::resume`), with the call's record: the client
/// sees a JSON body unchanged either way.
#[derive(Debug)]
pub struct Held {
    chunk: Vec<u8>,
    /// The chunk came flagged as the last.
    chunk_was_last: bool,
    /// The end came after it, in an empty callback.
    ended_after: bool,
}

/// The largest first chunk kept for later (a bigger one is read at once).
pub const MAX_HELD: usize = 16 << 10;

impl Held {
    /// Keep `chunk` if it is worth keeping (not empty, at most `MAX_HELD`).
    pub fn keep(chunk: Vec<u8>, end_of_stream: bool) -> Result<Self, Vec<u8>> {
        if chunk.is_empty() || chunk.len() > MAX_HELD {
            return Err(chunk);
        }
        Ok(Held {
            chunk,
            chunk_was_last: end_of_stream,
            ended_after: false,
        })
    }

    /// The end of the body came in an empty callback.
    pub fn end(&mut self) {
        self.ended_after = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::{classify, PathKind};

    fn route(path: &str) -> Route {
        match classify(path) {
            PathKind::Metered(route) => route,
            other => panic!("{path}: {other:?}"),
        }
    }

    /// The response headers' note decides holding exactly as the meter it
    /// builds would: only a JSON answer below 400 may be kept for later.
    #[test]
    fn meter_start_may_hold_as_the_meter_it_builds() {
        let paths = [
            "/v1/chat/completions",
            "/v1/responses",
            "/v1/messages",
            "/v1beta/models/gemini-2.0-flash:streamGenerateContent",
            "/v1beta/models/gemini-2.0-flash:generateContent",
        ];
        let types = [
            None,
            Some("application/json"),
            Some("text/event-stream; charset=utf-8"),
            Some("  TEXT/EVENT-STREAM"),
            Some("text/plain"),
        ];
        let mut held = 0;
        for path in paths {
            let route = route(path);
            for stream in [false, true] {
                let request = RequestInfo {
                    stream,
                    ..RequestInfo::default()
                };
                for status in [200, 201, 399, 400, 429, 500] {
                    for ct in types {
                        let start = MeterStart::new(&route, &request, status, ct);
                        let built = start.meter(&route, &request);
                        let direct = ResponseMeter::new(&route, &request, status, ct);
                        assert_eq!(start.may_hold(), built.may_hold(), "{path} {status} {ct:?}");
                        assert_eq!(
                            built.may_hold(),
                            direct.may_hold(),
                            "{path} {status} {ct:?}"
                        );
                        held += usize::from(start.may_hold());
                    }
                }
            }
        }
        assert!(held > 0, "some answers are JSON");
    }
}
