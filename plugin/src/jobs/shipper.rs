//! The per-worker record buffer between HTTP contexts and the collector.
//! Pure: driven by `now` and by the result of each send, so outages, backoff
//! and overflow are unit-tested without a host.

use std::collections::VecDeque;

/// Room for one record's JSON (about 600 bytes with five tags and a label).
const RECORD_CAPACITY: usize = 1024;

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

/// A batch ready to send: the body of `POST /v1/records`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub body: Vec<u8>,
    pub records: usize,
}

#[derive(Debug)]
pub struct Shipper {
    settings: ShipperSettings,
    /// Serialized records, oldest first. The first `in_flight` are being sent.
    buffer: VecDeque<Vec<u8>>,
    /// Buffers of shipped records, cleared, for the next records to be
    /// written into: in steady state a record allocates nothing.
    spare: Vec<Vec<u8>>,
    in_flight: usize,
    sending: bool,
    /// While a refused batch is being split: at most this many records per
    /// batch, for the next `suspect` records at the front of the buffer.
    split_limit: usize,
    suspect: usize,
    next_attempt_ms: u64,
    backoff_ms: u64,
    counters: Counters,
}

impl Shipper {
    pub fn new(settings: ShipperSettings) -> Self {
        Shipper {
            settings,
            buffer: VecDeque::new(),
            spare: Vec::new(),
            in_flight: 0,
            sending: false,
            split_limit: usize::MAX,
            suspect: 0,
            next_attempt_ms: 0,
            backoff_ms: 0,
            counters: Counters::default(),
        }
    }

    /// New settings after a reconfigure; buffered records stay.
    pub fn reconfigure(&mut self, settings: ShipperSettings) {
        self.settings = settings;
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Whether a send is outstanding (its result not reported yet).
    pub fn is_sending(&self) -> bool {
        self.sending
    }

    /// Buffer one serialized record. When full, the oldest record is dropped
    /// and counted: recent usage is worth more than old, and memory is bounded.
    /// An empty buffer to write the next record into (`push` it back).
    pub fn take_buffer(&mut self) -> Vec<u8> {
        self.spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(RECORD_CAPACITY))
    }

    fn recycle(&mut self, mut record: Vec<u8>) {
        // Bounded: at most one batch's worth, and only buffers of a usual size.
        if self.spare.len() < self.settings.max_batch && record.capacity() <= 4 * RECORD_CAPACITY {
            record.clear();
            self.spare.push(record);
        }
    }

    pub fn push(&mut self, record: Vec<u8>) {
        self.counters.emitted += 1;
        if self.buffer.len() >= self.settings.max_buffer {
            if let Some(old) = self.buffer.pop_front() {
                self.recycle(old);
            }
            self.counters.dropped += 1;
            // The dropped record may have been part of the batch in flight;
            // the batch's result must then settle one record fewer.
            self.in_flight = self.in_flight.saturating_sub(1);
        }
        self.buffer.push_back(record);
    }

    /// The batch to send now, if any: nothing in flight, the backoff has
    /// passed and records are waiting. At most `max_batch` records and
    /// `max_batch_bytes` of body (one record always goes, however large).
    pub fn poll(&mut self, now_ms: u64) -> Option<Batch> {
        if self.sending || now_ms < self.next_attempt_ms || self.buffer.is_empty() {
            return None;
        }
        let limit = self.settings.max_batch.min(self.split_limit).max(1);
        // `{"records":[` + `]}` + a comma per record.
        let mut size = 14usize;
        let mut n = 0usize;
        for r in self.buffer.iter().take(limit) {
            let grown = size.saturating_add(r.len() + 1);
            if n > 0 && grown > self.settings.max_batch_bytes {
                break;
            }
            size = grown;
            n += 1;
        }
        let mut body = Vec::with_capacity(size);
        body.extend_from_slice(b"{\"records\":[");
        for (i, r) in self.buffer.iter().take(n).enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(r);
        }
        body.extend_from_slice(b"]}");
        self.in_flight = n;
        self.sending = true;
        Some(Batch { body, records: n })
    }

    /// The next batch regardless of backoff (shutdown: there is no later).
    pub fn poll_now(&mut self) -> Option<Batch> {
        self.next_attempt_ms = 0;
        self.poll(0)
    }

    /// Give up on every buffered record (counted as dropped).
    pub fn abandon(&mut self) -> u64 {
        let n = self.buffer.len() as u64;
        self.counters.dropped += n;
        self.buffer.clear();
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
        let n = self.in_flight.min(self.buffer.len());
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

    fn remove_front(&mut self, n: usize) {
        for _ in 0..n {
            if let Some(done) = self.buffer.pop_front() {
                self.recycle(done);
            }
        }
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
