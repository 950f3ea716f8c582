//! The per-worker record buffer between HTTP contexts and the collector.
//! Pure: driven by `now` and by the result of each send, so outages, backoff
//! and overflow are unit-tested without a host.

use std::collections::VecDeque;

use crate::request::record::Finished;

/// Room for one record's JSON (about 600 bytes with five tags and a label).
const RECORD_CAPACITY: usize = 1024;
/// Finished calls held before their records are written, all in one loop
/// (`defer`): a record waits for at most this many calls or the next flush,
/// and the call that fills the list writes them all.
pub const DEFERRED: usize = 16;
/// The record buffer keeps at most this much room once it drained (a
/// backlog after an outage may have grown it far more).
const MAX_IDLE_CAPACITY: usize = 4 << 20;

/// Counters since the VM started; the glue turns their deltas into metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Records pushed by HTTP contexts.
    pub emitted: u64,
    /// Records the collector acknowledged (200).
    pub shipped: u64,
    /// Records whose send failed and that stay buffered for another try.
    pub retried: u64,
    /// Records lost because the buffer was full (oldest first).
    pub dropped: u64,
    /// Records the collector refused for their content: listed in a 200's
    /// `rejected`, or refused alone after their batch was split. Never retried.
    pub rejected: u64,
    /// Failed sends (each may carry many records).
    pub failed_sends: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShipperSettings {
    pub flush_interval_ms: u64,
    pub max_batch: usize,
    /// A batch body stays under this many bytes (the collector refuses
    /// larger bodies), except a single record larger than it.
    pub max_batch_bytes: usize,
    pub max_buffer: usize,
    pub max_backoff_ms: u64,
}

/// What became of a sent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 200: stored, except `rejected` records the collector named (dropped).
    Acked { rejected: u64 },
    /// The collector refused the batch as a whole for its content (a 4xx
    /// other than 401/408/429): split it until each acceptable record
    /// ships; a record refused alone is dropped and counted.
    Refused,
    /// Failed or refused for now (timeout, 5xx, 401, 429): retried as is,
    /// with backoff.
    Retry,
}

/// A batch ready to send: the body of `POST /v1/records`, borrowed from
/// the shipper's buffer (sent as it lies there, never copied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch<'a> {
    pub body: &'a [u8],
    pub records: usize,
}

/// What a batch body begins with; the buffer keeps room for it before the
/// oldest record.
const HEAD: &[u8; 12] = b"{\"records\":[";

#[derive(Debug)]
pub struct Shipper {
    settings: ShipperSettings,
    /// Serialized records, oldest first, each followed by a comma, in one
    /// buffer: a batch of the first records is one slice of it (no copy per
    /// record), and a record is written straight into it (no buffer of its
    /// own). Bytes before `start` belong to records already gone.
    data: Vec<u8>,
    /// Where the oldest record begins in `data`; at least `HEAD.len()`
    /// (the bytes before it are free: a batch writes its head there).
    start: usize,
    /// Where each buffered record ends in `data` (exclusive, before its
    /// comma), oldest first. The first `in_flight` are being sent.
    ends: VecDeque<usize>,
    /// The two bytes after the last batch's last record, made its `]}`:
    /// where, and the byte that was after the comma (None: it was
    /// appended). Put back before anything else touches the buffer.
    patched: Option<(usize, Option<u8>)>,
    in_flight: usize,
    sending: bool,
    /// While a refused batch is being split: at most this many records per
    /// batch, for the next `suspect` records at the front of the buffer.
    split_limit: usize,
    suspect: usize,
    next_attempt_ms: u64,
    backoff_ms: u64,
    counters: Counters,
    /// Finished calls whose records are not written yet (`defer`); every
    /// other use of the buffer writes them first, in the order they came.
    deferred: Vec<Finished>,
}

impl Shipper {
    pub fn new(settings: ShipperSettings) -> Self {
        Shipper {
            settings,
            data: Vec::new(),
            start: HEAD.len(),
            ends: VecDeque::new(),
            patched: None,
            in_flight: 0,
            sending: false,
            split_limit: usize::MAX,
            suspect: 0,
            next_attempt_ms: 0,
            backoff_ms: 0,
            counters: Counters::default(),
            deferred: Vec::new(),
        }
    }

    /// New settings after a reconfigure; buffered records stay.
    pub fn reconfigure(&mut self, settings: ShipperSettings) {
        self.settings = settings;
    }

    /// The counters; a deferred call counts as emitted.
    pub fn counters(&self) -> Counters {
        Counters {
            emitted: self.counters.emitted + self.deferred.len() as u64,
            ..self.counters
        }
    }

    /// Records buffered, deferred calls included.
    pub fn buffered(&self) -> usize {
        self.ends.len() + self.deferred.len()
    }

    /// Records written into the buffer (deferred calls not included).
    #[cfg(test)]
    pub fn written(&self) -> usize {
        self.ends.len()
    }

    /// Keep a finished call for its record, written with the next few
    /// (`DEFERRED`) in one loop: the writer's code then runs warm instead
    /// of cold once per call. Its place in the order is kept: a record
    /// written directly, a batch or `abandon` writes the deferred first.
    pub fn defer(&mut self, call: Finished) {
        self.deferred.push(call);
        if self.deferred.len() >= DEFERRED {
            self.write_deferred();
        }
    }

    /// Write the deferred calls' records, oldest first.
    fn write_deferred(&mut self) {
        if self.deferred.is_empty() {
            return;
        }
        let mut calls = std::mem::take(&mut self.deferred);
        // Two passes, each over code that fits the instruction cache: the
        // usages that waited, then the records.
        for call in calls.iter_mut() {
            call.read_usage();
        }
        for call in calls.iter_mut() {
            self.write(|out| call.write_record(out));
        }
        // Keep the allocation for the next ones.
        calls.clear();
        self.deferred = calls;
    }

    /// Whether a send is outstanding (its result not reported yet).
    pub fn is_sending(&self) -> bool {
        self.sending
    }

    /// Buffer one record, written by `write` straight into the shipper's
    /// buffer (it appends the record's JSON and nothing else). When full,
    /// the oldest record is dropped and counted: recent usage is worth more
    /// than old, and memory is bounded.
    pub fn write<R>(&mut self, write: impl FnOnce(&mut Vec<u8>) -> R) -> R {
        self.write_deferred();
        self.counters.emitted += 1;
        if self.ends.len() >= self.settings.max_buffer {
            self.remove_front(1);
            self.counters.dropped += 1;
            // The dropped record may have been part of the batch in flight;
            // the batch's result must then settle one record fewer.
            self.in_flight = self.in_flight.saturating_sub(1);
        }
        self.restore();
        self.make_room();
        if self.data.is_empty() {
            self.data.reserve(RECORD_CAPACITY * 64);
            self.data.extend_from_slice(HEAD);
            self.start = HEAD.len();
        }
        let out = write(&mut self.data);
        self.ends.push_back(self.data.len());
        self.data.push(b',');
        out
    }

    /// Buffer one serialized record (`write` of its bytes).
    pub fn push(&mut self, record: &[u8]) {
        self.write(|out| out.extend_from_slice(record));
    }

    /// The batch to send now, if any: nothing in flight, the backoff has
    /// passed and records are waiting. At most `max_batch` records and
    /// `max_batch_bytes` of body (one record always goes, however large).
    pub fn poll(&mut self, now_ms: u64) -> Option<Batch<'_>> {
        self.write_deferred();
        self.restore();
        if self.sending || now_ms < self.next_attempt_ms || self.ends.is_empty() {
            return None;
        }
        let limit = self
            .settings
            .max_batch
            .min(self.split_limit)
            .min(self.ends.len())
            .max(1);
        // The first n records and their commas, between the head and
        // `]}` (one record always goes, however large).
        let size = |end: usize| end.saturating_sub(self.start) + HEAD.len() + 2;
        let max = self.settings.max_batch_bytes;
        // The ends grow: the records that fit are found by bisection.
        let n = self
            .ends
            .partition_point(|&end| size(end) <= max)
            .clamp(1, limit);
        let end = self.ends.get(n - 1).copied()?;
        // The head goes into the free bytes before the oldest record; the
        // last record's comma and the byte after it become `]}` until the
        // buffer is touched again (`restore`).
        let from = self.start.saturating_sub(HEAD.len());
        self.data.get_mut(from..self.start)?.copy_from_slice(HEAD);
        let after = self.data.get(end + 1).copied();
        if after.is_none() {
            self.data.push(b'}');
        }
        self.data.get_mut(end..end + 2)?.copy_from_slice(b"]}");
        self.patched = Some((end, after));
        self.in_flight = n;
        self.sending = true;
        Some(Batch {
            body: self.data.get(from..end + 2)?,
            records: n,
        })
    }

    /// The next batch regardless of backoff (shutdown: there is no later).
    pub fn poll_now(&mut self) -> Option<Batch<'_>> {
        self.next_attempt_ms = 0;
        self.poll(0)
    }

    /// Give up on every buffered record (counted as dropped).
    pub fn abandon(&mut self) -> u64 {
        self.write_deferred();
        let n = self.ends.len() as u64;
        self.counters.dropped += n;
        self.remove_front(self.ends.len());
        self.in_flight = 0;
        self.sending = false;
        n
    }

    /// Report the result of the outstanding send. Success removes the batch
    /// and resets the backoff; a retryable failure keeps the records and
    /// waits twice as long as last time, up to `max_backoff_ms`; a refusal
    /// splits the batch (no wait: the collector answered).
    pub fn on_result(&mut self, now_ms: u64, outcome: Outcome) {
        if !self.sending {
            return;
        }
        self.sending = false;
        let n = self.in_flight.min(self.ends.len());
        self.in_flight = 0;
        match outcome {
            Outcome::Acked { rejected } => {
                self.remove_front(n);
                let rejected = rejected.min(n as u64);
                self.counters.rejected += rejected;
                self.counters.shipped += n as u64 - rejected;
                self.settle_split(n);
                self.backoff_ms = 0;
                self.next_attempt_ms = now_ms;
            }
            Outcome::Refused if n <= 1 => {
                // A record refused alone: it can never be stored as it is.
                self.remove_front(n);
                self.counters.rejected += n as u64;
                self.settle_split(n);
                self.next_attempt_ms = now_ms;
            }
            Outcome::Refused => {
                self.suspect = n;
                self.split_limit = n.div_ceil(2);
                self.next_attempt_ms = now_ms;
            }
            Outcome::Retry => {
                self.counters.retried += n as u64;
                self.counters.failed_sends += 1;
                self.backoff_ms = if self.backoff_ms == 0 {
                    self.settings.flush_interval_ms
                } else {
                    self.backoff_ms.saturating_mul(2)
                }
                .min(self.settings.max_backoff_ms);
                self.next_attempt_ms = now_ms.saturating_add(self.backoff_ms);
            }
        }
    }

    /// Forget the `n` oldest records. Their bytes are reclaimed when the
    /// buffer empties (the usual case after a batch: nothing moves) or once
    /// they are most of it (the records behind them move to the front).
    /// Put back the bytes the last batch's `]}` took.
    fn restore(&mut self) {
        let Some((end, after)) = self.patched.take() else {
            return;
        };
        if let Some(comma) = self.data.get_mut(end) {
            *comma = b',';
        }
        match after {
            Some(b) => {
                if let Some(slot) = self.data.get_mut(end + 1) {
                    *slot = b;
                }
            }
            None => self.data.truncate(end + 1),
        }
    }

    fn remove_front(&mut self, n: usize) {
        self.restore();
        let n = n.min(self.ends.len());
        if n == 0 {
            return;
        }
        if let Some(&end) = self.ends.get(n - 1) {
            self.start = end + 1;
        }
        self.ends.drain(..n);
        if self.ends.is_empty() {
            self.data.clear();
            self.start = HEAD.len();
            if self.data.capacity() > MAX_IDLE_CAPACITY {
                // A backlog is gone: give its memory back.
                self.data.shrink_to(MAX_IDLE_CAPACITY / 4);
            }
        }
    }

    /// Before a record is written into a full buffer that is mostly
    /// records already gone (three quarters or more): move the live ones to
    /// the front instead of growing it. Under steady traffic the buffer
    /// rarely empties (records arrive while batches are in flight), so this
    /// is how its room is reused: each move carries at most a third of what
    /// was written since the last one, and usually much less.
    fn make_room(&mut self) {
        let full = self.data.capacity() - self.data.len() < RECORD_CAPACITY;
        let live = self.data.len().saturating_sub(self.start);
        if !full || live > self.data.len() / 4 {
            return;
        }
        // Keep room for the head before the oldest record.
        let gone = self.start.saturating_sub(HEAD.len());
        self.data.drain(..gone);
        for end in self.ends.iter_mut() {
            *end -= gone;
        }
        self.start = HEAD.len();
    }

    /// `n` records of a split batch are settled; past the refused span,
    /// batches are whole again.
    fn settle_split(&mut self, n: usize) {
        self.suspect = self.suspect.saturating_sub(n);
        if self.suspect == 0 {
            self.split_limit = usize::MAX;
        }
    }

    /// Current retry delay (0 when the last send succeeded).
    pub fn backoff_ms(&self) -> u64 {
        self.backoff_ms
    }
}

#[cfg(test)]
mod tests;
