//! Interning of series (the grouping dimensions of a record) into small ids.
//!
//! Series rows are only ever added, never changed or deleted, so an id once
//! read stays valid for every replica and can be cached for the process life.
//! The cache is looked up with the record's own borrowed fields (a fast hash
//! of key, tags, model, provider and operation), so a record whose series is
//! known costs no tag serialization and no string copies.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use deadpool_postgres::Client;

use crate::domain::record::{map_to_json, PricedRecord};
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

/// A record's series, borrowed from the record.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct KeyRef<'a> {
    key_id: &'a str,
    tags: &'a BTreeMap<String, String>,
    model: &'a str,
    provider: &'a str,
    operation: &'a str,
}

impl<'a> KeyRef<'a> {
    fn of(priced: &'a PricedRecord) -> Self {
        let r = &priced.record;
        Self {
            key_id: &r.key_id,
            tags: &r.tags,
            model: r.model.as_deref().unwrap_or(""),
            provider: &r.provider,
            operation: &r.operation,
        }
    }

    fn hash64(&self) -> u64 {
        let mut hasher = FxHasher::default();
        self.hash(&mut hasher);
        hasher.finish()
    }

    fn matches(&self, owned: &OwnedKey) -> bool {
        self.key_id == owned.key_id
            && self.model == owned.model
            && self.provider == owned.provider
            && self.operation == owned.operation
            && *self.tags == owned.tags
    }

    fn to_owned_key(self) -> OwnedKey {
        OwnedKey {
            key_id: self.key_id.to_owned(),
            tags: self.tags.clone(),
            model: self.model.to_owned(),
            provider: self.provider.to_owned(),
            operation: self.operation.to_owned(),
        }
    }

    fn stored(&self) -> StoredKey {
        (
            self.key_id.to_owned(),
            map_to_json(self.tags),
            self.model.to_owned(),
            self.provider.to_owned(),
            self.operation.to_owned(),
        )
    }
}

struct OwnedKey {
    key_id: String,
    tags: BTreeMap<String, String>,
    model: String,
    provider: String,
    operation: String,
}

/// The rustc "Fx" hash: a multiply and rotate per word. Several times faster
/// than SipHash on the dozen short strings of a series, and collisions only
/// cost an extra comparison (the cache compares the full key).
#[derive(Default)]
struct FxHasher {
    hash: u64,
}

impl FxHasher {
    fn mix(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
        let mut tail = [0u8; 8];
        let rest = chunks.remainder();
        tail[..rest.len()].copy_from_slice(rest);
        self.mix(u64::from_le_bytes(tail));
    }

    fn write_u8(&mut self, n: u8) {
        self.mix(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

#[derive(Default)]
pub struct SeriesCache {
    /// Full keys bucketed by their hash.
    ids: Mutex<HashMap<u64, Vec<(OwnedKey, i64)>>>,
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
            .map(|priced| {
                let key = KeyRef::of(priced);
                ids.get(&key.hash64())?
                    .iter()
                    .find(|(owned, _)| key.matches(owned))
                    .map(|(_, id)| *id)
            })
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
        let mut missing: BTreeMap<StoredKey, KeyRef<'_>> = BTreeMap::new();
        let mut seen: BTreeSet<KeyRef<'_>> = BTreeSet::new();
        for (priced, id) in records.iter().zip(ids.iter()) {
            let key = KeyRef::of(priced);
            if id.is_none() && seen.insert(key) {
                missing.insert(key.stored(), key);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let found = fetch_or_create(client, missing.keys()).await?;
        if let Ok(mut cache) = self.ids.lock() {
            for (stored, id) in &found {
                if let Some(key) = missing.get(stored) {
                    let bucket = cache.entry(key.hash64()).or_default();
                    if !bucket.iter().any(|(owned, _)| key.matches(owned)) {
                        bucket.push((key.to_owned_key(), *id));
                    }
                }
            }
        }
        let by_key: HashMap<&StoredKey, i64> = found.iter().map(|(k, id)| (k, *id)).collect();
        for (priced, id) in records.iter().zip(ids.iter_mut()) {
            if id.is_none() {
                let stored = KeyRef::of(priced).stored();
                *id = Some(by_key.get(&stored).copied().ok_or_else(|| {
                    StoreError(format!("series {stored:?} was neither found nor created"))
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
