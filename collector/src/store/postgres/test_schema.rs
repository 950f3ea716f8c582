//! Test and benchmark support: a throw-away schema in the test database, so
//! PostgreSQL tests run in parallel and leave nothing behind.
//!
//! The database comes from `AISPEND_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`). Not used by the collector itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio_postgres::NoTls;

pub const DEFAULT_TEST_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The base URL tests connect to.
pub fn base_url() -> String {
    std::env::var("AISPEND_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_TEST_URL.to_owned())
}

/// A schema created for one test and dropped (with everything in it) on drop.
pub struct TestSchema {
    pub name: String,
    base_url: String,
}

impl TestSchema {
    /// Creates `aispend_test_<unique>`. The error says how to start
    /// PostgreSQL when it is not reachable.
    pub async fn create() -> Result<Self, String> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "aispend_test_{}_{}_{}",
            std::process::id(),
            nanos,
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let base_url = base_url();
        let client = connect(&base_url).await?;
        client
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .map_err(|e| format!("cannot create schema {name}: {e}"))?;
        Ok(Self { name, base_url })
    }

    /// The database URL with `search_path` set to this schema on every
    /// connection (what a collector replica is given).
    pub fn url(&self) -> String {
        let separator = if self.base_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!(
            "{}{separator}options=-c%20search_path%3D{}",
            self.base_url, self.name
        )
    }

    /// `url()` with `application_name` set to the schema's name, so a
    /// benchmark can find its own server processes with `backend_pids`.
    pub fn named_url(&self) -> String {
        format!("{}&application_name={}", self.url(), self.name)
    }

    /// Process ids of the server backends of the connections opened with
    /// `named_url()` (from `pg_stat_activity`; this query's own connection is
    /// not one of them).
    pub async fn backend_pids(&self) -> Result<Vec<i32>, String> {
        let client = connect(&self.base_url).await?;
        let rows = client
            .query(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
                &[&self.name],
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(rows.iter().map(|row| row.get::<_, i32>(0)).collect())
    }
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, String> {
    let unreachable = |e: &dyn std::fmt::Display| {
        format!(
            "PostgreSQL not reachable at {url} ({e}); start it with: \
             pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start \
             (or set AISPEND_TEST_POSTGRES_URL)"
        )
    };
    // The same TLS settings as the store (e.g. `?sslmode=require`).
    let (config, tls) = super::tls::parse_url(url).map_err(|e| unreachable(&e))?;
    let client = match super::tls::connector(&tls).map_err(|e| unreachable(&e))? {
        super::tls::Connector::Plain => {
            let (client, connection) = config.connect(NoTls).await.map_err(|e| unreachable(&e))?;
            tokio::spawn(connection);
            client
        }
        super::tls::Connector::Rustls(tls) => {
            let (client, connection) = config.connect(tls).await.map_err(|e| unreachable(&e))?;
            tokio::spawn(connection);
            client
        }
    };
    Ok(client)
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        // Drop may run inside a runtime (a test) or outside: a private thread
        // with its own small runtime works in both.
        let url = self.base_url.clone();
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let client = connect(&url).await?;
                client.batch_execute(&sql).await.map_err(|e| e.to_string())
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            tracing::warn!(schema = %self.name, error = %e, "could not drop test schema");
        }
    }
}
