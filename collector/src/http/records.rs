//! `POST /v1/records` (CONTRACTS §4): the body to `service::ingest`, its answer
//! to JSON; `admit` queues the request at the ingest memory gate first.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
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
    if result.is_ok() {
        // Alert evaluation runs in its own task, debounced: never here.
        state.alerts.kick();
    }
    result.map(Json)
}

/// Middleware, before the body is read: waits until the body's size fits the
/// ingest memory bound (`service::ingest::IngestGate`), holds that share
/// until the answer is ready.
pub async fn admit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let content_length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let _share = state.ingest_gate.admit(content_length).await;
    next.run(request).await
}
