//! HTTP handlers, one module per endpoint, and the bearer-token guard.

pub mod budgets;
pub mod caps;
pub mod health;
pub mod metrics;
pub mod records;
pub mod usage;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::Response;

use crate::error::AppError;

/// A required bearer token, or `None` when the collector runs with
/// `--insecure-no-auth`.
#[derive(Clone)]
pub struct RequiredToken(pub Option<String>);

/// Middleware: rejects the request with 401 unless it carries the token.
/// Runs before the body is read, so an unauthenticated client cannot make
/// the collector buffer a large body.
pub async fn require_token(
    State(required): State<RequiredToken>,
    request: Request,
    next: Next,
) -> Result<Response, AppError> {
    if let Some(expected) = &required.0 {
        if !bearer_matches(request.headers(), expected) {
            return Err(AppError::Unauthorized);
        }
    }
    Ok(next.run(request).await)
}

pub(crate) fn bearer_matches(headers: &HeaderMap, expected: &str) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, token)) = value.split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer")
        && constant_time_eq(token.trim().as_bytes(), expected.as_bytes())
}

/// Compares without an early exit so response time does not reveal how much
/// of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(auth) {
            h.insert(header::AUTHORIZATION, v);
        }
        h
    }

    #[test]
    fn bearer_token_must_match_exactly() {
        assert!(bearer_matches(&headers("Bearer s3cret"), "s3cret"));
        assert!(bearer_matches(&headers("bearer s3cret"), "s3cret"));
        assert!(!bearer_matches(&headers("Bearer s3cre"), "s3cret"));
        assert!(!bearer_matches(&headers("Bearer s3cretX"), "s3cret"));
        assert!(!bearer_matches(&headers("Basic s3cret"), "s3cret"));
        assert!(!bearer_matches(&headers("s3cret"), "s3cret"));
        assert!(!bearer_matches(&HeaderMap::new(), "s3cret"));
    }
}
