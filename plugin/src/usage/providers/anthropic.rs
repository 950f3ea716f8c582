//! Anthropic Messages (`/v1/messages`).
//!
//! JSON: top-level `model` and `usage` {`input_tokens`,
//! `cache_creation_input_tokens`, `cache_read_input_tokens`, `output_tokens`}.
//! `input_tokens` excludes the cache reads and writes, so the billed prompt is
//! the sum of the three. Thinking tokens are billed inside `output_tokens`
//! and not reported apart, so `reasoning_tokens` stays 0.
//! Stream: `message_start` carries the message (model, input and cache
//! counts, an initial `output_tokens`); each `message_delta` carries the
//! cumulative `output_tokens` (and, in newer API versions, cumulative input
//! counts too, which then replace those of `message_start`).

use crate::json::scan::{is_null, top_level};
use crate::usage::parser::{parse, Counts, Tally, UsageParser, Verdict};
use crate::usage::sse::SseEvent;
use serde::Deserialize;

#[derive(Deserialize)]
struct AnthropicUsage {
    input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    output_tokens: Option<u64>,
}

/// The raw counts, kept apart so a `message_delta` can update some of them.
#[derive(Debug, Default, Clone, Copy)]
struct Raw {
    input: u64,
    cache_write: u64,
    cache_read: u64,
    output: u64,
}

impl Raw {
    fn update(&mut self, u: &AnthropicUsage) {
        let keep = |new: Option<u64>, old: u64| new.unwrap_or(old);
        self.input = keep(u.input_tokens, self.input);
        self.cache_write = keep(u.cache_creation_input_tokens, self.cache_write);
        self.cache_read = keep(u.cache_read_input_tokens, self.cache_read);
        self.output = keep(u.output_tokens, self.output);
    }

    fn counts(self) -> Counts {
        Counts {
            input_tokens: self.input + self.cache_read + self.cache_write,
            cached_input_tokens: self.cache_read,
            cache_write_input_tokens: self.cache_write,
            output_tokens: self.output,
            reasoning_tokens: 0,
        }
    }
}

#[derive(Debug, Default)]
pub struct AnthropicParser {
    tally: Tally,
    raw: Raw,
}

impl AnthropicParser {
    fn apply(&mut self, usage: Option<&[u8]>) {
        let Some(usage) = usage.filter(|u| !is_null(u)) else {
            return;
        };
        match parse::<AnthropicUsage>(usage) {
            Some(u) => {
                self.raw.update(&u);
                self.tally.set_counts(Some(self.raw.counts()));
            }
            None => self.tally.set_counts(None),
        }
    }
}

impl UsageParser for AnthropicParser {
    fn json_keys(&self) -> &'static [&'static str] {
        &["model", "usage"]
    }

    fn read_json(&mut self, values: &[Option<&[u8]>]) {
        self.tally.set_model(values.first().copied().flatten());
        if let Some(Some(usage)) = values.get(1) {
            match parse::<AnthropicUsage>(usage) {
                Some(u) => self
                    .tally
                    .set_counts(Some(Raw::default().with(&u).counts())),
                None => self.tally.set_counts(None),
            }
        }
    }

    fn read_event(&mut self, event: &SseEvent<'_>) -> Verdict {
        let mut name = event.name;
        let typed;
        if name.is_empty() {
            typed = top_level(event.data, &["type"]);
            if let Some([Some(t)]) = typed {
                name = t
                    .strip_prefix(b"\"")
                    .and_then(|t| t.strip_suffix(b"\""))
                    .unwrap_or(t);
            }
        }
        match name {
            b"message_start" => {
                if let Some([Some(message)]) = top_level(event.data, &["message"]) {
                    if let Some([model, usage]) = top_level(message, &["model", "usage"]) {
                        self.tally.set_model(model);
                        self.apply(usage);
                    }
                }
            }
            b"message_delta" => {
                if let Some([usage]) = top_level(event.data, &["usage"]) {
                    self.apply(usage);
                    self.tally.complete = self.tally.usage_seen;
                }
            }
            b"error" => self.tally.stream_error = true,
            _ => {}
        }
        Verdict::Keep
    }

    fn tally(&self) -> &Tally {
        &self.tally
    }
}

impl Raw {
    fn with(mut self, u: &AnthropicUsage) -> Self {
        self.update(u);
        self
    }
}
