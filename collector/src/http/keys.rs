//! The key API (CONTRACTS §8): `POST|GET /v1/keys`, `GET|PATCH|DELETE
//! /v1/keys/{key_id}`, `POST /v1/keys/{key_id}/rotate`, `POST
//! /v1/keys/revoke` and the gateways' `GET /v1/keys/registry`, translated to
//! `service::keys`.

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use crate::domain::keys::registry::Snapshot;
use crate::error::AppError;
use crate::http::parse_body;
use crate::service::access::RequestContext;
use crate::service::keys::{self, KeyList, KeyView, Revoked, WithSecret};
use crate::state::AppState;

pub async fn create(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<WithSecret>), AppError> {
    let created = keys::create(&state, &ctx, &parse_body(body)?).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

pub async fn list(State(state): State<AppState>) -> Result<Json<KeyList>, AppError> {
    Ok(Json(keys::list(&state).await?))
}

pub async fn get_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<KeyView>, AppError> {
    Ok(Json(keys::get(&state, &id).await?))
}

pub async fn patch(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<KeyView>, AppError> {
    Ok(Json(
        keys::patch(&state, &ctx, &id, &parse_body(body)?).await?,
    ))
}

pub async fn rotate(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<WithSecret>, AppError> {
    Ok(Json(
        keys::rotate(&state, &ctx, &id, &parse_body(body)?).await?,
    ))
}

/// Revokes; answers the key as it now is.
pub async fn delete(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> Result<Json<KeyView>, AppError> {
    Ok(Json(keys::revoke(&state, &ctx, &id).await?))
}

pub async fn revoke_by_tags(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Revoked>, AppError> {
    Ok(Json(
        keys::revoke_by_tags(&state, &ctx, &parse_body(body)?).await?,
    ))
}

/// A cached snapshot's body, answered without a copy.
struct Shared(std::sync::Arc<Snapshot>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        &self.0.body
    }
}

/// The snapshot with its `ETag`; 304 without a body when the gateway's
/// `If-None-Match` names it.
pub async fn registry(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let snapshot = keys::registry(&state).await?;
    let etag = HeaderValue::from_str(&snapshot.etag())
        .map_err(|e| AppError::BadRequest(format!("unrepresentable ETag: {e}")))?;
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| snapshot.matches(v));
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        // Shares the cached bytes (megabytes for 10,000s of keys) instead of
        // copying them per poll.
        let mut r = Response::new(Body::from(Bytes::from_owner(Shared(snapshot))));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    };
    response.headers_mut().insert(header::ETAG, etag);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}
