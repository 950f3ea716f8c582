//! The SQLite ingest path: one transaction per batch, records inserted with
//! `ON CONFLICT (id) DO NOTHING`, and only the rows actually inserted fed to
//! the hourly and daily rollups, folded in Rust first so each rollup row is
//! written once per batch.
//!
//! What makes it fast (measured in `benches/collector.rs`):
//! - a record row carries only its `series_id`, not the grouping dimensions
//!   (key, tags, model, provider, operation) that the `series` row holds;
//! - a 32-hex-digit id (what the filter generates) is stored as a 16-byte
//!   blob, halving the random-access unique index on `id`;
//! - series are resolved once per distinct series in a batch, from borrowed
//!   fields, so a record costs no tag serialization or string copies.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, ToSql, Transaction};

use super::Writer;
use crate::domain::aggregate::Sums;
use crate::domain::record::{map_to_json, PricedRecord, UsageRecord};
use crate::domain::time::{floor_hour, DAY_MS};
use crate::store::{BatchOutcome, StoreError};

const INSERT_RECORD: &str = "INSERT INTO records (id, ts_ms, series_id, duration_ms, ttft_ms, \
     gateway, auth, labels, requested_model, stream, status, error, input_tokens, \
     cached_input_tokens, cache_write_input_tokens, output_tokens, reasoning_tokens, cost_usd, \
     price_version) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, \
     ?19) \
     ON CONFLICT (id) DO NOTHING";

const INSERT_SERIES: &str = "INSERT INTO series (key_id, tags, model, provider, operation) \
     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING";

const SELECT_SERIES_ID: &str = "SELECT id FROM series WHERE key_id = ?1 AND tags = ?2 \
     AND model = ?3 AND provider = ?4 AND operation = ?5";

/// Upsert into a rollup table; `{table}` and `{bucket}` name the table and
/// its time column (both fixed strings, never user input).
const UPSERT_ROLLUP: &str = "INSERT INTO {table} ({bucket}, series_id, requests, errors, \
     input_tokens, cached_input_tokens, cache_write_input_tokens, output_tokens, \
     reasoning_tokens, cost_usd, unpriced_requests) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
     ON CONFLICT ({bucket}, series_id) DO UPDATE SET \
     requests = requests + excluded.requests, errors = errors + excluded.errors, \
     input_tokens = input_tokens + excluded.input_tokens, \
     cached_input_tokens = cached_input_tokens + excluded.cached_input_tokens, \
     cache_write_input_tokens = cache_write_input_tokens + excluded.cache_write_input_tokens, \
     output_tokens = output_tokens + excluded.output_tokens, \
     reasoning_tokens = reasoning_tokens + excluded.reasoning_tokens, \
     cost_usd = cost_usd + excluded.cost_usd, \
     unpriced_requests = unpriced_requests + excluded.unpriced_requests";

/// The grouping dimensions of a record, interned as a `series` row
/// (`tags` as canonical JSON, `model` '' when the record had none).
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct SeriesKey {
    key_id: String,
    tags: String,
    model: String,
    provider: String,
    operation: String,
}

/// The same dimensions borrowed from a record: the per-batch lookup key, so
/// a series already seen in the batch costs one hash and no allocation.
#[derive(PartialEq, Eq, Hash)]
struct SeriesRef<'a> {
    key_id: &'a str,
    tags: &'a BTreeMap<String, String>,
    model: &'a str,
    provider: &'a str,
    operation: &'a str,
}

impl<'a> SeriesRef<'a> {
    fn of(r: &'a UsageRecord) -> Self {
        Self {
            key_id: &r.key_id,
            tags: &r.tags,
            model: r.model.as_deref().unwrap_or_default(),
            provider: &r.provider,
            operation: &r.operation,
        }
    }

    fn to_key(&self) -> SeriesKey {
        SeriesKey {
            key_id: self.key_id.to_owned(),
            tags: map_to_json(self.tags),
            model: self.model.to_owned(),
            provider: self.provider.to_owned(),
            operation: self.operation.to_owned(),
        }
    }
}

/// How a record id is stored. The filter's ids are 32 lowercase hex digits
/// (128 random bits); those are stored as their 16 bytes, which halves the
/// unique index every insert touches at a random place. Any other id is
/// stored as text. A blob never equals a text in SQLite and the hex form is
/// canonical (lowercase only), so two different ids never share a stored
/// value and idempotency on `id` is unchanged.
enum StoredId<'a> {
    Bytes([u8; 16]),
    Text(&'a str),
}

impl<'a> StoredId<'a> {
    fn of(id: &'a str) -> Self {
        match hex16(id) {
            Some(bytes) => StoredId::Bytes(bytes),
            None => StoredId::Text(id),
        }
    }
}

impl ToSql for StoredId<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            StoredId::Bytes(bytes) => ValueRef::Blob(bytes),
            StoredId::Text(text) => ValueRef::Text(text.as_bytes()),
        }))
    }
}

/// The 16 bytes of exactly 32 lowercase hex digits, else `None`.
fn hex16(text: &str) -> Option<[u8; 16]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    let digits = text.as_bytes();
    if digits.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        let [high, low] = pair else { return None };
        *byte = (nibble(*high)? << 4) | nibble(*low)?;
    }
    Some(bytes)
}

/// A map that lives for one batch (series memo, rollup deltas).
type BatchMap<K, V> = HashMap<K, V, BuildHasherDefault<BatchHasher>>;

/// Hasher of the per-batch maps: SipHash (the std default) costs more
/// than the rest of a record's Rust-side work when fed the ~12 short strings
/// of a series, one call each. This one mixes 8 bytes per step. It is not
/// collision-resistant against chosen input, but the memo lives for one batch
/// (at most 10,000 records from an authenticated gateway), so the worst case
/// is bounded and only costs time, never correctness.
#[derive(Default)]
struct BatchHasher(u64);

impl BatchHasher {
    const MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15; // odd, 2^64 / golden ratio

    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(26) ^ word).wrapping_mul(Self::MULTIPLIER);
    }
}

impl Hasher for BatchHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut buf = [0u8; 8];
            buf.copy_from_slice(word);
            self.mix(u64::from_le_bytes(buf));
        }
        let mut tail = [0u8; 8];
        let rest = words.remainder();
        tail[..rest.len()].copy_from_slice(rest);
        // The length keeps "ab" + "" and "a" + "b" apart.
        self.mix(u64::from_le_bytes(tail) ^ ((bytes.len() as u64) << 56));
    }

    fn finish(&self) -> u64 {
        // Spread the high bits down too: the table picks buckets with the
        // low bits and filters with the top 7.
        let h = self.0;
        (h ^ (h >> 29)).wrapping_mul(Self::MULTIPLIER) ^ (h >> 32)
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Stores a batch in one transaction; see the module comment.
pub(super) fn insert_batch(
    writer: &mut Writer,
    records: &[PricedRecord],
) -> Result<BatchOutcome, StoreError> {
    let Writer { conn, series } = writer;
    let tx = conn.transaction()?;
    let mut outcome = BatchOutcome::default();
    let mut batch_series: BatchMap<SeriesRef<'_>, i64> = BatchMap::default();
    let mut hourly: BatchMap<(i64, i64), Sums> = BatchMap::default();
    let mut daily: BatchMap<(i64, i64), Sums> = BatchMap::default();
    {
        let mut insert = tx.prepare_cached(INSERT_RECORD)?;
        for priced in records {
            let r = &priced.record;
            let series_ref = SeriesRef::of(r);
            let series_id = match batch_series.get(&series_ref) {
                Some(id) => *id,
                None => {
                    let id = series_id(&tx, series, &series_ref)?;
                    batch_series.insert(series_ref, id);
                    id
                }
            };
            let labels_json;
            let labels = if r.labels.is_empty() {
                "{}"
            } else {
                labels_json = map_to_json(&r.labels);
                labels_json.as_str()
            };
            let inserted = insert.execute(params![
                StoredId::of(&r.id),
                r.ts_ms,
                series_id,
                r.duration_ms.map(to_i64),
                r.ttft_ms.map(to_i64),
                r.gateway,
                r.auth,
                labels,
                r.requested_model,
                r.stream,
                r.status,
                r.error,
                to_i64(r.tokens.input),
                to_i64(r.tokens.cached_input),
                to_i64(r.tokens.cache_write_input),
                to_i64(r.tokens.output),
                to_i64(r.tokens.reasoning),
                priced.cost_usd,
                priced.price_version,
            ])?;
            if inserted == 0 {
                outcome.duplicates += 1;
                continue;
            }
            outcome.inserted += 1;
            outcome.unpriced_inserted += u64::from(priced.cost_usd.is_none());
            let sums = Sums::of_record(priced);
            let day_ms = r.ts_ms.div_euclid(DAY_MS) * DAY_MS;
            hourly
                .entry((floor_hour(r.ts_ms), series_id))
                .or_default()
                .add(&sums);
            daily.entry((day_ms, series_id)).or_default().add(&sums);
        }
        // One upsert per distinct (bucket, series) of the batch, not per record.
        upsert_rollup(&tx, "usage_hourly", "hour_ms", hourly)?;
        upsert_rollup(&tx, "usage_daily", "day_ms", daily)?;
    }
    tx.commit()?;
    Ok(outcome)
}

/// The id of a series: from the writer's cache, else from the database
/// (created if new).
fn series_id(
    tx: &Transaction<'_>,
    cache: &mut HashMap<SeriesKey, i64>,
    series: &SeriesRef<'_>,
) -> Result<i64, StoreError> {
    let key = series.to_key();
    if let Some(id) = cache.get(&key) {
        return Ok(*id);
    }
    let id = resolve_series(tx, &key)?;
    cache.insert(key, id);
    Ok(id)
}

fn upsert_rollup(
    conn: &Connection,
    table: &str,
    bucket: &str,
    sums: BatchMap<(i64, i64), Sums>,
) -> Result<(), StoreError> {
    let sql = UPSERT_ROLLUP
        .replace("{table}", table)
        .replace("{bucket}", bucket);
    let mut upsert = conn.prepare_cached(&sql)?;
    // In key order, so consecutive upserts land on the same b-tree pages.
    let mut sums: Vec<_> = sums.into_iter().collect();
    sums.sort_unstable_by_key(|(key, _)| *key);
    for ((bucket_ms, series_id), s) in sums {
        upsert.execute(params![
            bucket_ms,
            series_id,
            s.requests,
            s.errors,
            s.input_tokens,
            s.cached_input_tokens,
            s.cache_write_input_tokens,
            s.output_tokens,
            s.reasoning_tokens,
            s.cost_usd,
            s.unpriced_requests,
        ])?;
    }
    Ok(())
}

/// Id of a series, creating it if new (insert-or-get, safe with several writers).
fn resolve_series(conn: &Connection, key: &SeriesKey) -> Result<i64, StoreError> {
    let values = params![key.key_id, key.tags, key.model, key.provider, key.operation];
    conn.prepare_cached(INSERT_SERIES)?.execute(values)?;
    Ok(conn
        .prepare_cached(SELECT_SERIES_ID)?
        .query_row(values, |row| row.get(0))?)
}

#[cfg(test)]
#[path = "sqlite_ingest_tests.rs"]
mod tests;
