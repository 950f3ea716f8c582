//! What the collector's HTTP integration tests share: the bootstrap tokens,
//! a collector over a temp SQLite file, and one request → [`Answer`] helper.
//! Each test file compiles this module on its own, so not every item is
//! used everywhere.
#![allow(dead_code)]

use aispend_collector::domain::pricing::PriceTable;
use aispend_collector::{app, store, AppState, Tokens};
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// The bootstrap secrets, as `call` takes them.
pub const INGEST: &str = "ingest-secret";
pub const READ: &str = "read-secret";
pub const ADMIN: &str = "admin-secret";
/// The same, as `authorization` header values.
pub const INGEST_BEARER: &str = "Bearer ingest-secret";
pub const READ_BEARER: &str = "Bearer read-secret";
pub const ADMIN_BEARER: &str = "Bearer admin-secret";

/// The three bootstrap tokens.
pub fn tokens() -> Tokens {
    Tokens {
        ingest: Some(INGEST.into()),
        read: Some(READ.into()),
        admin: Some(ADMIN.into()),
    }
}

/// A fresh temp dir and the URL of a SQLite file in it.
pub fn sqlite_dir() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/aispend.db", dir.path().display());
    (dir, url)
}

/// The state of a collector over a SQLite file at `url`, with the
/// bootstrap tokens.
pub fn sqlite_state(url: &str) -> AppState {
    let store = store::open(url).expect("open store");
    AppState::new(store, PriceTable::embedded().expect("prices"), tokens())
}

/// A collector over a temp SQLite file; the dir lives as long as it does.
pub struct Collector {
    pub router: Router,
    pub state: AppState,
    pub _dir: tempfile::TempDir,
}

/// A collector over a temp SQLite file, its state shaped by `configure`.
pub fn start_with(configure: impl FnOnce(AppState) -> AppState) -> Collector {
    let (dir, url) = sqlite_dir();
    let state = configure(sqlite_state(&url));
    Collector {
        router: app(state.clone()),
        state,
        _dir: dir,
    }
}

/// A collector over a temp SQLite file.
pub fn start() -> Collector {
    start_with(|state| state)
}

/// What came back: status, headers, the ETag, the body as text and as JSON
/// (null when it is not JSON).
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub etag: Option<String>,
    pub text: String,
    pub json: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

/// A JSON body; null is an empty body.
pub fn json_body(body: &Value) -> Body {
    if body.is_null() {
        Body::empty()
    } else {
        Body::from(body.to_string())
    }
}

/// Sends `request` through `router` and reads the whole answer.
pub async fn send(router: &Router, request: Request<Body>) -> Answer {
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    let answer = Answer {
        status,
        headers,
        etag: None,
        text,
        json,
    };
    Answer {
        etag: answer.header("etag"),
        ..answer
    }
}

/// `method uri` with a JSON content type, `Bearer token` when given, and
/// `body` (null = empty body).
pub async fn call(
    router: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Value,
) -> Answer {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    send(router, request.body(json_body(&body)).expect("request")).await
}

/// `method uri` with these headers and `body` (null = empty body, otherwise
/// JSON with its content type).
pub async fn call_with(
    router: &Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> Answer {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if !body.is_null() {
        request = request.header("content-type", "application/json");
    }
    send(router, request.body(json_body(&body)).expect("request")).await
}
