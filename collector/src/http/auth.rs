//! Where roles are checked: a route layer per route group lets a request
//! through only with one of the bearer tokens allowed there (`state::Tokens`).
//! It runs before the body is read, so an unauthenticated client cannot make
//! the collector buffer a large body.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::Response;

use crate::error::AppError;

/// The tokens accepted on a route group. An unset token (`None`, only with
/// `--insecure-no-auth`) opens the group to anyone. `known` holds every
/// token the collector has (all roles), so that a valid token of another
/// role is told apart from an unknown one (403, not 401).
#[derive(Clone)]
pub struct AnyToken {
    pub allowed: Vec<Option<String>>,
    pub known: Vec<String>,
}

impl AnyToken {
    /// The `allowed` tokens, among every configured token `known`.
    pub fn new(allowed: Vec<Option<String>>, known: &[Option<String>]) -> Self {
        Self {
            allowed,
            known: known.iter().flatten().cloned().collect(),
        }
    }

    fn admits(&self, headers: &HeaderMap) -> bool {
        self.allowed.iter().any(|t| match t {
            None => true,
            Some(token) => bearer_matches(headers, token),
        })
    }

    /// A token of some role, though not one allowed here.
    fn knows(&self, headers: &HeaderMap) -> bool {
        self.known
            .iter()
            .any(|token| bearer_matches(headers, token))
    }
}

/// Middleware: 401 unless the request carries a known token, 403 when that
/// token's role is not allowed on this route.
pub async fn require_token(
    State(allowed): State<AnyToken>,
    request: Request,
    next: Next,
) -> Result<Response, AppError> {
    if !allowed.admits(request.headers()) {
        if allowed.knows(request.headers()) {
            return Err(AppError::Forbidden);
        }
        return Err(AppError::Unauthorized);
    }
    Ok(next.run(request).await)
}

fn bearer_matches(headers: &HeaderMap, expected: &str) -> bool {
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

    #[test]
    fn any_of_several_tokens_and_unset_opens() {
        let all = [Some("r".into()), Some("a".into()), Some("i".into())];
        let read_or_admin = AnyToken::new(vec![Some("r".into()), Some("a".into())], &all);
        assert!(read_or_admin.admits(&headers("Bearer r")));
        assert!(read_or_admin.admits(&headers("Bearer a")));
        assert!(!read_or_admin.admits(&headers("Bearer x")));
        assert!(!read_or_admin.admits(&headers("Bearer i")));
        assert!(
            read_or_admin.knows(&headers("Bearer i")),
            "another role's token"
        );
        assert!(!read_or_admin.knows(&headers("Bearer x")));
        assert!(AnyToken::new(vec![None], &all).admits(&HeaderMap::new()));
        assert!(!AnyToken::new(vec![Some("i".into())], &all).admits(&HeaderMap::new()));
    }
}
