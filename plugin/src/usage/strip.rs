//! Cutting one SSE event out of the bytes the client sees.
//!
//! When the filter asks OpenAI for the usage chunk on the client's behalf,
//! the client must not see it. Which event is the usage chunk is known only
//! once the event is complete, and by then its first bytes may have passed in
//! an earlier chunk. So while stripping, the bytes of an unfinished event are
//! held back and released with the chunk that completes it; every byte
//! outside the cut events reaches the client unchanged and in order. Holding
//! a partial event costs the client nothing: an SSE client cannot act on an
//! event before its blank line. The hold is bounded; past the bound the bytes
//! are released and that event can no longer be cut.

use super::ChunkEdit;

#[derive(Debug)]
pub struct Stripper {
    limit: usize,
    /// Bytes of the unfinished event not yet passed on.
    held: Vec<u8>,
    /// Stream offset of `held[0]`.
    held_start: u64,
    /// Spans (stream offsets) of events to remove, found in the current chunk.
    cuts: Vec<(u64, u64)>,
    /// Bytes before this offset were passed on already.
    released: u64,
}

impl Stripper {
    pub fn new(limit: usize) -> Self {
        Stripper {
            limit,
            held: Vec::new(),
            held_start: 0,
            cuts: Vec::new(),
            released: 0,
        }
    }

    /// Remove the event spanning `start..end` (stream offsets).
    pub fn cut(&mut self, start: u64, end: u64) {
        if start >= self.released {
            self.cuts.push((start, end));
        }
    }

    /// The client's view of `chunk` (which starts at stream offset
    /// `chunk_start`), given that every byte before `settled` belongs to
    /// complete events.
    pub fn edit(&mut self, chunk: &[u8], chunk_start: u64, settled: u64) -> ChunkEdit {
        let chunk_end = chunk_start + chunk.len() as u64;
        if self.held.is_empty() && self.cuts.is_empty() && settled == chunk_end {
            return ChunkEdit::Keep;
        }
        let region = Region {
            held: &self.held,
            held_start: self.held_start,
            chunk,
            chunk_start,
        };
        let mut out = Vec::with_capacity(self.held.len() + chunk.len());
        let mut pos = self.held_start;
        for &(start, end) in &self.cuts {
            if start >= pos && end <= settled {
                region.copy(&mut out, pos, start);
                pos = end;
            }
        }
        region.copy(&mut out, pos, settled.max(pos));
        let mut rest = Vec::new();
        region.copy(&mut rest, settled.max(pos), chunk_end);
        self.cuts.clear();
        self.held = rest;
        self.held_start = settled.max(pos);
        if self.held.len() > self.limit {
            out.append(&mut self.held);
            self.held_start = chunk_end;
            self.released = chunk_end;
        }
        ChunkEdit::Replace(out)
    }
}

/// The held bytes followed by the current chunk, addressed by stream offset.
struct Region<'a> {
    held: &'a [u8],
    held_start: u64,
    chunk: &'a [u8],
    chunk_start: u64,
}

impl Region<'_> {
    fn copy(&self, out: &mut Vec<u8>, from: u64, to: u64) {
        for (bytes, base) in [(self.held, self.held_start), (self.chunk, self.chunk_start)] {
            let lo = from.max(base).saturating_sub(base);
            let hi = to.min(base + bytes.len() as u64).saturating_sub(base);
            if lo < hi {
                if let Some(part) = bytes.get(lo as usize..hi as usize) {
                    out.extend_from_slice(part);
                }
            }
        }
    }
}
