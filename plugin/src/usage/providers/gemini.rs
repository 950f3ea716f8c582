//! Google Gemini `generateContent` / `streamGenerateContent`.
//!
//! JSON: top-level `modelVersion` and `usageMetadata` {`promptTokenCount`,
//! `cachedContentTokenCount`, `candidatesTokenCount`, `thoughtsTokenCount`,
//! `toolUsePromptTokenCount`, `totalTokenCount`}. `promptTokenCount` already
//! includes the cached share; thinking tokens are reported apart from
//! `candidatesTokenCount` but billed as output, and tool-use prompt tokens
//! apart from the prompt but billed as input (`totalTokenCount` is the sum).
//! Stream (`alt=sse`): every event is a whole response object whose
//! `usageMetadata` is cumulative; the last one counts. Without `alt=sse` the
//! stream is one JSON array of those objects (read like a JSON body: the
//! scanner keeps the last element's values). The stream is complete once a
//! candidate has a `finishReason` (or the prompt was blocked).

use crate::json::scan::{find, is_null, top_level};
use crate::usage::parser::{n, parse, Counts, Tally, UsageParser, Verdict};
use crate::usage::sse::SseEvent;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    prompt_token_count: Option<u64>,
    cached_content_token_count: Option<u64>,
    candidates_token_count: Option<u64>,
    thoughts_token_count: Option<u64>,
    tool_use_prompt_token_count: Option<u64>,
}

fn counts(raw: &[u8]) -> Option<Counts> {
    let u: UsageMetadata = parse(raw)?;
    let thoughts = n(u.thoughts_token_count);
    Some(Counts {
        input_tokens: n(u.prompt_token_count) + n(u.tool_use_prompt_token_count),
        cached_input_tokens: n(u.cached_content_token_count),
        cache_write_input_tokens: 0,
        output_tokens: n(u.candidates_token_count) + thoughts,
        reasoning_tokens: thoughts,
    })
}

#[derive(Debug, Default)]
pub struct GeminiParser {
    tally: Tally,
    finished: bool,
    /// The latest `usageMetadata` of a stream, parsed only when it is final
    /// (every event repeats it; parsing each would double the per-event cost).
    latest_usage: Vec<u8>,
}

const KEYS: &[&str; 2] = &["modelVersion", "usageMetadata"];

impl GeminiParser {
    fn read_values(&mut self, model: Option<&[u8]>, usage: Option<&[u8]>) {
        self.tally.set_model(model);
        if let Some(usage) = usage.filter(|u| !is_null(u)) {
            self.tally.set_counts(counts(usage));
        }
    }
}

impl UsageParser for GeminiParser {
    fn json_keys(&self) -> &'static [&'static str] {
        KEYS
    }

    fn read_json(&mut self, values: &[Option<&[u8]>]) {
        self.read_values(
            values.first().copied().flatten(),
            values.get(1).copied().flatten(),
        );
    }

    fn read_event(&mut self, event: &SseEvent<'_>) -> Verdict {
        // Each event is small (one increment of text), and its usageMetadata
        // follows the candidates, so the whole event is scanned.
        if let Some([model, usage]) = top_level(event.data, KEYS) {
            if self.tally.model.is_none() {
                self.tally.set_model(model);
            }
            if let Some(usage) = usage.filter(|u| !is_null(u)) {
                self.latest_usage.clear();
                self.latest_usage.extend_from_slice(usage);
            }
            if find(event.data, b"\"finishReason\"").is_some()
                || find(event.data, b"\"blockReason\"").is_some()
            {
                self.finished = true;
                self.settle();
            }
        } else if find(event.data, b"\"error\"").is_some() {
            self.tally.stream_error = true;
        }
        Verdict::Keep
    }

    fn settle(&mut self) {
        if !self.latest_usage.is_empty() {
            let counts = counts(&self.latest_usage);
            self.tally.set_counts(counts);
            self.latest_usage.clear();
        }
        self.tally.complete = self.finished && self.tally.usage_seen;
    }

    fn tally(&self) -> &Tally {
        &self.tally
    }
}
