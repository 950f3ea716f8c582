//! Ingest (SPEC §4): validate each record of a batch, price it, store the
//! valid ones in one store batch, and report what happened to every index.

use serde::Serialize;
use serde_json::Value;

use crate::domain::record::PricedRecord;
use crate::domain::validate::validate_record;
use crate::error::AppError;
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::store::BatchOutcome;

/// Largest accepted body (413 above).
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Largest accepted batch (413 above); the filter sends at most 10,000.
pub const MAX_RECORDS: usize = 10_000;

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
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| AppError::BadRequest(format!("body is not valid JSON: {e}")))?;
    let Some(items) = value.get("records").and_then(Value::as_array) else {
        return Err(AppError::BadRequest(String::from(
            "body must be a JSON object with a `records` array",
        )));
    };
    if items.len() > MAX_RECORDS {
        return Err(AppError::TooLarge(format!(
            "batch holds {} records; at most {MAX_RECORDS} are accepted",
            items.len()
        )));
    }

    let mut rejected = Vec::new();
    let mut valid = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        match validate_record(item) {
            Ok(record) => valid.push(PricedRecord {
                cost_usd: state.prices.cost_of(&record),
                price_version: state.prices.version().to_owned(),
                record,
            }),
            Err(error) => rejected.push(Rejected { index, error }),
        }
    }
    Metrics::add(&state.metrics.records_rejected, rejected.len() as u64);

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
