//! The access check every route wears (CONTRACTS §9): the matched route's
//! row of `domain::access::ROUTES` decides which roles may call it. It runs
//! before the body is read, so an unauthenticated client cannot make the
//! collector buffer a large body.
//!
//! Missing, unknown, revoked or expired token: 401 `invalid_token`. A
//! known token whose role is not in the row: 403 `insufficient_role`. A
//! matched route missing from the table: 403 (deny by default). Tokens are
//! never logged; refusals are counted (`aispend_auth_failures_total`).

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

use crate::domain::access::{rule_for, Access, Principal};
use crate::error::AppError;
use crate::service::access::{self, random_hex, RequestContext};
use crate::state::AppState;

const REQUEST_ID: &str = "x-request-id";

/// Middleware (a `route_layer` over every route of `lib.rs::app`).
pub async fn authorize(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, AppError> {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let Some(rule) = rule_for(request.method().as_str(), &path) else {
        tracing::error!(method = %request.method(), path, "route missing from the access table");
        access::count_failure(&state, "forbidden");
        return Err(AppError::Forbidden);
    };
    let Access::Roles(allowed) = rule.access else {
        return Ok(next.run(request).await);
    };
    let principal = match bearer(request.headers()) {
        Some(secret) => access::authenticate(&state, secret).await?,
        None => None,
    };
    let principal = match principal {
        Some(p) => p,
        None => {
            // With --insecure-no-auth, roles whose bootstrap token is unset
            // are open to anyone.
            let open = access::open_roles(&state.tokens);
            if open.iter().any(|r| allowed.contains(r)) {
                Principal {
                    actor: String::from("anonymous"),
                    roles: open,
                    scope: None,
                }
            } else {
                access::count_failure(&state, "invalid_token");
                return Err(AppError::Unauthorized);
            }
        }
    };
    if !principal.may(allowed) {
        access::count_failure(&state, "forbidden");
        return Err(AppError::Forbidden);
    }
    let request_id = request_id(request.headers())?;
    let echoed = HeaderValue::from_str(&request_id).ok();
    request.extensions_mut().insert(RequestContext {
        principal,
        request_id,
    });
    let mut response = next.run(request).await;
    if let Some(id) = echoed {
        response.headers_mut().insert(REQUEST_ID, id);
    }
    Ok(response)
}

/// The client's `x-request-id` when it is a plain short token, else a new one.
fn request_id(headers: &HeaderMap) -> Result<String, AppError> {
    let given = headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        });
    match given {
        Some(id) => Ok(id.to_owned()),
        None => Ok(format!("req_{}", random_hex(8)?)),
    }
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: &str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(value) {
            if let Ok(n) = header::HeaderName::from_bytes(name.as_bytes()) {
                h.insert(n, v);
            }
        }
        h
    }

    #[test]
    fn bearer_needs_the_scheme_and_a_token() {
        let auth = |v: &str| headers("authorization", v);
        assert_eq!(bearer(&auth("Bearer s3cret")), Some("s3cret"));
        assert_eq!(bearer(&auth("bearer  s3cret ")), Some("s3cret"));
        assert_eq!(bearer(&auth("Basic s3cret")), None);
        assert_eq!(bearer(&auth("s3cret")), None);
        assert_eq!(bearer(&auth("Bearer ")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }

    #[test]
    fn request_ids_are_kept_only_when_plain() {
        let id = |v: &str| request_id(&headers(REQUEST_ID, v)).unwrap_or_default();
        assert_eq!(id("abc-123"), "abc-123");
        assert!(id("has space").starts_with("req_"));
        assert!(id(&"x".repeat(129)).starts_with("req_"));
        let fresh = request_id(&HeaderMap::new()).unwrap_or_default();
        assert_eq!(fresh.len(), "req_".len() + 16, "{fresh}");
    }
}
