//! `GET /v1/caps` (CONTRACTS §6): the cap flags from `service::caps`, with an
//! `ETag` and 304 when the gateway already holds this version.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use crate::domain::leases::parse_poll;
use crate::error::AppError;
use crate::service::access::RequestContext;
use crate::service::caps;
use crate::state::AppState;

/// True when `If-None-Match` names `version` (quoted or not, weak or not) or is `*`.
fn matches_version(headers: &HeaderMap, version: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/").trim_matches('"'))
        .any(|tag| tag == version || tag == "*")
}

pub async fn get_caps(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, AppError> {
    state.caps.count_request();
    let poll = parse_poll(raw.as_deref().unwrap_or_default()).map_err(AppError::BadRequest)?;
    let mut snapshot = state
        .caps
        .current(&*state.store, state.now())
        .await
        .inspect_err(|e| state.count_store_error(e))?;
    // A scoped viewer sees the flags of its scope only.
    if let Some(scope) = &ctx.principal.scope {
        snapshot = std::sync::Arc::new(caps::scoped(&snapshot, scope));
    }
    if let Some(poll) = poll {
        // A host holding leases: a fresh answer every poll, no ETag.
        let body = caps::with_leases(
            &*state.store,
            &state.prices,
            state.caps.lease_policy,
            &snapshot,
            ctx.principal.scope.as_ref(),
            &poll,
            state.now(),
        )
        .await
        .inspect_err(|e| state.count_store_error(e))?;
        let mut r = Response::new(Body::from(body));
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return Ok(r);
    }
    let etag = HeaderValue::from_str(&format!("\"{}\"", snapshot.version)).ok();
    let mut response = if matches_version(&headers, &snapshot.version) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = Response::new(Body::from(snapshot.body.clone()));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Some(etag) = etag {
        h.insert(header::ETAG, etag);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(header::IF_NONE_MATCH, v);
        }
        h
    }

    #[test]
    fn if_none_match_accepts_quoted_weak_and_lists() {
        assert!(matches_version(&headers("abc"), "abc"));
        assert!(matches_version(&headers("\"abc\""), "abc"));
        assert!(matches_version(&headers("W/\"abc\""), "abc"));
        assert!(matches_version(&headers("\"x\", \"abc\""), "abc"));
        assert!(matches_version(&headers("*"), "abc"));
        assert!(!matches_version(&headers("\"abd\""), "abc"));
        assert!(!matches_version(&HeaderMap::new(), "abc"));
    }
}
