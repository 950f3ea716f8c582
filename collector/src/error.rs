//! The one error type of the HTTP layer, mapped to a status and the
//! OpenAI-style body `{"error":{"message","type","code"}}` used across aispend.

use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::store::StoreError;

#[derive(Debug)]
pub enum AppError {
    /// Missing or wrong bearer token.
    Unauthorized,
    /// The request itself is malformed (bad JSON, bad query).
    BadRequest(String),
    /// No such resource (e.g. an unknown budget id).
    NotFound(String),
    /// The resource already exists (e.g. creating a budget id twice).
    Conflict(String),
    /// Body or batch over the limits.
    TooLarge(String),
    /// The database failed; details go to the log, not to the client.
    Store(StoreError),
    /// Any other framework-level rejection, with its own status.
    Rejected(StatusCode, String),
}

impl AppError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str, String) {
        match self {
            AppError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "invalid_token",
                String::from("missing or invalid bearer token"),
            ),
            AppError::BadRequest(m) => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "bad_request",
                m.clone(),
            ),
            AppError::NotFound(m) => (
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "not_found",
                m.clone(),
            ),
            AppError::Conflict(m) => (
                StatusCode::CONFLICT,
                "invalid_request_error",
                "conflict",
                m.clone(),
            ),
            AppError::TooLarge(m) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "payload_too_large",
                m.clone(),
            ),
            AppError::Store(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "store_error",
                String::from("the usage store failed; see the collector log"),
            ),
            AppError::Rejected(status, m) => {
                (*status, "invalid_request_error", "bad_request", m.clone())
            }
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if let AppError::Store(e) = &self {
            eprintln!("aispend-collector: {e}");
        }
        let (status, kind, code, message) = self.parts();
        let body = json!({"error": {"message": message, "type": kind, "code": code}});
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        AppError::Store(e)
    }
}

impl From<BytesRejection> for AppError {
    fn from(rejection: BytesRejection) -> Self {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::TooLarge(format!(
                "request body exceeds {} bytes",
                crate::http::records::MAX_BODY_BYTES
            ))
        } else {
            AppError::Rejected(status, rejection.body_text())
        }
    }
}
