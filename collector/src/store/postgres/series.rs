//! Interning of series (the grouping dimensions of a record) into small ids.
//!
//! Series rows are only ever added, never changed or deleted, so an id once
//! read stays valid for every replica and can be cached for the process life.
//! The cache (`store::rows::SeriesIds`, shared with SQLite) is looked up with
//! the record's own borrowed fields, so a record whose series is known costs
//! no tag serialization and no string copies.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use deadpool_postgres::Client;

use crate::domain::record::{map_to_json, PricedRecord};
use crate::store::rows::{SeriesIds, SeriesRef};
use crate::store::StoreError;

const INSERT_SERIES: &str = "INSERT INTO series (key_id, tags, model, provider, operation) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) \
     ON CONFLICT DO NOTHING";

const SELECT_SERIES: &str = "SELECT s.id, s.key_id, s.tags, s.model, s.provider, s.operation \
     FROM series s JOIN UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) \
     AS k (key_id, tags, model, provider, operation) \
     USING (key_id, tags, model, provider, operation)";

/// A series as stored: (key_id, canonical tags JSON, model or '', provider,
/// operation).
type StoredKey = (String, String, String, String, String);

/// How a series is stored: (key_id, canonical tags JSON, model or '',
/// provider, operation).
fn stored(key: &SeriesRef<'_>) -> StoredKey {
    (
        key.key_id.to_owned(),
        map_to_json(key.tags),
        key.model.to_owned(),
        key.provider.to_owned(),
        key.operation.to_owned(),
    )
}

#[derive(Default)]
pub struct SeriesCache {
    ids: Mutex<SeriesIds>,
}

impl SeriesCache {
    /// The series id of every record from the cache; `None` for the records
    /// whose series this process has not seen yet.
    pub fn cached(&self, records: &[PricedRecord]) -> Vec<Option<i64>> {
        let Ok(ids) = self.ids.lock() else {
            return vec![None; records.len()];
        };
        records
            .iter()
            .map(|priced| ids.get(&SeriesRef::of(&priced.record)))
            .collect()
    }

    /// Fills in the `None`s of `ids` (from `cached`), creating the series not
    /// stored yet.
    pub async fn resolve_missing(
        &self,
        client: &Client,
        records: &[PricedRecord],
        ids: &mut [Option<i64>],
    ) -> Result<(), StoreError> {
        // Sorted and distinct: replicas creating the same new series take the
        // unique-index locks in the same order and cannot deadlock.
        let mut missing: BTreeMap<StoredKey, SeriesRef<'_>> = BTreeMap::new();
        let mut seen: BTreeSet<SeriesRef<'_>> = BTreeSet::new();
        for (priced, id) in records.iter().zip(ids.iter()) {
            let key = SeriesRef::of(&priced.record);
            if id.is_none() && seen.insert(key) {
                missing.insert(stored(&key), key);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let found = fetch_or_create(client, missing.keys()).await?;
        if let Ok(mut cache) = self.ids.lock() {
            for (stored, id) in &found {
                if let Some(key) = missing.get(stored) {
                    cache.insert(key, *id);
                }
            }
        }
        let by_key: HashMap<&StoredKey, i64> = found.iter().map(|(k, id)| (k, *id)).collect();
        for (priced, id) in records.iter().zip(ids.iter_mut()) {
            if id.is_none() {
                let stored = stored(&SeriesRef::of(&priced.record));
                *id = Some(by_key.get(&stored).copied().ok_or_else(|| {
                    StoreError::invalid(format!("series {stored:?} was neither found nor created"))
                })?);
            }
        }
        Ok(())
    }
}

async fn fetch_or_create(
    client: &Client,
    keys: impl Iterator<Item = &StoredKey>,
) -> Result<Vec<(StoredKey, i64)>, StoreError> {
    let mut cols: [Vec<&str>; 5] = Default::default();
    for (key_id, tags, model, provider, operation) in keys {
        for (col, value) in cols
            .iter_mut()
            .zip([key_id, tags, model, provider, operation])
        {
            col.push(value);
        }
    }
    let [key_id, tags, model, provider, operation] = &cols;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
        [key_id, tags, model, provider, operation];
    // Autocommit: once this returns, the rows (ours or a concurrent
    // replica's, which the unique index made us wait for) are visible.
    client
        .execute(&client.prepare_cached(INSERT_SERIES).await?, &params)
        .await?;
    let rows = client
        .query(&client.prepare_cached(SELECT_SERIES).await?, &params)
        .await?;
    rows.iter()
        .map(|row| {
            let key = (
                row.try_get(1)?,
                row.try_get(2)?,
                row.try_get(3)?,
                row.try_get(4)?,
                row.try_get(5)?,
            );
            Ok((key, row.try_get(0)?))
        })
        .collect()
}
