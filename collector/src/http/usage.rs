//! `GET /v1/usage` (CONTRACTS §4): JSON, or CSV with `format=csv` or
//! `Accept: text/csv`.

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use crate::domain::usage_query::Format;
use crate::error::AppError;
use crate::service::access::RequestContext;
use crate::service::usage;
use crate::state::AppState;

pub async fn get_usage(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, AppError> {
    let format = usage::format_of(raw.as_deref())?.unwrap_or_else(|| format_of_accept(&headers));
    let report = usage::report(&state, &ctx, raw.as_deref()).await?;
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

/// CSV when the `Accept` header names `text/csv` before any JSON or
/// wildcard type (a `q=0` entry does not count); JSON otherwise.
fn format_of_accept(headers: &HeaderMap) -> Format {
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    for item in accept {
        let mut parts = item.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let refused = parts.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        if refused {
            continue;
        }
        match media.as_str() {
            "text/csv" => return Format::Csv,
            "application/json" | "*/*" | "application/*" => return Format::Json,
            _ => {}
        }
    }
    Format::Json
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> Format {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(header::ACCEPT, v);
        }
        format_of_accept(&h)
    }

    #[test]
    fn accept_picks_the_first_known_type() {
        assert_eq!(accept("text/csv"), Format::Csv);
        assert_eq!(accept("Text/CSV; charset=utf-8"), Format::Csv);
        assert_eq!(accept("application/json, text/csv"), Format::Json);
        assert_eq!(accept("text/html, text/csv;q=0.9, */*;q=0.1"), Format::Csv);
        assert_eq!(accept("text/csv;q=0, application/json"), Format::Json);
        assert_eq!(accept("*/*"), Format::Json);
        assert_eq!(format_of_accept(&HeaderMap::new()), Format::Json);
    }
}
