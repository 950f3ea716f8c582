//! A call's output limit (SPEC §6, strict budgets): read it from the request
//! body, and rewrite it to a lower value, per provider body shape:
//!
//! | shape | field |
//! |---|---|
//! | OpenAI / Azure chat | `max_completion_tokens` and `max_tokens` (both lowered when present; `max_completion_tokens` added when neither is) |
//! | OpenAI responses | `max_output_tokens` |
//! | Anthropic messages | `max_tokens` |
//! | Gemini generate | `generationConfig.maxOutputTokens` (`generation_config.max_output_tokens` too) |
//!
//! Everything else in the body stays byte-identical, except Gemini's
//! `generationConfig` object, which is re-serialized.
//!
//! Also the input side of a worst case: [`media_refs`] counts the parts of
//! a body whose tokens its bytes do not bound (images, files, documents).

use std::ops::Range;

use super::{Operation, Provider, Route};
use crate::json::bytes::spelled_at;
use crate::json::scan::top_level_ranges;

const CHAT: &[&str; 2] = &["max_completion_tokens", "max_tokens"];
const CHAT_ASKED: &[&str; 3] = &["max_completion_tokens", "max_tokens", "n"];
const RESPONSES: &[&str; 1] = &["max_output_tokens"];
const GEMINI: &[&str; 2] = &["generationConfig", "generation_config"];
const RESPONSES_ASKED: &[&str; 4] = &[
    "max_output_tokens",
    "previous_response_id",
    "conversation",
    "prompt",
];
const GEMINI_ASKED: &[&str; 4] = &[
    "generationConfig",
    "generation_config",
    "cachedContent",
    "cached_content",
];

/// Which body shape a route has for its output limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Chat,
    Responses,
    Messages,
    Gemini,
    /// No output tokens (embeddings).
    NoOutput,
    /// A body we do not know how to limit.
    Unknown,
}

pub fn shape(route: &Route) -> Shape {
    match (route.provider, route.operation) {
        (_, Operation::Embeddings) => Shape::NoOutput,
        (Provider::OpenAi | Provider::Azure, Operation::Chat) => Shape::Chat,
        (Provider::OpenAi | Provider::Azure, Operation::Responses) => Shape::Responses,
        (Provider::Anthropic, Operation::Messages) => Shape::Messages,
        (Provider::Gemini, Operation::Generate) => Shape::Gemini,
        _ => Shape::Unknown,
    }
}

fn uint(body: &[u8], r: &Option<Range<usize>>) -> Option<u64> {
    r.clone()
        .and_then(|r| body.get(r))
        .and_then(crate::json::fast::uint)
}

/// What a call asks of its output: the limit the body sets, if any (the
/// lowest when two fields set one), and how many answers, each up to that
/// limit and all billed (OpenAI and Azure chat's `n`, Gemini's
/// `generationConfig.candidateCount`; 1 when absent or for a shape without
/// one). A count the provider might read as a number (`2.0`, `"2"`) is
/// taken rounded up: a bound errs high. One pass over the body.
/// Also whether the call names context the provider keeps between calls
/// (the Responses API's `previous_response_id`, `conversation` or stored
/// `prompt`; Gemini's `cachedContent`): input the body's bytes do not bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asked {
    pub limit: Option<u64>,
    pub choices: u64,
    pub kept_context: bool,
}

pub fn asked(shape: Shape, body: &[u8]) -> Asked {
    let mut kept_context = false;
    let (limit, choices) = match shape {
        Shape::Chat => match top_level_ranges(body, CHAT_ASKED) {
            Some([a, b, n]) => {
                let limit = match (uint(body, &a), uint(body, &b)) {
                    (Some(x), Some(y)) => Some(x.min(y)),
                    (x, y) => x.or(y),
                };
                (limit, n.and_then(|r| body.get(r)).and_then(count))
            }
            None => (None, None),
        },
        Shape::Responses => match top_level_ranges(body, RESPONSES_ASKED) {
            Some([a, kept @ ..]) => {
                kept_context = kept.iter().any(|r| names(body, r));
                (uint(body, &a), None)
            }
            None => (None, None),
        },
        Shape::Messages => (
            top_level_ranges(body, &["max_tokens"]).and_then(|[a]| uint(body, &a)),
            None,
        ),
        Shape::Gemini => {
            let ranges = top_level_ranges(body, GEMINI_ASKED);
            let [camel, snake, kept @ ..] = ranges.unwrap_or_default();
            kept_context = kept.iter().any(|r| names(body, r));
            let configs: Vec<serde_json::Value> = [camel, snake]
                .into_iter()
                .filter_map(|r| serde_json::from_slice(body.get(r?)?).ok())
                .collect();
            let field = |camel: &'static str, snake: &'static str| -> Vec<u64> {
                configs
                    .iter()
                    .filter_map(|c| c.get(camel).or_else(|| c.get(snake)))
                    .filter_map(|v| count(serde_json::to_string(v).ok()?.as_bytes()))
                    .collect()
            };
            (
                field("maxOutputTokens", "max_output_tokens")
                    .into_iter()
                    .min(),
                field("candidateCount", "candidate_count").into_iter().max(),
            )
        }
        Shape::NoOutput | Shape::Unknown => (None, None),
    };
    Asked {
        limit,
        choices: choices.unwrap_or(1).max(1),
        kept_context,
    }
}

/// Whether a member's value names something: present, not `null`, not `""`.
fn names(body: &[u8], r: &Option<Range<usize>>) -> bool {
    r.clone()
        .and_then(|r| body.get(r))
        .is_some_and(|v| v != b"null" && v != b"\"\"")
}

/// A JSON number, or a string holding one, rounded up (saturating).
fn count(raw: &[u8]) -> Option<u64> {
    crate::json::fast::uint(raw).or_else(|| {
        let text = std::str::from_utf8(raw).ok()?;
        let text = text
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .unwrap_or(text);
        let x: f64 = text.trim().parse().ok()?;
        x.is_finite().then(|| x.ceil() as u64)
    })
}

/// The body with its output limit set to `n` (added when it sets none), or
/// `None` when it cannot be rewritten (not one JSON object, unknown shape).
pub fn rewrite(shape: Shape, body: &[u8], n: u64) -> Option<Vec<u8>> {
    let value = n.to_string();
    match shape {
        Shape::Chat => {
            let [a, b] = top_level_ranges(body, CHAT)?;
            let found: Vec<Range<usize>> = [a, b].into_iter().flatten().collect();
            if found.is_empty() {
                insert(body, "max_completion_tokens", value.as_bytes())
            } else {
                replace(body, found, value.as_bytes())
            }
        }
        Shape::Responses => set_top(body, RESPONSES, "max_output_tokens", &value),
        Shape::Messages => set_top(body, &["max_tokens"], "max_tokens", &value),
        Shape::Gemini => {
            let [camel, snake] = top_level_ranges(body, GEMINI)?;
            let (range, key) = match (camel, snake) {
                (Some(r), _) => (Some(r), "maxOutputTokens"),
                (None, Some(r)) => (Some(r), "max_output_tokens"),
                (None, None) => (None, "maxOutputTokens"),
            };
            match range {
                Some(r) => {
                    let old = body.get(r.clone())?;
                    let mut map: serde_json::Map<String, serde_json::Value> =
                        if crate::json::scan::is_null(old) {
                            serde_json::Map::new()
                        } else {
                            serde_json::from_slice(old).ok()?
                        };
                    map.insert(key.into(), serde_json::Value::from(n));
                    replace(body, vec![r], &serde_json::to_vec(&map).ok()?)
                }
                None => insert(
                    body,
                    "generationConfig",
                    format!("{{\"maxOutputTokens\":{n}}}").as_bytes(),
                ),
            }
        }
        Shape::NoOutput | Shape::Unknown => None,
    }
}

fn set_top(
    body: &[u8],
    keys: &'static [&'static str; 1],
    key: &str,
    value: &str,
) -> Option<Vec<u8>> {
    let [r] = top_level_ranges(body, keys)?;
    match r {
        Some(r) => replace(body, vec![r], value.as_bytes()),
        None => insert(body, key, value.as_bytes()),
    }
}

/// `body` with each range (top-level values, not overlapping) replaced by `value`.
fn replace(body: &[u8], mut ranges: Vec<Range<usize>>, value: &[u8]) -> Option<Vec<u8>> {
    ranges.sort_by_key(|r| r.start);
    let mut out = Vec::with_capacity(body.len() + 16);
    let mut at = 0;
    for r in ranges {
        out.extend_from_slice(body.get(at..r.start)?);
        out.extend_from_slice(value);
        at = r.end;
    }
    out.extend_from_slice(body.get(at..)?);
    Some(out)
}

/// `body` with `"key":value` added as the object's first member.
fn insert(body: &[u8], key: &str, value: &[u8]) -> Option<Vec<u8>> {
    let open = body.iter().position(|&b| b == b'{')?;
    let (head, tail) = body.split_at(open + 1);
    let empty = tail.iter().find(|b| !crate::json::is_ws(**b)) == Some(&b'}');
    let mut out = Vec::with_capacity(body.len() + key.len() + value.len() + 4);
    out.extend_from_slice(head);
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
    out.extend_from_slice(value);
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(tail);
    Some(out)
}

/// Keys that introduce content whose tokens the body's bytes do not bound:
/// an image or file by URL or id costs tokens its few bytes do not show.
/// (Keys inside JSON strings cannot match: their quotes are escaped.)
const MEDIA_KEYS: &[&[u8]] = &[
    b"\"image_url\"",
    b"\"input_image\"",
    b"\"input_file\"",
    b"\"file_id\"",
    b"\"source\"",
    b"\"inline_data\"",
    b"\"inlineData\"",
    b"\"file_data\"",
    b"\"fileData\"",
    b"\"input_audio\"",
];

/// How many media parts the body references (an over-count is safe: each
/// adds a configured allowance to the input bound): the occurrences of each
/// of `MEDIA_KEYS`, counted apart (an occurrence of one key never overlaps an
/// earlier one of the same key), as written or spelled with `\u` escapes
/// (`"im\u0061ge_url"`: the provider's parser reads `image_url`, so the
/// part costs what it costs). One pass over the body's quotes (found many
/// bytes at a time), since every key starts with one, instead of one search
/// per key.
pub fn media_refs(body: &[u8]) -> u64 {
    let mut next = [0usize; MEDIA_KEYS.len()];
    let mut n = 0;
    let mut at = 0;
    while let Some(p) = body
        .get(at..)
        .and_then(|h| crate::json::bytes::find_byte(h, b'"'))
    {
        at += p;
        let rest = body.get(at..).unwrap_or_default();
        if !may_start_media_key(rest) {
            at += 1;
            continue;
        }
        for (key, next) in MEDIA_KEYS.iter().zip(next.iter_mut()) {
            if at >= *next {
                if let Some(len) = spelled_at(rest, key) {
                    n += 1;
                    *next = at + len;
                }
            }
        }
        at += 1;
    }
    n
}

/// Whether a string starting at `quoted` (its opening quote) may be one of
/// `MEDIA_KEYS`: its first two letters are a key's (`im`, `in`, `fi`, `so`),
/// or an escape may spell one. Most strings stop here, before any key is
/// compared.
fn may_start_media_key(quoted: &[u8]) -> bool {
    matches!(
        (quoted.get(1), quoted.get(2)),
        (Some(b'\\'), _)
            | (Some(b'i'), Some(b'm' | b'n' | b'\\'))
            | (Some(b'f'), Some(b'i' | b'\\'))
            | (Some(b's'), Some(b'o' | b'\\'))
    )
}

#[cfg(test)]
mod tests;
