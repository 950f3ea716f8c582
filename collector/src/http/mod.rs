//! HTTP in and out only: one module per resource, each handler extracts the
//! request, calls one `service` function and maps the result (errors through
//! `error::AppError`). `auth` is the access check every route wears (the
//! table is `domain::access::ROUTES`). No handler module imports another;
//! what they share (`parse_body`) is here.

pub mod alerts;
pub mod audit;
pub mod auth;
pub mod budgets;
pub mod caps;
pub mod finops;
pub mod health;
pub mod keys;
pub mod metrics;
pub mod openapi;
pub mod overrides;
pub mod prices;
pub mod reconcile;
pub mod records;
pub mod tokens;
pub mod ui;
pub mod usage;
pub mod webhooks;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use serde_json::Value;

use crate::error::AppError;

/// A JSON request body, or 400 saying why it is not one (413 when too large).
pub(crate) fn parse_body(body: Result<Bytes, BytesRejection>) -> Result<Value, AppError> {
    let body = body?;
    // An empty body is `null`: each rule says what it needs (rotate takes
    // none; the others answer that a JSON object is expected).
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&body)
        .map_err(|e| AppError::BadRequest(format!("body is not valid JSON: {e}")))
}
