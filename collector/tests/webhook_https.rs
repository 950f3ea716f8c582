//! https webhook targets (CONTRACTS §10): a local https receiver with a
//! certificate from a CA made here (rcgen) gets a signed delivery when that
//! CA is given as `webhook_ca`; without it the TLS handshake is refused
//! (the certificate is not trusted) and the delivery stays pending.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aispend_collector::domain::alerts::anomaly;
use aispend_collector::domain::budgets::Scope;
use aispend_collector::domain::webhooks::signature;
use aispend_collector::service::alerts::{self, AlertSettings};
use aispend_collector::service::webhook_client::{WebhookCa, WebhookClient};
use aispend_collector::service::webhooks;
use axum::body::Bytes;
use axum::http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};

mod common;

use common::ADMIN;

const SECRET: &str = "whsec-https-0123456789";

struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

/// A CA and a server certificate it signed for `localhost` and 127.0.0.1.
fn make_pki() -> Pki {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params
        .distinguished_name
        .push(DnType::CommonName, "aispend webhook test CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = params.self_signed(&ca_key).expect("CA cert");
    let key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &ca, &ca_key).expect("server cert");
    Pki {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

type Got = Arc<Mutex<Vec<(Vec<(String, String)>, String)>>>;

/// An https server on a free port recording every POST (answers 204).
async fn https_receiver(pki: &Pki) -> (u16, Got) {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pki.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("cert");
    let key = PrivateKeyDer::from_pem_slice(pki.key_pem.as_bytes()).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let got: Got = Arc::default();
    let sink = Arc::clone(&got);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let sink = Arc::clone(&sink);
            tokio::spawn(async move {
                // A client that does not trust the CA aborts the handshake.
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let sink = Arc::clone(&sink);
                        async move {
                            let headers = req
                                .headers()
                                .iter()
                                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                                .collect();
                            let body = req.into_body().collect().await.map(|b| b.to_bytes());
                            let body =
                                String::from_utf8_lossy(&body.unwrap_or_default()).into_owned();
                            sink.lock().expect("lock").push((headers, body));
                            hyper::Response::builder()
                                .status(204)
                                .body(Full::new(Bytes::new()))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (port, got)
}

#[tokio::test]
async fn an_https_receiver_trusted_through_the_ca_file_gets_a_signed_delivery() {
    let pki = make_pki();
    let (port, got) = https_receiver(&pki).await;
    let dir = tempfile::tempdir().expect("dir");
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, &pki.ca_pem).expect("write CA");
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").expect("write");
    let err = WebhookCa::load(&not_pem).expect_err("no certificate");
    assert!(
        err.contains("not.pem") && err.contains("no PEM certificate"),
        "{err}"
    );
    let ca = WebhookCa::load(&ca_path).expect("CA file");

    // Without the CA, the receiver's certificate is not trusted.
    let url = format!("https://localhost:{port}/hook");
    let untrusted = WebhookClient::default()
        .post(&url, &[], "{}".into(), Duration::from_secs(5))
        .await
        .expect_err("unknown issuer");
    assert!(
        untrusted.contains("TLS handshake") && untrusted.contains("certificate"),
        "{untrusted}"
    );
    assert!(got.lock().expect("lock").is_empty());

    let c = common::start_with(|state| {
        state.with_alerts(AlertSettings {
            webhook_ca: Some(ca),
            ..AlertSettings::default()
        })
    });
    let created = common::call(
        &c.router,
        "POST",
        "/v1/webhooks",
        Some(ADMIN),
        json!({"url": url, "secret": SECRET}),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);

    // Any alert goes out through the same outbox: here an anomaly.
    let scope = Scope::from([("team".to_owned(), "search".to_owned())]);
    let history: Vec<f64> = (0..30)
        .map(|i| if i % 2 == 0 { 9.0 } else { 11.0 })
        .collect();
    let now = c.state.now();
    let alert = anomaly(&scope, 0, &history, 50.0, 10.0, now).expect("anomaly");
    let id = alert.id.clone();
    assert!(alerts::raise(&c.state, alert).await.expect("raise"));
    assert_eq!(webhooks::deliver_due(&c.state).await.expect("deliver"), 1);

    let got = got.lock().expect("lock").clone();
    assert_eq!(got.len(), 1, "one delivery over https");
    let (headers, body) = &got[0];
    let h = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .expect(name)
    };
    let ts: i64 = h("x-aispend-timestamp").parse().expect("timestamp");
    assert_eq!(h("x-aispend-signature"), signature(SECRET, ts, body));
    assert_eq!(h("x-aispend-event-id"), id);
    let event: Value = serde_json::from_str(body).expect("json");
    assert_eq!(
        (event["kind"].as_str(), event["event"].as_str()),
        (Some("anomaly"), Some("spend.alert"))
    );
    assert!(event["budget_id"].is_null());
}
