//! `POST /v1/records` (SPEC §4): the body to `service::ingest`, its answer
//! to JSON.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::Json;

use crate::error::AppError;
use crate::service::ingest::{self, IngestResponse};
use crate::state::AppState;

pub async fn post_records(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<IngestResponse>, AppError> {
    let started = Instant::now();
    let result = ingest::ingest(&state, &body?).await;
    state.metrics.observe_ingest(started.elapsed());
    result.map(Json)
}
