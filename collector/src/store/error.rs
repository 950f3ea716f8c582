//! `StoreError`: what failed in a store, and whether trying again later may
//! succeed. The HTTP layer answers a transient failure 503 (the gateway
//! filter keeps the batch and retries it) and any other 500.

use std::fmt;

/// How a store call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The database cannot answer now: unreachable, connection reset, pool
    /// wait timed out, SQLITE_BUSY/LOCKED, the store closing, a serialization
    /// conflict. The same call may succeed later.
    Transient,
    /// Data the store cannot make sense of (a stored row that does not
    /// decode, a value out of range, a bad database URL or setting).
    /// Retrying the same call fails again.
    Invalid,
    /// Anything else (a failed migration, a background task gone, a bug).
    Internal,
    /// The answer needs raw records that retention (`AISPEND_RETENTION_DAYS`)
    /// has deleted: the caller asked too much (HTTP 400), the message says
    /// what and what to ask instead.
    BeyondRetention,
}

/// A storage failure; the message is logged, never shown to clients in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError {
    kind: StoreErrorKind,
    message: String,
}

impl StoreError {
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(StoreErrorKind::Transient, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StoreErrorKind::Invalid, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StoreErrorKind::Internal, message)
    }

    pub fn beyond_retention(message: impl Into<String>) -> Self {
        Self::new(StoreErrorKind::BeyondRetention, message)
    }

    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// Whether the same call may succeed later (HTTP 503).
    pub fn is_transient(&self) -> bool {
        self.kind == StoreErrorKind::Transient
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same kind with a message that says more (e.g. where it happened).
    pub fn context(self, f: impl FnOnce(&str) -> String) -> Self {
        Self::new(self.kind, f(&self.message))
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "store error: {}", self.message)
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked};
        let busy = matches!(
            e.sqlite_error_code(),
            Some(DatabaseBusy) | Some(DatabaseLocked)
        );
        if busy {
            StoreError::transient(e.to_string())
        } else {
            StoreError::internal(e.to_string())
        }
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        // The server's own message (e.g. "relation … does not exist") is in
        // the DbError; the top-level Display only says "db error".
        match e.as_db_error() {
            Some(db) => {
                let kind = if postgres_state_is_transient(db.code().code()) {
                    StoreErrorKind::Transient
                } else {
                    StoreErrorKind::Internal
                };
                StoreError::new(
                    kind,
                    format!("postgres: {}: {}", db.code().code(), db.message()),
                )
            }
            None => {
                // No answer from the server: the connection closed or the
                // socket failed (refused, reset, timed out).
                // A TLS verdict (unknown CA, wrong host name) is a setting
                // to fix, not a failure to retry.
                let source = std::error::Error::source(&e);
                let tls_verdict = source
                    .and_then(|s| s.downcast_ref::<std::io::Error>())
                    .and_then(|io| io.get_ref())
                    .is_some_and(|inner| inner.is::<rustls::Error>());
                let io = source.is_some_and(|s| s.is::<std::io::Error>());
                let kind = if tls_verdict {
                    StoreErrorKind::Invalid
                } else if e.is_closed() || io {
                    StoreErrorKind::Transient
                } else {
                    StoreErrorKind::Internal
                };
                // tokio-postgres' Display names only the kind ("error
                // performing TLS handshake"); the cause says why.
                let message = match source {
                    Some(cause) => format!("postgres: {e}: {cause}"),
                    None => format!("postgres: {e}"),
                };
                StoreError::new(kind, message)
            }
        }
    }
}

/// SQLSTATEs worth a retry: connection exceptions (08…), insufficient
/// resources (53…), operator intervention such as a restart (57P…),
/// serialization failures and deadlocks (40001, 40P01).
fn postgres_state_is_transient(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57P")
        || code == "40001"
        || code == "40P01"
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        use deadpool_postgres::PoolError;
        match e {
            PoolError::Backend(e) => e.into(),
            PoolError::Timeout(_) | PoolError::Closed => {
                StoreError::transient(format!("postgres pool: {e}"))
            }
            other => StoreError::internal(format!("postgres pool: {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_and_locked_sqlite_errors_are_transient() {
        let failure = |code| {
            rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), Some("x".into()))
        };
        assert!(StoreError::from(failure(rusqlite::ffi::SQLITE_BUSY)).is_transient());
        assert!(StoreError::from(failure(rusqlite::ffi::SQLITE_LOCKED)).is_transient());
        assert!(!StoreError::from(failure(rusqlite::ffi::SQLITE_CONSTRAINT)).is_transient());
        assert!(!StoreError::from(rusqlite::Error::QueryReturnedNoRows).is_transient());
    }

    #[test]
    fn connection_states_are_transient_others_not() {
        for code in ["08006", "08001", "53300", "57P01", "40001", "40P01"] {
            assert!(postgres_state_is_transient(code), "{code}");
        }
        for code in ["23505", "42P01", "22003", "XX000"] {
            assert!(!postgres_state_is_transient(code), "{code}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_postgres_is_transient() {
        let error =
            tokio_postgres::connect("postgres://nobody@127.0.0.1:1/none", tokio_postgres::NoTls)
                .await
                .err()
                .map(StoreError::from)
                .expect("nothing listens on port 1");
        assert!(error.is_transient(), "{error}");
    }

    #[test]
    fn context_keeps_the_kind() {
        let e = StoreError::transient("pool timed out").context(|m| format!("connect: {m}"));
        assert!(e.is_transient());
        assert_eq!(e.message(), "connect: pool timed out");
    }
}
