//! OpenAI (and Azure OpenAI) chat completions and embeddings.
//!
//! JSON: top-level `model` and `usage` {`prompt_tokens`, `completion_tokens`,
//! `prompt_tokens_details.cached_tokens`, `completion_tokens_details.reasoning_tokens`};
//! embeddings have only `prompt_tokens`.
//! Stream: with `stream_options.include_usage` every chunk carries `"usage":null`
//! and one last chunk before `data: [DONE]` has `"choices":[]` and the usage.

use crate::json::fast::{members, nested_uint, once, uint_or_null};
use crate::json::scan::{has_object_member, is_empty_array, is_null, top_level};
use crate::usage::parser::{n, parse, Counts, Tally, UsageParser, Verdict};
use crate::usage::sse::SseEvent;
use serde::Deserialize;

#[derive(Deserialize)]
struct PromptDetails {
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct CompletionDetails {
    reasoning_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct ChatUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    prompt_tokens_details: Option<PromptDetails>,
    completion_tokens_details: Option<CompletionDetails>,
}

/// Normalize an OpenAI `usage` object. `prompt_tokens` already includes the
/// cached share and `completion_tokens` the reasoning share.
pub fn chat_counts(raw: &[u8]) -> Option<Counts> {
    fast_chat_counts(raw).or_else(|| serde_chat_counts(raw))
}

/// `chat_counts` without serde, for the usage objects OpenAI actually sends.
fn fast_chat_counts(raw: &[u8]) -> Option<Counts> {
    let mut c = Counts::default();
    let mut seen = 0;
    members(raw, |key, value| {
        match key {
            b"prompt_tokens" => {
                once(&mut seen, 1)?;
                c.input_tokens = uint_or_null(value)?;
            }
            b"completion_tokens" => {
                once(&mut seen, 2)?;
                c.output_tokens = uint_or_null(value)?;
            }
            b"prompt_tokens_details" => {
                once(&mut seen, 4)?;
                c.cached_input_tokens = nested_uint(value, b"cached_tokens")?;
            }
            b"completion_tokens_details" => {
                once(&mut seen, 8)?;
                c.reasoning_tokens = nested_uint(value, b"reasoning_tokens")?;
            }
            _ => {}
        }
        Some(())
    })?;
    Some(c)
}

fn serde_chat_counts(raw: &[u8]) -> Option<Counts> {
    let u: ChatUsage = parse(raw)?;
    Some(Counts {
        input_tokens: n(u.prompt_tokens),
        cached_input_tokens: n(u.prompt_tokens_details.and_then(|d| d.cached_tokens)),
        cache_write_input_tokens: 0,
        output_tokens: n(u.completion_tokens),
        reasoning_tokens: n(u.completion_tokens_details.and_then(|d| d.reasoning_tokens)),
    })
}

#[derive(Debug, Default)]
pub struct ChatParser {
    tally: Tally,
    /// Remove the usage-only chunk: the client did not ask for it.
    strip_usage_chunk: bool,
}

impl ChatParser {
    pub fn new(strip_usage_chunk: bool) -> Self {
        ChatParser {
            tally: Tally::default(),
            strip_usage_chunk,
        }
    }
}

impl UsageParser for ChatParser {
    fn json_keys(&self) -> &'static [&'static str] {
        &["model", "usage"]
    }

    fn read_json(&mut self, values: &[Option<&[u8]>]) {
        self.tally.set_model(values.first().copied().flatten());
        if let Some(usage) = values.get(1).copied().flatten() {
            if !is_null(usage) {
                self.tally.set_counts(chat_counts(usage));
            }
        }
    }

    fn read_event(&mut self, event: &SseEvent<'_>) -> Verdict {
        let data = event.data;
        if data == b"[DONE]" {
            self.tally.done_marker = true;
            return Verdict::Keep;
        }
        // Common path: a content chunk. Parse only the first one (for the
        // model) and the one whose `usage` is an object.
        let has_usage = has_object_member(data, b"\"usage\"");
        if !has_usage && self.tally.model.is_some() {
            return Verdict::Keep;
        }
        let Some([model, usage, choices]) = top_level(data, &["model", "usage", "choices"]) else {
            return Verdict::Keep;
        };
        self.tally.set_model(model);
        let Some(usage) = usage.filter(|u| !is_null(u)) else {
            return Verdict::Keep;
        };
        self.tally.set_counts(chat_counts(usage));
        self.tally.complete = self.tally.usage_seen;
        if self.strip_usage_chunk && choices.is_some_and(is_empty_array) {
            Verdict::Strip
        } else {
            Verdict::Keep
        }
    }

    fn tally(&self) -> &Tally {
        &self.tally
    }
}
