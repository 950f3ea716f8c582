//! Interning of series (the grouping dimensions of a record) into small ids.
//!
//! Series rows are only ever added, never changed or deleted, so an id once
//! read stays valid for every replica and can be cached for the process life.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use deadpool_postgres::Client;

use crate::domain::record::PricedRecord;
use crate::store::StoreError;

const INSERT_SERIES: &str = "INSERT INTO series (key_id, tags, model, provider, operation) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) \
     ON CONFLICT DO NOTHING";

const SELECT_SERIES: &str = "SELECT s.id, s.key_id, s.tags, s.model, s.provider, s.operation \
     FROM series s JOIN UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) \
     AS k (key_id, tags, model, provider, operation) \
     USING (key_id, tags, model, provider, operation)";

/// (key_id, canonical tags JSON, model or '', provider, operation).
pub type SeriesKey = (String, String, String, String, String);

#[derive(Default)]
pub struct SeriesCache {
    ids: Mutex<HashMap<SeriesKey, i64>>,
}

fn key_of(priced: &PricedRecord, tags: &str) -> SeriesKey {
    let r = &priced.record;
    (
        r.key_id.clone(),
        tags.to_owned(),
        r.model.clone().unwrap_or_default(),
        r.provider.clone(),
        r.operation.clone(),
    )
}

impl SeriesCache {
    fn cached(&self, key: &SeriesKey) -> Option<i64> {
        self.ids.lock().ok().and_then(|ids| ids.get(key).copied())
    }

    /// The series id of every record (`tags[i]` is record i's canonical tags),
    /// creating the series not seen before.
    pub async fn resolve(
        &self,
        client: &Client,
        records: &[PricedRecord],
        tags: &[String],
    ) -> Result<Vec<i64>, StoreError> {
        let keys: Vec<SeriesKey> = records
            .iter()
            .zip(tags)
            .map(|(r, t)| key_of(r, t))
            .collect();
        // Sorted and distinct: replicas creating the same new series take the
        // unique-index locks in the same order and cannot deadlock.
        let missing: BTreeSet<&SeriesKey> =
            keys.iter().filter(|k| self.cached(k).is_none()).collect();
        if !missing.is_empty() {
            let found = fetch_or_create(client, &missing).await?;
            if let Ok(mut ids) = self.ids.lock() {
                ids.extend(found);
            }
        }
        keys.iter()
            .map(|k| {
                self.cached(k).ok_or_else(|| {
                    StoreError(format!("series {k:?} was neither found nor created"))
                })
            })
            .collect()
    }
}

async fn fetch_or_create(
    client: &Client,
    keys: &BTreeSet<&SeriesKey>,
) -> Result<Vec<(SeriesKey, i64)>, StoreError> {
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
