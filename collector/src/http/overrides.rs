//! `/v1/overrides` (CONTRACTS §9): request, approve, list; translated to
//! `service::overrides`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};

use crate::error::AppError;
use crate::http::parse_body;
use crate::service::access::RequestContext;
use crate::service::overrides::{self, OverrideList, OverrideView};
use crate::state::AppState;

pub async fn request(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<OverrideView>), AppError> {
    let view = overrides::request(&state, &ctx, &parse_body(body)?).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

pub async fn approve(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> Result<Json<OverrideView>, AppError> {
    Ok(Json(overrides::approve(&state, &ctx, &id).await?))
}

pub async fn list(State(state): State<AppState>) -> Result<Json<OverrideList>, AppError> {
    Ok(Json(overrides::list(&state).await?))
}
