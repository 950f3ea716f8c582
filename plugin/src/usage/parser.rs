//! The one trait every provider parser implements, and what they share.

use super::sse::SseEvent;
use std::borrow::Cow;

/// The normalized token fields of CONTRACTS §3.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub cache_write_input_tokens: u64,
    pub output_tokens: u64,
    pub reasoning_tokens: u64,
}

/// What a parser has learned from one response so far.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub counts: Counts,
    /// Model the response names.
    pub model: Option<String>,
    /// Counts came from a usage object.
    pub usage_seen: bool,
    /// The provider's final usage arrived (the stream's counts are final).
    pub complete: bool,
    /// The provider reported an error inside a 2xx stream.
    pub stream_error: bool,
    /// OpenAI's `data: [DONE]` arrived.
    pub done_marker: bool,
    /// A usage object was present but not readable.
    pub malformed: bool,
}

impl Tally {
    /// Take the model from a JSON string value; empty names (Azure's first
    /// content-filter chunk) are ignored.
    pub fn set_model(&mut self, raw: Option<&[u8]>) {
        let Some(raw) = raw else { return };
        let name = match crate::json::fast::plain_string(raw) {
            Some(plain) => Cow::Borrowed(plain),
            None => match serde_json::from_slice::<Option<Cow<'_, str>>>(raw) {
                Ok(Some(name)) => name,
                _ => return,
            },
        };
        if !name.is_empty() && self.model.as_deref() != Some(name.as_ref()) {
            self.model = Some(name.into_owned());
        }
    }

    /// Record a parsed usage object (or note that it was malformed).
    pub fn set_counts(&mut self, counts: Option<Counts>) {
        match counts {
            Some(c) => {
                self.counts = c;
                self.usage_seen = true;
            }
            None => self.malformed = true,
        }
    }
}

/// What the meter does with an event after a parser read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// The event is the usage-only chunk the filter asked for on the client's
    /// behalf: remove it from the client's view.
    Strip,
}

/// What `UsageParser::read_body` made of a whole JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyWalk {
    /// Read in one walk (nothing read when a value is over the limit).
    Read { too_large: bool },
    /// Not an object the members walk reads exactly (truncated, escaped
    /// keys, an array): only the byte scanner can decide.
    Refused,
    /// This parser reads bodies through `json_keys` and `read_json` only.
    Unsupported,
}

/// A provider's response format.
pub trait UsageParser {
    /// Top-level keys of a non-streamed response body this parser reads.
    fn json_keys(&self) -> &'static [&'static str];
    /// Read a whole JSON body: `values[i]` is the value of `json_keys()[i]`.
    fn read_json(&mut self, values: &[Option<&[u8]>]);
    /// Read a whole JSON body in one walk, when the parser can: its
    /// values are read in place rather than located and then walked again.
    /// `limit` bounds each value read, as for the captured values.
    fn read_body(&mut self, _body: &[u8], _limit: usize) -> BodyWalk {
        BodyWalk::Unsupported
    }
    /// Read one SSE event.
    fn read_event(&mut self, event: &SseEvent<'_>) -> Verdict;
    /// Fold in anything read but not yet counted (called before `tally` at the end).
    fn settle(&mut self) {}
    fn tally(&self) -> &Tally;
}

/// Deserialize a small usage object; None when it is not one.
pub fn parse<'a, T: serde::Deserialize<'a>>(raw: &'a [u8]) -> Option<T> {
    serde_json::from_slice(raw).ok()
}

/// Missing or null token counts are zero.
pub fn n(v: Option<u64>) -> u64 {
    v.unwrap_or(0)
}
