//! TLS to PostgreSQL with rustls (no OpenSSL), with libpq's `sslmode`
//! meanings, read from the database URL's query parameters (libpq URI style):
//!
//! | `sslmode`     | TLS                         | server certificate checked            |
//! |---------------|-----------------------------|---------------------------------------|
//! | `disable`     | never                       | —                                     |
//! | `prefer` (default) | if the server offers it | no                                    |
//! | `require`     | always                      | no; with `sslrootcert`: as `verify-ca` |
//! | `verify-ca`   | always                      | chain to `sslrootcert`                |
//! | `verify-full` | always                      | chain to `sslrootcert` + host name    |
//!
//! `sslcert` + `sslkey` (PEM files) present a client certificate. libpq's
//! fallbacks to files under `~/.postgresql/` are not read: every file is
//! named in the URL, so what a collector trusts is visible in its settings.
//! `sslmode=allow`, `sslrootcert=system` and the other `ssl*` parameters are
//! refused with a message rather than ignored.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::config::SslMode;
use tokio_postgres::Config;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::StoreError;

/// libpq's `sslmode` values this collector supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl Mode {
    fn parse(value: &str) -> Result<Self, StoreError> {
        Ok(match value {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            "allow" => return Err(StoreError::invalid(
                "sslmode=allow is not supported (use prefer, require, verify-ca or verify-full)",
            )),
            other => {
                return Err(StoreError::invalid(format!(
                    "invalid sslmode `{other}` in the PostgreSQL URL: expected disable, prefer, \
                     require, verify-ca or verify-full"
                )))
            }
        })
    }
}

/// The TLS part of a database URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: Mode,
    pub root_cert: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
}

impl TlsSettings {
    /// The check libpq applies: `require` with a root certificate behaves as
    /// `verify-ca`.
    pub fn effective_mode(&self) -> Mode {
        match (self.mode, &self.root_cert) {
            (Mode::Require, Some(_)) => Mode::VerifyCa,
            (mode, _) => mode,
        }
    }
}

/// How the pool connects: in clear text, or through rustls.
pub enum Connector {
    Plain,
    Rustls(MakeRustlsConnect),
}

/// Splits a database URL into tokio-postgres' `Config` (with its own
/// `sslmode`: disable, prefer or require) and the TLS settings.
pub fn parse_url(url: &str) -> Result<(Config, TlsSettings), StoreError> {
    let (rest, tls) = split_tls_params(url)?;
    let mut config: Config = rest
        .parse()
        .map_err(|e| StoreError::invalid(format!("invalid PostgreSQL URL: {e}")))?;
    config.ssl_mode(match tls.mode {
        Mode::Disable => SslMode::Disable,
        Mode::Prefer => SslMode::Prefer,
        Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
    });
    Ok((config, tls))
}

/// Takes the `ssl*` query parameters out of a `postgres://` URL. A
/// key=value connection string is passed on as it is (tokio-postgres reads
/// its `sslmode` there: disable, prefer or require, without verification
/// beyond what `require` means here).
fn split_tls_params(url: &str) -> Result<(String, TlsSettings), StoreError> {
    let mut tls = TlsSettings {
        mode: Mode::Prefer,
        root_cert: None,
        client_cert: None,
        client_key: None,
    };
    let is_uri = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let Some((base, query)) = url.split_once('?').filter(|_| is_uri) else {
        if !is_uri {
            // key=value form: tokio-postgres parses sslmode itself.
            if let Ok(config) = url.parse::<Config>() {
                tls.mode = match config.get_ssl_mode() {
                    SslMode::Disable => Mode::Disable,
                    SslMode::Require => Mode::Require,
                    _ => Mode::Prefer,
                };
            }
        }
        return Ok((url.to_owned(), tls));
    };
    // Parameters other than ssl* are kept byte for byte (tokio-postgres
    // percent-decodes them itself; `+` is not a space there, as in libpq).
    let mut kept: Vec<&str> = Vec::new();
    for piece in query.split('&').filter(|p| !p.is_empty()) {
        let escaped = piece.replace('+', "%2B");
        let Some((key, value)) = form_urlencoded::parse(escaped.as_bytes()).next() else {
            continue;
        };
        match key.as_ref() {
            "sslmode" => tls.mode = Mode::parse(&value)?,
            "sslrootcert" => {
                if value == "system" {
                    return Err(StoreError::invalid(
                        "sslrootcert=system is not supported: name the CA certificate file \
                         (PEM), e.g. sslrootcert=/etc/ssl/certs/rds-ca.pem",
                    ));
                }
                tls.root_cert = Some(value.into_owned());
            }
            "sslcert" => tls.client_cert = Some(value.into_owned()),
            "sslkey" => tls.client_key = Some(value.into_owned()),
            other if other.starts_with("ssl") && other != "sslnegotiation" => {
                return Err(StoreError::invalid(format!(
                    "the PostgreSQL URL parameter `{other}` is not supported (supported: \
                     sslmode, sslrootcert, sslcert, sslkey)"
                )));
            }
            _ => kept.push(piece),
        }
    }
    if tls.client_cert.is_some() != tls.client_key.is_some() {
        return Err(StoreError::invalid(
            "sslcert and sslkey go together in the PostgreSQL URL (a client certificate \
             and its private key)",
        ));
    }
    if matches!(tls.mode, Mode::VerifyCa | Mode::VerifyFull) && tls.root_cert.is_none() {
        return Err(StoreError::invalid(format!(
            "sslmode={} needs sslrootcert=<CA certificate file> in the PostgreSQL URL",
            if tls.mode == Mode::VerifyCa {
                "verify-ca"
            } else {
                "verify-full"
            }
        )));
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, tls))
}

/// The connector for these settings: certificate files are read now, so a
/// missing or unreadable file fails at start-up, naming the file.
pub fn connector(tls: &TlsSettings) -> Result<Connector, StoreError> {
    if tls.mode == Mode::Disable {
        return Ok(Connector::Plain);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::internal(format!("TLS setup: {e}")))?;
    let verifier: Arc<dyn ServerCertVerifier> = match tls.effective_mode() {
        Mode::Disable | Mode::Prefer | Mode::Require => Arc::new(EncryptOnly { provider }),
        mode @ (Mode::VerifyCa | Mode::VerifyFull) => {
            let path = tls.root_cert.as_deref().unwrap_or_default();
            let mut roots = RootCertStore::empty();
            for cert in read_certs(path, "sslrootcert")? {
                roots.add(cert).map_err(|e| {
                    StoreError::invalid(format!("sslrootcert {path}: unusable certificate: {e}"))
                })?;
            }
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| StoreError::invalid(format!("sslrootcert {path}: {e}")))?;
            Arc::new(ChainVerifier {
                webpki,
                check_name: mode == Mode::VerifyFull,
            })
        }
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert, "sslcert")?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                StoreError::invalid(format!("sslkey {key}: cannot read a PEM private key: {e}"))
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| StoreError::invalid(format!("sslcert/sslkey: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Connector::Rustls(MakeRustlsConnect::new(config)))
}

fn read_certs(path: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, StoreError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            StoreError::invalid(format!("{what} {path}: cannot read PEM certificates: {e}"))
        })?;
    if certs.is_empty() {
        return Err(StoreError::invalid(format!(
            "{what} {path}: no certificate in the file"
        )));
    }
    Ok(certs)
}

/// `prefer` and `require` without a root certificate: the connection is
/// encrypted, the server's certificate is not checked (libpq's meaning).
/// Handshake signatures are still verified.
#[derive(Debug)]
struct EncryptOnly {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `verify-ca` (chain only) and `verify-full` (chain and host name).
#[derive(Debug)]
struct ChainVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    check_name: bool,
}

impl ServerCertVerifier for ChainVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match verdict {
            // The name is checked after the chain: this error means the
            // chain itself was valid.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls_of(url: &str) -> Result<TlsSettings, String> {
        parse_url(url)
            .map(|(_, tls)| tls)
            .map_err(|e| e.message().to_owned())
    }

    #[test]
    fn default_is_prefer_and_ssl_params_leave_the_url() {
        let (config, tls) = parse_url(
            "postgres://u@db:5433/x?sslmode=verify-full&sslrootcert=/ca.pem&application_name=a",
        )
        .expect("parse");
        assert_eq!(tls.mode, Mode::VerifyFull);
        assert_eq!(tls.root_cert.as_deref(), Some("/ca.pem"));
        assert_eq!(config.get_ssl_mode(), SslMode::Require);
        assert_eq!(config.get_application_name(), Some("a"));
        assert_eq!(config.get_ports(), &[5433]);
        assert_eq!(
            tls_of("postgres://u@db/x").map(|t| t.mode),
            Ok(Mode::Prefer)
        );
        let (config, _) =
            parse_url("postgres://u@db/x?sslmode=require&options=-c%20search_path%3Ds1")
                .expect("parse");
        assert_eq!(config.get_options(), Some("-c search_path=s1"));
        let (config, _) = parse_url("postgres://u@db/x?sslmode=disable").expect("parse");
        assert_eq!(config.get_ssl_mode(), SslMode::Disable);
    }

    #[test]
    fn require_with_a_root_certificate_is_verify_ca() {
        let tls = tls_of("postgres://u@db/x?sslmode=require&sslrootcert=/ca.pem").expect("ok");
        assert_eq!(tls.effective_mode(), Mode::VerifyCa);
        let tls = tls_of("postgres://u@db/x?sslmode=require").expect("ok");
        assert_eq!(tls.effective_mode(), Mode::Require);
    }

    #[test]
    fn bad_settings_are_clear_errors() {
        let err = |url: &str| tls_of(url).err().unwrap_or_default();
        assert!(err("postgres://u@db/x?sslmode=verify-full").contains("needs sslrootcert"));
        assert!(err("postgres://u@db/x?sslmode=bogus").contains("invalid sslmode `bogus`"));
        assert!(err("postgres://u@db/x?sslmode=allow").contains("sslmode=allow is not supported"));
        assert!(err("postgres://u@db/x?sslcert=/c.pem").contains("sslcert and sslkey go together"));
        assert!(err("postgres://u@db/x?sslcrl=/x").contains("`sslcrl` is not supported"));
        assert!(err("postgres://u@db/x?sslrootcert=system").contains("sslrootcert=system"));
    }

    #[test]
    fn missing_certificate_files_are_named() {
        let tls = tls_of("postgres://u@db/x?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem")
            .expect("parse");
        let err = connector(&tls).err().map(|e| e.message().to_owned());
        assert!(
            err.as_deref()
                .is_some_and(|m| m.contains("sslrootcert /nonexistent/ca.pem")),
            "{err:?}"
        );
    }
}
