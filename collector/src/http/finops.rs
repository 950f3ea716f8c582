//! FinOps (SPEC §11): GL accounts, closed months, the chargeback and FOCUS
//! exports (streamed CSV), showback and the unattributed-cost report,
//! translated to `service::finops`.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use crate::domain::usage_query::Format;
use crate::error::AppError;
use crate::http::parse_body;
use crate::service::access::RequestContext;
use crate::service::finops::{
    self, ClosedList, ClosedView, CsvChunks, GlAccountList, GlAccountView, Unattributed,
};
use crate::state::AppState;

/// A CSV attachment sent chunk by chunk as the service produces it.
fn csv_response(chunks: CsvChunks, filename: String) -> Response {
    let stream = futures_util::stream::iter(chunks.map(Ok::<String, Infallible>));
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

fn month_of_query(raw: Option<&str>) -> String {
    form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "month")
        .map(|(_, v)| v.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', ""))
        .unwrap_or_default()
}

pub async fn put_gl_account(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(cost_center): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<GlAccountView>), AppError> {
    let (created, view) =
        finops::put_gl_account(&state, &ctx, &cost_center, &parse_body(body)?).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

pub async fn list_gl_accounts(
    State(state): State<AppState>,
) -> Result<Json<GlAccountList>, AppError> {
    Ok(Json(finops::gl_accounts(&state).await?))
}

pub async fn chargeback(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, AppError> {
    let chunks = finops::chargeback_csv(&state, raw.as_deref()).await?;
    let name = format!("chargeback-{}.csv", month_of_query(raw.as_deref()));
    Ok(csv_response(chunks, name))
}

pub async fn focus(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, AppError> {
    let chunks = finops::focus_csv(&state, raw.as_deref()).await?;
    let name = format!("focus-{}.csv", month_of_query(raw.as_deref()));
    Ok(csv_response(chunks, name))
}

pub async fn close_month(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<ClosedView>), AppError> {
    let view = finops::close_month(&state, &ctx, &parse_body(body)?).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

pub async fn closed_months(State(state): State<AppState>) -> Result<Json<ClosedList>, AppError> {
    Ok(Json(finops::closed_months(&state).await?))
}

pub async fn showback(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    RawQuery(raw): RawQuery,
) -> Result<Response, AppError> {
    let (report, format) = finops::showback(&state, &ctx, raw.as_deref()).await?;
    Ok(match format {
        Format::Json => Json(report).into_response(),
        Format::Csv => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            )],
            report.to_csv(),
        )
            .into_response(),
    })
}

pub async fn unattributed(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Unattributed>, AppError> {
    Ok(Json(
        finops::unattributed(&state, &ctx, raw.as_deref()).await?,
    ))
}
