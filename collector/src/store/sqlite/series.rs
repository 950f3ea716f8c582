//! Series ids for the writer: each distinct (key_id, tags, model, provider,
//! operation) of the records is interned once as a `series` row and kept in
//! the shared id cache (`store::rows::SeriesIds`), looked up from a record's
//! borrowed fields.

use rusqlite::{params, Connection};

use super::rollup::check_series_id;
use crate::domain::record::map_to_json;
use crate::store::rows::{SeriesIds, SeriesRef};
use crate::store::StoreError;

const INSERT_SERIES: &str = "INSERT INTO series (key_id, tags, model, provider, operation) \
     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING";

const SELECT_SERIES_ID: &str = "SELECT id FROM series WHERE key_id = ?1 AND tags = ?2 \
     AND model = ?3 AND provider = ?4 AND operation = ?5";

/// The writer's series ids. It only ever holds ids of committed rows:
/// `clear` it when a transaction fails.
#[derive(Default)]
pub(super) struct SeriesCache(SeriesIds);

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
        if let Some(id) = self.0.get(series) {
            return Ok(id);
        }
        let id = resolve(conn, series)?;
        self.0.insert(series, id);
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
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn each_series_gets_its_own_stored_id_once() {
        let conn = Connection::open_in_memory().expect("db");
        conn.execute_batch(include_str!("schema.sql"))
            .expect("schema");
        let t1 = BTreeMap::from([("team".to_owned(), "a".to_owned())]);
        let t2 = BTreeMap::from([("team".to_owned(), "b".to_owned())]);
        let series = |tags| SeriesRef {
            key_id: "k",
            tags,
            model: "",
            provider: "p",
            operation: "o",
        };
        let (a, b) = (series(&t1), series(&t2));
        let mut cache = SeriesCache::default();
        let id_a = cache.id(&conn, &a).expect("a");
        let id_b = cache.id(&conn, &b).expect("b");
        assert_ne!(id_a, id_b);
        assert_eq!(cache.id(&conn, &a).expect("a again"), id_a);
        assert_eq!(resolve(&conn, &a).expect("stored"), id_a);
        cache.clear();
        assert_eq!(cache.id(&conn, &b).expect("b from the db"), id_b);
    }
}
