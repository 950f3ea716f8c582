//! `/v1/tokens` (CONTRACTS §9): create (the secret answered once), list,
//! revoke; and `GET /v1/whoami` (the caller itself); translated to
//! `service::access`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};

use crate::error::AppError;
use crate::http::parse_body;
use crate::service::access::{self, CreatedToken, RequestContext, TokenList, TokenView, WhoAmI};
use crate::state::AppState;

pub async fn create(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<CreatedToken>), AppError> {
    let created = access::create(&state, &ctx, &parse_body(body)?).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

pub async fn list(State(state): State<AppState>) -> Result<Json<TokenList>, AppError> {
    Ok(Json(access::list(&state).await?))
}

pub async fn revoke(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> Result<Json<TokenView>, AppError> {
    Ok(Json(access::revoke(&state, &ctx, &id).await?))
}

pub async fn whoami(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
) -> Json<WhoAmI> {
    Json(access::whoami(&state, &ctx))
}
