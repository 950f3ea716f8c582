//! `GET /v1/audit` (CONTRACTS §9): JSON, or CSV with `format=csv`.

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::error::AppError;
use crate::service::audit;
use crate::state::AppState;

pub async fn list(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, AppError> {
    let (page, csv) = audit::page(&state, raw.as_deref()).await?;
    Ok(if csv {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            )],
            page.to_csv(),
        )
            .into_response()
    } else {
        Json(page).into_response()
    })
}
