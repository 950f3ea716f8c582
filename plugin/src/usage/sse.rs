//! Incremental server-sent-events framer (WHATWG "event stream" rules).
//!
//! Bytes arrive in whatever pieces TCP and the gateway produce, so an event,
//! a line, even a `\r\n` pair may be split anywhere. The framer never holds
//! the stream: it reads each chunk in place and hands complete events to a
//! callback, borrowing the data straight from the chunk when the event lies
//! inside it (the common case, no copy, no allocation). Only the unfinished
//! tail (a partial line, or the data of an event whose blank line has not
//! arrived yet) is kept, bounded by `limit`; an event that outgrows the bound
//! is dropped and counted instead of growing memory.
//!
//! Every event carries its byte span in the stream (`start..end`, from the end
//! of the previous blank line through its own), so a caller can cut one event
//! out of what the client sees.

use std::ops::Range;

/// Default bound on the bytes kept for one unfinished event.
pub const DEFAULT_EVENT_LIMIT: usize = 1 << 20;

/// `event:` names longer than this are not names any provider sends.
const MAX_NAME: usize = 128;

/// Bytes of an oversized line kept to know its field (`data`, `event`).
const FIELD_PREFIX: usize = 8;

/// Where the value of a `data:` line starts, once the line shows it is one.
fn data_value_start(line: &[u8]) -> Option<usize> {
    let rest = line.strip_prefix(b"data:")?;
    match rest.first() {
        Some(b' ') => Some(6),
        Some(_) => Some(5),
        // Not yet known whether one space follows: count it as the prefix.
        None => Some(6),
    }
}

/// One dispatched event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseEvent<'a> {
    /// The `event:` field; empty when absent (a plain "message").
    pub name: &'a [u8],
    /// The `data:` lines joined with `\n`.
    pub data: &'a [u8],
    /// Stream offset of the event's first byte (after the previous blank line).
    pub start: u64,
    /// Stream offset just after the blank line that ended it.
    pub end: u64,
}

#[derive(Debug, Clone)]
pub struct SseFramer {
    limit: usize,
    /// Partial line carried from the previous chunk (without its terminator).
    line: Vec<u8>,
    in_line: bool,
    /// The carried line is too long: skip the rest of it.
    line_overflow: bool,
    /// Previous chunk ended in `\r`: a leading `\n` belongs to that line ending.
    skip_lf: bool,
    /// A blank line ended in `\r` at a chunk's end: dispatch once we know
    /// whether a `\n` follows (so the event's span is the same however split).
    dispatch_after_cr: bool,
    name: Vec<u8>,
    data: Vec<u8>,
    data_lines: u32,
    /// Data of the current event's single `data:` line, inside the current chunk.
    borrowed: Option<Range<usize>>,
    /// The current event outgrew `limit`; it is dropped at its blank line.
    event_overflow: bool,
    event_start: u64,
    /// Stream offset of the current chunk's first byte.
    offset: u64,
    first_line: bool,
    overflowed_events: u32,
}

impl Default for SseFramer {
    fn default() -> Self {
        SseFramer::new(DEFAULT_EVENT_LIMIT)
    }
}

/// Where the bytes of a line being processed live.
enum LineSrc {
    /// `chunk[range]`.
    Chunk(Range<usize>),
    /// `self.line`.
    Carried,
}

impl SseFramer {
    pub fn new(limit: usize) -> Self {
        SseFramer {
            limit,
            line: Vec::new(),
            in_line: false,
            line_overflow: false,
            skip_lf: false,
            dispatch_after_cr: false,
            name: Vec::new(),
            data: Vec::new(),
            data_lines: 0,
            borrowed: None,
            event_overflow: false,
            event_start: 0,
            offset: 0,
            first_line: true,
            overflowed_events: 0,
        }
    }

    /// Stream offset where the current unfinished event starts; every byte
    /// before it belongs to dispatched events (or blank lines).
    pub fn event_start(&self) -> u64 {
        self.event_start
    }

    /// Stream offset after the last byte fed.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Events dropped because they outgrew the bound.
    pub fn overflowed_events(&self) -> u32 {
        self.overflowed_events
    }

    /// Bytes currently kept for the unfinished event.
    pub fn kept_bytes(&self) -> usize {
        self.line.len() + self.data.len()
    }

    /// Feed the next chunk; `on_event` gets every event it completes.
    pub fn feed(&mut self, chunk: &[u8], mut on_event: impl FnMut(&SseEvent<'_>)) {
        if chunk.is_empty() {
            return;
        }
        let mut i = 0;
        let starts_with_lf = chunk.first() == Some(&b'\n');
        if self.dispatch_after_cr {
            self.dispatch_after_cr = false;
            self.skip_lf = false;
            if starts_with_lf {
                i = 1;
            }
            self.dispatch(chunk, self.offset + i as u64, &mut on_event);
        } else if self.skip_lf {
            self.skip_lf = false;
            if starts_with_lf {
                i = 1;
            }
        }
        while i < chunk.len() {
            let rest = chunk.get(i..).unwrap_or_default();
            let Some(p) = rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
                self.detach(chunk);
                self.carry(rest);
                break;
            };
            let j = i + p;
            let is_cr = chunk.get(j) == Some(&b'\r');
            let (next, cr_at_end) = if is_cr {
                match chunk.get(j + 1) {
                    Some(b'\n') => (j + 2, false),
                    Some(_) => (j + 1, false),
                    None => (j + 1, true),
                }
            } else {
                (j + 1, false)
            };
            let src = if self.in_line {
                self.carry(chunk.get(i..j).unwrap_or_default());
                LineSrc::Carried
            } else {
                LineSrc::Chunk(i..j)
            };
            let blank = self.end_line(chunk, src);
            if blank {
                if cr_at_end {
                    self.dispatch_after_cr = true;
                } else {
                    self.dispatch(chunk, self.offset + next as u64, &mut on_event);
                }
            } else if cr_at_end {
                self.skip_lf = true;
            }
            i = next;
        }
        self.detach(chunk);
        self.offset += chunk.len() as u64;
    }

    /// The stream ended: dispatch what is complete enough to read. A final
    /// event without its blank line is still dispatched (a lenient reading:
    /// losing a usage event over a missing newline would be worse).
    pub fn finish(&mut self, mut on_event: impl FnMut(&SseEvent<'_>)) {
        if self.in_line {
            self.end_line(&[], LineSrc::Carried);
        }
        self.dispatch_after_cr = false;
        self.skip_lf = false;
        self.dispatch(&[], self.offset, &mut on_event);
    }

    fn carry(&mut self, bytes: &[u8]) {
        self.in_line = true;
        if self.line_overflow {
            return;
        }
        self.line.extend_from_slice(bytes);
        // The same bound as for a line that arrives whole: a data line
        // overflows once the event's data would pass `limit`; any other line
        // is just not kept past it.
        let too_big = match data_value_start(&self.line) {
            Some(v) => {
                let sep = usize::from(self.data_lines > 0);
                self.data.len() + sep + self.line.len().saturating_sub(v) > self.limit
            }
            None => self.line.len() > self.limit,
        };
        if too_big {
            self.line_overflow = true;
            // Keep the field name: the line still counts as a data or event line.
            self.line.truncate(FIELD_PREFIX);
            self.line.shrink_to(FIELD_PREFIX);
        }
    }

    /// Process one complete line; true when it is blank (ends the event).
    fn end_line(&mut self, chunk: &[u8], src: LineSrc) -> bool {
        let carried = matches!(src, LineSrc::Carried);
        let overflowed = carried && self.line_overflow;
        self.in_line = false;
        self.line_overflow = false;
        let range = match src {
            LineSrc::Chunk(r) => r,
            LineSrc::Carried => 0..self.line.len(),
        };
        let line = if carried {
            self.line.get(range.clone())
        } else {
            chunk.get(range.clone())
        }
        .unwrap_or_default();
        let mut skip = 0;
        if std::mem::take(&mut self.first_line) && line.starts_with("\u{feff}".as_bytes()) {
            skip = 3;
        }
        let line = line.get(skip..).unwrap_or_default();
        if line.is_empty() && !overflowed {
            return true;
        }
        let (field, value_at) = match line.iter().position(|&b| b == b':') {
            Some(0) => (&b""[..], 0),
            Some(c) => {
                let v = if line.get(c + 1) == Some(&b' ') {
                    c + 2
                } else {
                    c + 1
                };
                (line.get(..c).unwrap_or_default(), v)
            }
            None => (line, line.len()),
        };
        let value = range.start + skip + value_at.min(line.len())..range.end;
        match field {
            b"data" if overflowed => {
                self.data_lines += 1;
                self.drop_event();
            }
            b"data" => self.add_data(chunk, carried, value),
            b"event" => {
                let src = if carried { &self.line[..] } else { chunk };
                let name = src.get(value).unwrap_or_default();
                self.name.clear();
                if !overflowed && name.len() <= MAX_NAME {
                    self.name.extend_from_slice(name);
                }
            }
            _ => {} // comments, `id:`, `retry:`, unknown fields
        }
        if carried {
            self.line.clear();
        }
        false
    }

    fn drop_event(&mut self) {
        self.event_overflow = true;
        self.borrowed = None;
        self.data = Vec::new();
    }

    fn add_data(&mut self, chunk: &[u8], carried: bool, value: Range<usize>) {
        self.data_lines += 1;
        if self.event_overflow {
            return;
        }
        if !carried && self.data_lines == 1 {
            // Same bound however the stream is split: an event never kept
            // whole when split is not read whole when it arrives in one piece.
            if value.len() > self.limit {
                self.drop_event();
            } else {
                self.borrowed = Some(value);
            }
            return;
        }
        self.detach(chunk);
        let src = if carried { &self.line[..] } else { chunk };
        let bytes = src.get(value).unwrap_or_default();
        if self.data_lines > 1 {
            self.data.push(b'\n');
        }
        if self.data.len() + bytes.len() > self.limit {
            self.drop_event();
            return;
        }
        self.data.extend_from_slice(bytes);
    }

    /// Copy borrowed data into `self.data` (before the chunk goes away or more
    /// data lines are appended).
    fn detach(&mut self, chunk: &[u8]) {
        if let Some(range) = self.borrowed.take() {
            let bytes = chunk.get(range).unwrap_or_default();
            self.data.clear();
            if bytes.len() > self.limit {
                self.drop_event();
                return;
            }
            self.data.extend_from_slice(bytes);
        }
    }

    fn dispatch(&mut self, chunk: &[u8], end: u64, on_event: &mut impl FnMut(&SseEvent<'_>)) {
        if self.event_overflow {
            self.overflowed_events += 1;
        } else if self.data_lines > 0 {
            let data = match &self.borrowed {
                Some(r) => chunk.get(r.clone()).unwrap_or_default(),
                None => &self.data[..],
            };
            on_event(&SseEvent {
                name: &self.name,
                data,
                start: self.event_start,
                end,
            });
        }
        self.name.clear();
        self.data.clear();
        self.data_lines = 0;
        self.borrowed = None;
        self.event_overflow = false;
        self.event_start = end;
    }
}
