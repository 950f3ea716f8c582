//! The webhook API (CONTRACTS §10, admin): `POST|GET /v1/webhooks`,
//! `DELETE /v1/webhooks/{id}`, `GET /v1/webhooks/{id}/deliveries`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::Value;

use crate::domain::webhooks::Webhook;
use crate::error::AppError;
use crate::http::parse_body;
use crate::service::access::RequestContext;
use crate::service::webhooks::{self, CreatedWebhook, WebhookList};
use crate::state::AppState;

pub async fn create(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<CreatedWebhook>), AppError> {
    let created = webhooks::create(&state, &ctx, &parse_body(body)?).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

pub async fn list(State(state): State<AppState>) -> Result<Json<WebhookList>, AppError> {
    Ok(Json(webhooks::list(&state).await?))
}

pub async fn delete(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> Result<Json<Webhook>, AppError> {
    Ok(Json(webhooks::delete(&state, &ctx, &id).await?))
}

pub async fn deliveries(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    Ok(Json(webhooks::deliveries(&state, &id).await?))
}
