//! OpenAI (and Azure OpenAI) chat completions and embeddings.
//!
//! JSON: top-level `model` and `usage` {`prompt_tokens`, `completion_tokens`,
//! `prompt_tokens_details.cached_tokens`, `completion_tokens_details.reasoning_tokens`};
//! embeddings have only `prompt_tokens`.
//! Stream: with `stream_options.include_usage` every chunk carries `"usage":null`
//! and one last chunk before `data: [DONE]` has `"choices":[]` and the usage.

use crate::json::fast::{
    key_is, nested_uint_at, object_at, once, skip_value, skip_whitespace, uint_or_null_at,
};
use crate::json::scan::{has_object_member, is_empty_array, is_null, top_level};
use crate::usage::parser::{n, parse, BodyWalk, Counts, Tally, UsageParser, Verdict};
use crate::usage::sse::SseEvent;
use serde::Deserialize;
use std::ops::Range;

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
    let (c, end) = chat_counts_at(raw, skip_whitespace(raw, 0))?;
    (skip_whitespace(raw, end) == raw.len()).then_some(c)
}

/// The usage object starting at `at` in `bytes`, read in place by the
/// members walk (no serde): its counts and where it ends. `None` when the
/// walk cannot read it exactly (serde then decides on its bytes).
fn chat_counts_at(bytes: &[u8], at: usize) -> Option<(Counts, usize)> {
    let mut c = Counts::default();
    let mut seen = 0;
    let end = object_at(bytes, at, |key, start| {
        if key_is(key, b"prompt_tokens") {
            once(&mut seen, 1)?;
            let (v, end) = uint_or_null_at(bytes, start)?;
            c.input_tokens = v;
            Some(end)
        } else if key_is(key, b"completion_tokens") {
            once(&mut seen, 2)?;
            let (v, end) = uint_or_null_at(bytes, start)?;
            c.output_tokens = v;
            Some(end)
        } else if key_is(key, b"prompt_tokens_details") {
            once(&mut seen, 4)?;
            let (v, end) = nested_uint_at(bytes, start, b"cached_tokens")?;
            c.cached_input_tokens = v;
            Some(end)
        } else if key_is(key, b"completion_tokens_details") {
            once(&mut seen, 8)?;
            let (v, end) = nested_uint_at(bytes, start, b"reasoning_tokens")?;
            c.reasoning_tokens = v;
            Some(end)
        } else {
            skip_value(bytes, start)
        }
    })?;
    Some((c, end))
}

/// What one walk of a whole chat/embeddings body found (the last
/// occurrence of a key wins, as in `top_level_ranges`).
#[derive(Default)]
struct Walked {
    model: Option<Range<usize>>,
    usage: Option<Range<usize>>,
    /// The usage object's counts when the walk read them in place.
    counts: Option<Counts>,
}

/// The top-level members of a whole body in one walk: `model` located,
/// `usage` read in place (its counts) or located (for serde). `None` when
/// the members walk cannot read the body exactly.
fn walk_body(body: &[u8]) -> Option<Walked> {
    let mut w = Walked::default();
    let end = object_at(body, skip_whitespace(body, 0), |key, start| {
        if key_is(key, b"model") {
            let end = skip_value(body, start)?;
            w.model = Some(start..end);
            Some(end)
        } else if key_is(key, b"usage") {
            let (counts, end) = match chat_counts_at(body, start) {
                Some((c, end)) => (Some(c), end),
                None => (None, skip_value(body, start)?),
            };
            w.counts = counts;
            w.usage = Some(start..end);
            Some(end)
        } else {
            skip_value(body, start)
        }
    })?;
    (skip_whitespace(body, end) == body.len()).then_some(w)
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

    fn read_body(&mut self, body: &[u8], limit: usize) -> BodyWalk {
        let Some(w) = walk_body(body) else {
            return BodyWalk::Refused;
        };
        let value = |r: &Option<Range<usize>>| r.clone().and_then(|r| body.get(r));
        let (model, usage) = (value(&w.model), value(&w.usage));
        if model.into_iter().chain(usage).any(|v| v.len() > limit) {
            return BodyWalk::Read { too_large: true };
        }
        self.tally.set_model(model);
        match (w.counts, usage) {
            (Some(c), _) => self.tally.set_counts(Some(c)),
            (None, Some(raw)) if !is_null(raw) => self.tally.set_counts(chat_counts(raw)),
            _ => {}
        }
        BodyWalk::Read { too_large: false }
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
