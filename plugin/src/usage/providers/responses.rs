//! OpenAI Responses API (`/v1/responses`).
//!
//! JSON: top-level `model` and `usage` {`input_tokens`,
//! `input_tokens_details.cached_tokens`, `output_tokens`,
//! `output_tokens_details.reasoning_tokens`}.
//! Stream: named events; the response object (with `model` and `usage`)
//! arrives whole in the terminal `response.completed` (or
//! `response.incomplete` / `response.failed`) event. `response.created` names
//! the model early, so a cut-off stream still records it.

use crate::json::scan::{is_null, top_level};
use crate::usage::parser::{n, parse, Counts, Tally, UsageParser, Verdict};
use crate::usage::sse::SseEvent;
use serde::Deserialize;

#[derive(Deserialize)]
struct InputDetails {
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct OutputDetails {
    reasoning_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct ResponsesUsage {
    input_tokens: Option<u64>,
    input_tokens_details: Option<InputDetails>,
    output_tokens: Option<u64>,
    output_tokens_details: Option<OutputDetails>,
}

fn counts(raw: &[u8]) -> Option<Counts> {
    let u: ResponsesUsage = parse(raw)?;
    Some(Counts {
        input_tokens: n(u.input_tokens),
        cached_input_tokens: n(u.input_tokens_details.and_then(|d| d.cached_tokens)),
        cache_write_input_tokens: 0,
        output_tokens: n(u.output_tokens),
        reasoning_tokens: n(u.output_tokens_details.and_then(|d| d.reasoning_tokens)),
    })
}

#[derive(Debug, Default)]
pub struct ResponsesParser {
    tally: Tally,
}

impl ResponsesParser {
    fn read_response(&mut self, response: &[u8]) {
        let Some([model, usage]) = top_level(response, &["model", "usage"]) else {
            return;
        };
        self.tally.set_model(model);
        if let Some(usage) = usage.filter(|u| !is_null(u)) {
            self.tally.set_counts(counts(usage));
        }
    }
}

/// Event kinds this parser cares about.
enum Kind {
    Started,
    Terminal { failed: bool },
    Error,
    Other,
}

fn kind(name: &[u8]) -> Kind {
    match name {
        b"response.created" | b"response.in_progress" => Kind::Started,
        b"response.completed" | b"response.incomplete" => Kind::Terminal { failed: false },
        b"response.failed" => Kind::Terminal { failed: true },
        b"error" => Kind::Error,
        _ => Kind::Other,
    }
}

impl UsageParser for ResponsesParser {
    fn json_keys(&self) -> &'static [&'static str] {
        &["model", "usage"]
    }

    fn read_json(&mut self, values: &[Option<&[u8]>]) {
        self.tally.set_model(values.first().copied().flatten());
        if let Some(usage) = values.get(1).copied().flatten().filter(|u| !is_null(u)) {
            self.tally.set_counts(counts(usage));
        }
    }

    fn read_event(&mut self, event: &SseEvent<'_>) -> Verdict {
        let mut k = kind(event.name);
        if event.name.is_empty() {
            // No `event:` line: the data's `type` says the same thing.
            if let Some([Some(t)]) = top_level(event.data, &["type"]) {
                k = kind(
                    t.strip_prefix(b"\"")
                        .and_then(|t| t.strip_suffix(b"\""))
                        .unwrap_or(t),
                );
            }
        }
        match k {
            Kind::Other => {}
            Kind::Error => self.tally.stream_error = true,
            Kind::Started => {
                if self.tally.model.is_none() {
                    if let Some([Some(response)]) = top_level(event.data, &["response"]) {
                        if let Some([model]) = top_level(response, &["model"]) {
                            self.tally.set_model(model);
                        }
                    }
                }
            }
            Kind::Terminal { failed } => {
                if let Some([Some(response)]) = top_level(event.data, &["response"]) {
                    self.read_response(response);
                }
                self.tally.complete = true;
                self.tally.stream_error |= failed;
            }
        }
        Verdict::Keep
    }

    fn tally(&self) -> &Tally {
        &self.tally
    }
}
