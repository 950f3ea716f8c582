//! TLS against a PostgreSQL cluster this test starts itself (initdb + pg_ctl
//! in a temporary directory, on a free port), with `ssl=on`, a CA, server
//! and client certificates made here (rcgen), and a pg_hba.conf that accepts
//! only `hostssl` connections (and `cert` authentication for one user).
//!
//! Skipped, with the reason printed, only when `initdb` is not installed.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

use super::super::PostgresStore;
use crate::store::{Store, StoreErrorKind};

/// The PostgreSQL binaries: the Debian path of version 15, else `pg_config
/// --bindir`, else wherever `initdb` is on PATH.
fn bin_dir() -> Option<PathBuf> {
    let debian = PathBuf::from("/usr/lib/postgresql/15/bin");
    if debian.join("initdb").exists() && debian.join("pg_ctl").exists() {
        return Some(debian);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return Some(dir);
        }
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .find(|p| p.join("initdb").exists() && p.join("pg_ctl").exists())
    })
}

struct Pki {
    ca_pem: String,
    server_cert_pem: String,
    server_key_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
    other_ca_pem: String,
}

fn make_ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).expect("CA cert");
    (cert, key)
}

fn make_pki() -> Pki {
    let (ca, ca_key) = make_ca("aispend test CA");
    let (other_ca, _) = make_ca("some other CA");
    // The server certificate names `localhost` only (not 127.0.0.1): a
    // connection to 127.0.0.1 passes verify-ca and fails verify-full.
    let server_key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(vec![String::from("localhost")]).expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = params
        .signed_by(&server_key, &ca, &ca_key)
        .expect("server cert");
    let client_key = KeyPair::generate().expect("client key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, "certuser");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = params
        .signed_by(&client_key, &ca, &ca_key)
        .expect("client cert");
    Pki {
        ca_pem: ca.pem(),
        server_cert_pem: server.pem(),
        server_key_pem: server_key.serialize_pem(),
        client_cert_pem: client.pem(),
        client_key_pem: client_key.serialize_pem(),
        other_ca_pem: other_ca.pem(),
    }
}

/// A running throw-away cluster; stopped (immediately) on drop.
struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    run_as_postgres: bool,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

impl Cluster {
    /// initdb refuses to run as root: as root, the cluster belongs to the
    /// `postgres` user (its files chowned to it).
    fn command(&self, program: &str) -> Command {
        command(&self.bin, program, self.run_as_postgres)
    }

    fn start(bin: PathBuf, pki: &Pki) -> Cluster {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("aispend-tls-")
            .tempdir()
            .expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let run_as_postgres = is_root();
        let owner = run_as_postgres.then(postgres_uid);
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("mkdir data");
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        chown(&data, owner);
        let status = command(&bin, "initdb", run_as_postgres)
            .args(["-D"])
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-N",
            ])
            .output()
            .expect("run initdb");
        assert!(
            status.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&status.stderr)
        );
        for (name, text) in [
            ("server.crt", &pki.server_cert_pem),
            ("server.key", &pki.server_key_pem),
            ("root.crt", &pki.ca_pem),
        ] {
            let path = data.join(name);
            write(&path, text);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            chown(&path, owner);
        }
        let port = free_port();
        let conf = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n\
             ssl_ca_file = 'root.crt'\nfsync = off\nmax_connections = 40\n",
            data.display()
        );
        let conf_path = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).expect("read postgresql.conf");
        text.push_str(&conf);
        write(&conf_path, &text);
        // Only TLS connections; `certuser` must present a client certificate.
        write(
            &data.join("pg_hba.conf"),
            "hostssl all certuser 127.0.0.1/32 cert\nhostssl all all 127.0.0.1/32 trust\n",
        );
        let cluster = Cluster {
            bin,
            data: data.clone(),
            port,
            run_as_postgres,
            _dir: dir,
        };
        let log = data.join("server.log");
        let out = cluster
            .command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "start"])
            .output()
            .expect("run pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl start failed: {} {}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        cluster
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

fn command(bin: &Path, program: &str, run_as_postgres: bool) -> Command {
    if run_as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(program));
        c
    } else {
        Command::new(bin.join(program))
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn postgres_uid() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("id postgres");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("running as root needs a `postgres` user for initdb")
    };
    (id("-u"), id("-g"))
}

fn chown(path: &Path, owner: Option<(u32, u32)>) {
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    }
}

async fn connect(url: &str) -> Result<PostgresStore, crate::store::StoreError> {
    let store = PostgresStore::connect(url).await?;
    store.ping().await?;
    Ok(store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_modes_against_a_cluster_with_ssl_on() {
    let Some(bin) = bin_dir() else {
        println!("SKIPPED tls_modes_against_a_cluster_with_ssl_on: initdb is not installed");
        return;
    };
    let pki = make_pki();
    let cluster = Cluster::start(bin, &pki);
    let files = tempfile::tempdir().expect("tempdir");
    let file = |name: &str, text: &str| {
        let path = files.path().join(name);
        write(&path, text);
        path.display().to_string()
    };
    let ca = file("ca.pem", &pki.ca_pem);
    let other_ca = file("other-ca.pem", &pki.other_ca_pem);
    let client_cert = file("client.crt", &pki.client_cert_pem);
    let client_key = file("client.key", &pki.client_key_pem);
    let port = cluster.port;
    let url = |host: &str, user: &str, params: &str| {
        format!("postgres://{user}@{host}:{port}/postgres?{params}")
    };

    // require: encrypted without checking the certificate (hostssl only, so
    // a connection at all proves TLS).
    let store = connect(&url("127.0.0.1", "postgres", "sslmode=require"))
        .await
        .unwrap_or_else(|e| panic!("require: {e}"));
    store.close().await.expect("close");
    // prefer (the default) uses TLS when the server offers it.
    connect(&url("127.0.0.1", "postgres", ""))
        .await
        .unwrap_or_else(|e| panic!("prefer: {e}"));

    // verify-full with the right CA and the name in the certificate.
    connect(&url(
        "localhost",
        "postgres",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await
    .unwrap_or_else(|e| panic!("verify-full: {e}"));
    // verify-ca checks the chain, not the name: 127.0.0.1 is not in the
    // certificate.
    connect(&url(
        "127.0.0.1",
        "postgres",
        &format!("sslmode=verify-ca&sslrootcert={ca}"),
    ))
    .await
    .unwrap_or_else(|e| panic!("verify-ca: {e}"));
    // verify-full refuses the same connection: wrong name.
    let err = connect(&url(
        "127.0.0.1",
        "postgres",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await
    .err()
    .expect("verify-full to a name not in the certificate must fail");
    assert!(err.message().contains("TLS handshake"), "{err}");
    assert!(err.message().contains("not valid for name"), "{err}");

    // verify-full with a CA that did not sign the server certificate.
    let err = connect(&url(
        "localhost",
        "postgres",
        &format!("sslmode=verify-full&sslrootcert={other_ca}"),
    ))
    .await
    .err()
    .expect("verify-full with a wrong CA must fail");
    let message = err.message();
    assert!(
        message.contains("cannot connect to PostgreSQL")
            && message.contains("error performing TLS handshake")
            && message.contains("invalid peer certificate")
            && message.contains("UnknownIssuer"),
        "{message}"
    );
    // A setting to fix, not an outage to wait out.
    assert_eq!(err.kind(), StoreErrorKind::Invalid, "{err}");
    // require with a root certificate behaves as verify-ca (libpq): the
    // wrong CA is refused there too.
    let err = connect(&url(
        "127.0.0.1",
        "postgres",
        &format!("sslmode=require&sslrootcert={other_ca}"),
    ))
    .await
    .err()
    .expect("require + wrong sslrootcert must fail");
    assert!(err.message().contains("UnknownIssuer"), "{err}");

    // disable against a hostssl-only pg_hba.conf: refused by the server.
    let err = connect(&url("127.0.0.1", "postgres", "sslmode=disable"))
        .await
        .err()
        .expect("sslmode=disable must be refused by hostssl-only pg_hba");
    assert!(
        err.message().contains("no pg_hba.conf entry") && err.message().contains("no encryption"),
        "{err}"
    );

    // Client certificate: `certuser` authenticates with `cert`.
    let err = connect(&url(
        "localhost",
        "certuser",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await
    .err()
    .expect("cert auth without a client certificate must fail");
    assert!(err.message().contains("certificate"), "{err}");
    // The role must exist for cert auth to succeed.
    let (client, connection) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=require"),
        match super::super::tls::connector(
            &super::super::tls::parse_url("postgres://x@h/d?sslmode=require")
                .expect("parse")
                .1,
        )
        .expect("connector")
        {
            super::super::tls::Connector::Rustls(tls) => tls,
            super::super::tls::Connector::Plain => panic!("require must use TLS"),
        },
    )
    .await
    .expect("admin connection");
    tokio::spawn(connection);
    client
        .batch_execute("CREATE ROLE certuser LOGIN SUPERUSER")
        .await
        .expect("create role");
    connect(&url(
        "localhost",
        "certuser",
        &format!("sslmode=verify-full&sslrootcert={ca}&sslcert={client_cert}&sslkey={client_key}"),
    ))
    .await
    .unwrap_or_else(|e| panic!("client certificate: {e}"));
}
