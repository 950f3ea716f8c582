//! The HTTP client of webhook deliveries: one POST over `http://` or, with
//! rustls (ring, the same as the PostgreSQL TLS), over `https://`. A server
//! certificate must chain to the Mozilla roots compiled in by `webpki-roots`
//! or to a CA of the optional `AISPEND_WEBHOOK_CA_FILE` (a private CA), and
//! name the URL's host; no system trust store is read.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use http_body_util::Full;
use hyper::rt::{Read, Write};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::domain::webhooks::parse_url;

/// Extra CA certificates for https webhook targets, read at start-up so a
/// missing or empty file stops the collector with its name.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookCa {
    pub path: PathBuf,
    pub certs: Vec<CertificateDer<'static>>,
}

impl WebhookCa {
    pub fn load(path: &Path) -> Result<Self, String> {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("{}: cannot read PEM certificates: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "{}: no PEM certificate (-----BEGIN CERTIFICATE-----) in the file",
                path.display()
            ));
        }
        Ok(Self {
            path: path.to_owned(),
            certs,
        })
    }
}

/// Sends webhook POSTs; cheap to share (the TLS config is built once).
#[derive(Clone)]
pub struct WebhookClient {
    tls: Result<Arc<ClientConfig>, String>,
}

impl Default for WebhookClient {
    fn default() -> Self {
        Self::new(None)
    }
}

impl WebhookClient {
    /// Trusts the webpki roots plus `extra` (each certificate must parse).
    pub fn new(extra: Option<&WebhookCa>) -> Self {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let mut problem = None;
        for cert in extra.map(|ca| ca.certs.as_slice()).unwrap_or_default() {
            if let Err(e) = roots.add(cert.clone()) {
                problem = Some(format!("webhook CA file: unusable certificate: {e}"));
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = match problem {
            Some(p) => Err(p),
            None => ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
                .map_err(|e| format!("TLS setup: {e}")),
        };
        Self { tls }
    }

    /// The problem with the TLS setup, if any (checked at start-up).
    pub fn tls_problem(&self) -> Option<&str> {
        self.tls.as_ref().err().map(String::as_str)
    }

    /// One POST of `body` to `url`: the answer's status, or why there is
    /// none (connect, TLS handshake, certificate, timeout).
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: String,
        timeout: Duration,
    ) -> Result<u16, String> {
        let target = parse_url(url)?;
        let host = target
            .host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let authority = format!("{}:{}", target.host, target.port);
        let attempt = async {
            let stream = tokio::net::TcpStream::connect((host.as_str(), target.port))
                .await
                .map_err(|e| format!("connect: {e}"))?;
            if !target.https {
                return send(
                    TokioIo::new(stream),
                    &target.path,
                    &authority,
                    headers,
                    body,
                )
                .await;
            }
            let config = self.tls.clone()?;
            let name = ServerName::try_from(host.clone())
                .map_err(|e| format!("TLS: {host:?} is not a valid server name: {e}"))?;
            let tls = TlsConnector::from(config)
                .connect(name, stream)
                .await
                .map_err(|e| format!("TLS handshake: {e}"))?;
            send(TokioIo::new(tls), &target.path, &authority, headers, body).await
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .map_err(|_| format!("no answer within {} ms", timeout.as_millis()))?
    }
}

async fn send<IO>(
    io: IO,
    path: &str,
    authority: &str,
    headers: &[(&str, String)],
    body: String,
) -> Result<u16, String>
where
    IO: Read + Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut request = hyper::Request::post(path)
        .header("host", authority)
        .header("content-type", "application/json")
        .header("user-agent", "aispend-collector");
    for (name, value) in headers {
        request = request.header(*name, value.as_str());
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("send: {e}"))?;
    Ok(response.status().as_u16())
}
