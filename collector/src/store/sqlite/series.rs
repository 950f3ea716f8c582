//! Series ids for the writer: each distinct (key_id, tags, model, provider,
//! operation) of the records is interned once as a `series` row and kept in
//! a cache that a record looks up from its borrowed fields, so a record
//! already seen costs one cheap hash and one comparison, with no allocation
//! and no tag serialization.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};

use rusqlite::{params, Connection};

use super::ingest::BatchHasher;
use super::rollup::check_series_id;
use crate::domain::record::{map_to_json, UsageRecord};
use crate::store::StoreError;

const INSERT_SERIES: &str = "INSERT INTO series (key_id, tags, model, provider, operation) \
     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING";

const SELECT_SERIES_ID: &str = "SELECT id FROM series WHERE key_id = ?1 AND tags = ?2 \
     AND model = ?3 AND provider = ?4 AND operation = ?5";

/// The grouping dimensions of a record, borrowed (`model` '' when none).
#[derive(PartialEq, Eq)]
pub(super) struct SeriesRef<'a> {
    key_id: &'a str,
    tags: &'a BTreeMap<String, String>,
    model: &'a str,
    provider: &'a str,
    operation: &'a str,
}

impl<'a> SeriesRef<'a> {
    pub(super) fn of(r: &'a UsageRecord) -> Self {
        Self {
            key_id: &r.key_id,
            tags: &r.tags,
            model: r.model.as_deref().unwrap_or_default(),
            provider: &r.provider,
            operation: &r.operation,
        }
    }

    /// One `write` per string: `BatchHasher` folds each write's length into
    /// its last word, so field boundaries still count.
    fn hash_code(&self) -> u64 {
        let mut h = BatchHasher::default();
        h.write(self.key_id.as_bytes());
        h.write(self.model.as_bytes());
        h.write(self.provider.as_bytes());
        h.write(self.operation.as_bytes());
        for (name, value) in self.tags {
            h.write(name.as_bytes());
            h.write(value.as_bytes());
        }
        h.finish()
    }
}

/// A cached series: its dimensions, owned, and its id.
struct Cached {
    key_id: String,
    tags: BTreeMap<String, String>,
    model: String,
    provider: String,
    operation: String,
    id: i64,
}

impl Cached {
    fn matches(&self, s: &SeriesRef<'_>) -> bool {
        self.key_id == s.key_id
            && self.model == s.model
            && self.provider == s.provider
            && self.operation == s.operation
            && self.tags == *s.tags
    }
}

/// Identity hasher for keys that are already hash codes.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed here; fold anything else in anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[derive(Default, Clone, Copy)]
struct BuildPrehashed;

impl BuildHasher for BuildPrehashed {
    type Hasher = Prehashed;
    fn build_hasher(&self) -> Prehashed {
        Prehashed::default()
    }
}

/// The writer's series ids, by hash code of the dimensions. It only ever
/// holds ids of committed rows: `clear` it when a transaction fails.
#[derive(Default)]
pub(super) struct SeriesCache(HashMap<u64, Vec<Cached>, BuildPrehashed>);

impl SeriesCache {
    pub(super) fn clear(&mut self) {
        self.0.clear();
    }

    /// The id of `series`, from the cache or else from the database (the
    /// row is created if new, in the caller's transaction).
    pub(super) fn id(
        &mut self,
        conn: &Connection,
        series: &SeriesRef<'_>,
    ) -> Result<i64, StoreError> {
        let code = series.hash_code();
        let bucket = self.0.entry(code).or_default();
        if let Some(cached) = bucket.iter().find(|c| c.matches(series)) {
            return Ok(cached.id);
        }
        let id = resolve(conn, series)?;
        bucket.push(Cached {
            key_id: series.key_id.to_owned(),
            tags: series.tags.clone(),
            model: series.model.to_owned(),
            provider: series.provider.to_owned(),
            operation: series.operation.to_owned(),
            id,
        });
        Ok(id)
    }
}

/// Id of a series, creating it if new (insert-or-get, safe with several
/// writers). `tags` are stored as canonical JSON.
fn resolve(conn: &Connection, s: &SeriesRef<'_>) -> Result<i64, StoreError> {
    let tags = map_to_json(s.tags);
    let values = params![s.key_id, tags, s.model, s.provider, s.operation];
    conn.prepare_cached(INSERT_SERIES)?.execute(values)?;
    let id = conn
        .prepare_cached(SELECT_SERIES_ID)?
        .query_row(values, |row| row.get(0))?;
    check_series_id(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn field_boundaries_and_tags_change_the_hash_code() {
        let (t1, t2) = (tags(&[("team", "a")]), tags(&[("team", "ab")]));
        let series = |key_id, model, tags| SeriesRef {
            key_id,
            tags,
            model,
            provider: "p",
            operation: "o",
        };
        let codes = [
            series("k", "ab", &t1).hash_code(),
            series("ka", "b", &t1).hash_code(),
            series("k", "ab", &t2).hash_code(),
        ];
        assert_ne!(codes[0], codes[1]);
        assert_ne!(codes[0], codes[2]);
        assert_eq!(codes[0], series("k", "ab", &t1).hash_code());
    }

    #[test]
    fn colliding_series_keep_their_own_ids() {
        let conn = Connection::open_in_memory().expect("db");
        conn.execute_batch(include_str!("schema.sql"))
            .expect("schema");
        let (t1, t2) = (tags(&[("team", "a")]), tags(&[("team", "b")]));
        let a = SeriesRef {
            key_id: "k",
            tags: &t1,
            model: "",
            provider: "p",
            operation: "o",
        };
        let b = SeriesRef {
            key_id: "k",
            tags: &t2,
            model: "",
            provider: "p",
            operation: "o",
        };
        let mut cache = SeriesCache::default();
        let id_a = cache.id(&conn, &a).expect("a");
        // Force b into a's bucket, as a hash collision would.
        let code = a.hash_code();
        let id_b = {
            let id = resolve(&conn, &b).expect("b");
            cache.0.entry(code).or_default().push(Cached {
                key_id: "k".into(),
                tags: t2.clone(),
                model: String::new(),
                provider: "p".into(),
                operation: "o".into(),
                id,
            });
            id
        };
        assert_ne!(id_a, id_b);
        assert_eq!(cache.id(&conn, &a).expect("a again"), id_a);
        assert_eq!(cache.0.get(&code).map(Vec::len), Some(2));
        assert_eq!(resolve(&conn, &a).expect("stored"), id_a);
    }
}
