//! Ingest (CONTRACTS §4): validate each record of a batch, price it, store the
//! valid ones in one store batch, and report what happened to every index.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::domain::record::PricedRecord;
use crate::domain::time::format_rfc3339_ms;
use crate::domain::validate::validate_record_json;
use crate::error::AppError;
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::store::BatchOutcome;

/// Largest accepted body (413 above).
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Largest accepted batch (413 above); the filter sends at most 10,000.
pub const MAX_RECORDS: usize = 10_000;
/// Default bound on the ingest bodies held at once (`AISPEND_INGEST_MEMORY_MB`).
pub const DEFAULT_INGEST_MEMORY_MB: usize = 64;

/// Bounds the memory ingest holds: a request takes permits for its body size
/// (its `Content-Length`, else the body limit) before its body is read, and
/// keeps them until it is answered. Batches beyond the bound wait their turn
/// instead of all being read and parsed at once.
pub struct IngestGate {
    /// One permit per KiB of body.
    kib: Semaphore,
    total_kib: u32,
}

impl IngestGate {
    pub fn new(bytes: usize) -> Self {
        let total_kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX));
        Self {
            kib: Semaphore::new(total_kib as usize),
            total_kib,
        }
    }

    /// Waits until a body of `content_length` bytes (`None`: unknown, the
    /// body limit is assumed) fits. A body larger than the whole bound
    /// waits for all of it.
    pub async fn admit(&self, content_length: Option<u64>) -> Option<SemaphorePermit<'_>> {
        let bytes = content_length
            .map_or(MAX_BODY_BYTES as u64, |n| n.min(MAX_BODY_BYTES as u64))
            .max(1);
        let kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .min(self.total_kib);
        // The semaphore is never closed, so this only fails if it were.
        self.kib.acquire_many(kib).await.ok()
    }

    /// KiB of bodies that may still be admitted now.
    pub fn available_kib(&self) -> usize {
        self.kib.available_permits()
    }
}

impl Default for IngestGate {
    fn default() -> Self {
        Self::new(DEFAULT_INGEST_MEMORY_MB * 1024 * 1024)
    }
}

/// The body's envelope: each record is kept as its raw JSON text (borrowed
/// from the body) and parsed alone, so a batch never exists twice in memory
/// as a whole `serde_json::Value` tree.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    records: Vec<&'a RawValue>,
}

/// The answer to a batch: 200 even when some records are rejected.
#[derive(Debug, Serialize)]
pub struct IngestResponse {
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: Vec<Rejected>,
}

/// One record refused, by its index in the batch.
#[derive(Debug, Serialize)]
pub struct Rejected {
    pub index: usize,
    pub error: String,
}

/// Ingests the body of one `POST /v1/records`.
pub async fn ingest(state: &AppState, body: &[u8]) -> Result<IngestResponse, AppError> {
    let items = match serde_json::from_slice::<Envelope<'_>>(body) {
        Ok(envelope) => envelope.records,
        Err(e) if e.is_data() => {
            return Err(AppError::BadRequest(String::from(
                "body must be a JSON object with a `records` array",
            )))
        }
        Err(e) => return Err(AppError::BadRequest(format!("body is not valid JSON: {e}"))),
    };
    if items.len() > MAX_RECORDS {
        return Err(AppError::TooLarge(format!(
            "batch holds {} records; at most {MAX_RECORDS} are accepted",
            items.len()
        )));
    }

    let mut rejected = Vec::new();
    let mut valid = Vec::with_capacity(items.len());
    // Records older than the retention horizon would be stored again if they
    // had been stored and deleted: refused, so the rollups stay exact.
    let horizon = state.retention.horizon().unwrap_or(i64::MIN);
    let book = state.book.get();
    for (index, raw) in items.iter().enumerate() {
        // Valid JSON already (the envelope parsed): decoded straight into
        // the fields validation reads, no `Value` tree.
        match validate_record_json(raw.get()) {
            Ok(record) if record.ts_ms < horizon => rejected.push(Rejected {
                index,
                error: format!(
                    "ts is before the retention horizon {} (AISPEND_RETENTION_DAYS): raw \
                     records that old are deleted, so this one cannot be checked for a \
                     duplicate and is not stored",
                    format_rfc3339_ms(horizon)
                ),
            }),
            Ok(record) => {
                let (cost_usd, price_version) = book.cost_of(&record);
                valid.push(PricedRecord {
                    cost_usd,
                    price_version,
                    record,
                })
            }
            Err(error) => rejected.push(Rejected { index, error }),
        }
    }
    Metrics::add(&state.metrics.records_rejected, rejected.len() as u64);

    let oldest = valid.iter().map(|r| r.record.ts_ms).min();
    let outcome = if valid.is_empty() {
        BatchOutcome::default()
    } else {
        state
            .store
            .insert_batch(valid)
            .await
            .inspect_err(|e| state.count_store_error(e))?
    };
    Metrics::add(&state.metrics.records_accepted, outcome.inserted);
    Metrics::add(&state.metrics.records_duplicate, outcome.duplicates);
    Metrics::add(&state.metrics.records_unpriced, outcome.unpriced_inserted);
    // Spend may have moved: the caps cache recomputes on its next poll.
    state.caps.records_ingested();
    // A backfilled day changes the anomaly history the evaluation keeps.
    if let Some(oldest) = oldest.filter(|_| outcome.inserted > 0) {
        state.alerts.history.records_before(oldest);
    }
    tracing::debug!(
        accepted = outcome.inserted,
        duplicates = outcome.duplicates,
        rejected = rejected.len(),
        "batch ingested"
    );
    Ok(IngestResponse {
        accepted: outcome.inserted,
        duplicates: outcome.duplicates,
        rejected,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn bodies_beyond_the_bound_wait_until_a_share_is_returned() {
        let gate = IngestGate::new(64 * 1024);
        let first = gate.admit(Some(40 * 1024)).await;
        assert_eq!(gate.available_kib(), 24);
        let second = tokio::time::timeout(Duration::from_millis(50), gate.admit(Some(40 * 1024)));
        assert!(second.await.is_err(), "40 KiB more must wait");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), gate.admit(Some(40 * 1024)))
            .await
            .expect("admitted once the first is answered");
        assert!(second.is_some());
    }

    #[tokio::test]
    async fn unknown_or_huge_lengths_count_as_the_body_limit_capped_by_the_bound() {
        let gate = IngestGate::new(64 * 1024 * 1024);
        let unknown = gate.admit(None).await;
        assert_eq!(gate.available_kib(), (64 - 8) * 1024);
        drop(unknown);
        let huge = gate.admit(Some(u64::MAX)).await;
        assert_eq!(gate.available_kib(), (64 - 8) * 1024);
        drop(huge);
        // A bound smaller than one body still admits it, alone.
        let small = IngestGate::new(1024 * 1024);
        let whole = small.admit(None).await;
        assert!(whole.is_some());
        assert_eq!(small.available_kib(), 0);
    }
}
