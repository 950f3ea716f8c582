//! SQLite-only behaviour (the behaviour every store shares is in
//! `store/tests.rs`): how ingest stores ids and rows, how record rows are
//! matched back after duplicates, and sealed days.

mod ingest;
mod records;
mod seal;

/// A database file in a temporary directory, removed when dropped.
struct TempStore {
    _dir: tempfile::TempDir,
    path: String,
}

impl TempStore {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("aispend.db");
        let path = path.to_str().expect("utf-8 path").to_owned();
        Self { _dir: dir, path }
    }

    fn path(&self) -> &str {
        &self.path
    }

    fn open(&self) -> crate::store::sqlite::SqliteStore {
        crate::store::sqlite::SqliteStore::open(&self.path).expect("open")
    }
}
