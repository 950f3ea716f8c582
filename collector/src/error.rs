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
    /// Missing or unknown bearer token.
    Unauthorized,
    /// A known token whose role may not call this route.
    Forbidden,
    /// A scoped viewer asked for something outside its scope.
    OutOfScope(String),
    /// The requester of an override approving it.
    SelfApproval,
    /// The request itself is malformed (bad JSON, bad query).
    BadRequest(String),
    /// A virtual key lacks a tag every key must carry (`missing_tag`).
    MissingTag(String),
    /// A query parameter names something that does not exist (a typo in a
    /// dimension name): the message names it and lists the valid ones.
    InvalidParameter(String),
    /// No such resource (e.g. an unknown budget id).
    NotFound(String),
    /// The resource already exists (e.g. creating a budget id twice).
    Conflict(String),
    /// Body or batch over the limits.
    TooLarge(String),
    /// The database failed; details go to the log, not to the client. A
    /// transient failure is 503 (retry later), any other 500.
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
            AppError::Forbidden => (
                StatusCode::FORBIDDEN,
                "permission_error",
                "insufficient_role",
                String::from(
                    "this bearer token is valid but its role may not call this endpoint \
                     (see the role table in README, \"Security\": gateway ingests, viewer \
                     reads, finance also changes budgets and overrides, admin everything)",
                ),
            ),
            AppError::OutOfScope(m) => (
                StatusCode::FORBIDDEN,
                "permission_error",
                "out_of_scope",
                m.clone(),
            ),
            AppError::SelfApproval => (
                StatusCode::FORBIDDEN,
                "permission_error",
                "self_approval",
                String::from(
                    "the requester of an override cannot approve it: two other tokens \
                     (one finance, one admin) must",
                ),
            ),
            AppError::BadRequest(m) => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "bad_request",
                m.clone(),
            ),
            AppError::MissingTag(m) => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "missing_tag",
                m.clone(),
            ),
            AppError::InvalidParameter(m) => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_parameter",
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
            AppError::Store(e) if e.is_transient() => (
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "store_unavailable",
                String::from("the usage store is unavailable; retry later"),
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
            if e.is_transient() {
                tracing::warn!(error = %e, kind = ?e.kind(), "store unavailable; answering 503");
            } else {
                tracing::error!(error = %e, kind = ?e.kind(), "store failed; answering 500");
            }
        }
        let (status, kind, code, message) = self.parts();
        let body = json!({"error": {"message": message, "type": kind, "code": code}});
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
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
                crate::service::ingest::MAX_BODY_BYTES
            ))
        } else {
            AppError::Rejected(status, rejection.body_text())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(error: AppError) -> StatusCode {
        error.into_response().status()
    }

    #[test]
    fn store_errors_map_by_kind() {
        let transient = AppError::Store(StoreError::transient("pool timed out")).into_response();
        assert_eq!(transient.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            transient.headers().get(header::RETRY_AFTER),
            Some(&HeaderValue::from_static("1"))
        );
        assert_eq!(
            status_of(AppError::Store(StoreError::internal("bug"))),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            status_of(AppError::Store(StoreError::invalid("bad row"))),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn request_errors_map_to_4xx() {
        assert_eq!(status_of(AppError::Unauthorized), StatusCode::UNAUTHORIZED);
        assert_eq!(status_of(AppError::Forbidden), StatusCode::FORBIDDEN);
        assert_eq!(
            status_of(AppError::BadRequest("x".into())),
            StatusCode::BAD_REQUEST
        );
        let missing = AppError::MissingTag("tag `team` is required".into()).into_response();
        assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            status_of(AppError::NotFound("x".into())),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status_of(AppError::Conflict("x".into())),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status_of(AppError::TooLarge("x".into())),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}
