//! The CLI's HTTP/1.1 client: one request per connection over hyper, plain
//! http only (the collector serves no TLS itself; put curl or a proxy in
//! front for https).

use axum::body::{Body, Bytes};
use http_body_util::BodyExt;
use hyper::Request;
use hyper_util::rt::TokioIo;

/// `http://host:port` and an optional path prefix.
#[derive(Debug, PartialEq, Eq)]
pub struct BaseUrl {
    pub authority: String,
    pub prefix: String,
}

impl BaseUrl {
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            format!("--url {url:?}: expected http://host:port (https is not supported here)")
        })?;
        let (authority, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() {
            return Err(format!("--url {url:?}: no host"));
        }
        let authority = if authority.contains(':') {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let prefix = prefix.trim_end_matches('/');
        Ok(BaseUrl {
            authority,
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("/{prefix}")
            },
        })
    }
}

/// Sends one request; answers (status, body).
pub async fn send(
    base: &BaseUrl,
    method: &str,
    path: &str,
    token: &str,
    body: Option<String>,
) -> Result<(u16, Vec<u8>), String> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        format!("{what} http://{}{}{path}: {e}", base.authority, base.prefix)
    };
    let stream = tokio::net::TcpStream::connect(&base.authority)
        .await
        .map_err(|e| fail("cannot connect to", &e))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| fail("cannot talk to", &e))?;
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method(method)
        .uri(format!("{}{path}", base.prefix))
        .header("host", &base.authority)
        .header("authorization", format!("Bearer {token}"));
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request = request
        .body(body.map_or_else(Body::empty, Body::from))
        .map_err(|e| fail("cannot build a request for", &e))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| fail("no answer from", &e))?;
    let status = response.status().as_u16();
    let bytes: Bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| fail("answer cut off from", &e))?
        .to_bytes();
    Ok((status, bytes.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(
            BaseUrl::parse("http://127.0.0.1:9090"),
            Ok(BaseUrl {
                authority: "127.0.0.1:9090".into(),
                prefix: String::new()
            })
        );
        assert_eq!(
            BaseUrl::parse("http://collector/aispend/"),
            Ok(BaseUrl {
                authority: "collector:80".into(),
                prefix: "/aispend".into()
            })
        );
        assert!(BaseUrl::parse("https://x").is_err());
        assert!(BaseUrl::parse("http://").is_err());
    }
}
