//! `POST /v1/records` (SPEC §4): validate each record, price it, store the
//! valid ones in one batch, and report what happened to every index.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::Json;
use serde::Serialize;
use serde_json::Value;

use crate::domain::record::PricedRecord;
use crate::domain::validate::validate_record;
use crate::error::AppError;
use crate::metrics::Metrics;
use crate::store::BatchOutcome;
use crate::AppState;

/// Largest accepted body (413 above).
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Largest accepted batch (413 above); the filter sends at most 10,000.
pub const MAX_RECORDS: usize = 10_000;

#[derive(Debug, Serialize)]
pub struct IngestResponse {
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: Vec<Rejected>,
}

#[derive(Debug, Serialize)]
pub struct Rejected {
    pub index: usize,
    pub error: String,
}

pub async fn post_records(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<IngestResponse>, AppError> {
    let started = Instant::now();
    let result = ingest(&state, body?).await;
    state.metrics.observe_ingest(started.elapsed());
    result.map(Json)
}

async fn ingest(state: &AppState, body: Bytes) -> Result<IngestResponse, AppError> {
    let value: Value = serde_json::from_slice(&body)
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
    Ok(IngestResponse {
        accepted: outcome.inserted,
        duplicates: outcome.duplicates,
        rejected,
    })
}
