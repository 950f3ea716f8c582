//! Writing raw record rows: ids stored compactly, many rows per INSERT.
//!
//! One multi-row `INSERT … ON CONFLICT (id) DO NOTHING` per chunk (see
//! `chunks.rs`). Which rows were inserted is still known exactly: the
//! rows a statement inserts get consecutive rowids ending at
//! `last_insert_rowid()` (a new rowid is the largest + 1; after retention
//! deleted the table's last rows their rowids are reused, still in order),
//! so when `changes()` is the chunk size every row went in;
//! otherwise (a retried record) the chunk's new rows are read back by rowid
//! and matched to the chunk in order.

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, Statement, ToSql};

use super::chunks::{self, Statements};

use crate::domain::record::{map_to_json, PricedRecord};
use crate::store::{hex16, StoreError};

const COLUMNS: &str = "id, ts_ms, series_id, duration_ms, ttft_ms, gateway, auth, labels, \
     requested_model, stream, status, error, input_tokens, cached_input_tokens, \
     cache_write_input_tokens, output_tokens, reasoning_tokens, cost_usd, price_version";
const COLUMN_COUNT: usize = 19;

const SELECT_NEW_IDS: &str = "SELECT rowid, id FROM records WHERE rowid > ?1 ORDER BY rowid";

/// A record ready to be written: its series resolved.
pub(super) struct RecordRow<'a> {
    pub priced: &'a PricedRecord,
    pub series_id: i64,
}

/// How a record id is stored. The filter's ids are 32 lowercase hex digits
/// (128 bits); those are stored as their 16 bytes, which halves the unique
/// index every insert touches. Any other id is stored as text. A blob never
/// equals a text in SQLite and the hex form is canonical (lowercase only), so
/// two different ids never share a stored value and idempotency on `id` is
/// unchanged.
#[derive(PartialEq, Eq)]
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

    /// Whether a value read back from `records.id` is this id.
    fn is(&self, stored: ValueRef<'_>) -> bool {
        match (self, stored) {
            (StoredId::Bytes(bytes), ValueRef::Blob(blob)) => bytes.as_slice() == blob,
            (StoredId::Text(text), ValueRef::Text(stored)) => text.as_bytes() == stored,
            _ => false,
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

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn insert_sql(rows: usize) -> String {
    format!(
        "INSERT INTO records ({COLUMNS}) VALUES {} ON CONFLICT (id) DO NOTHING",
        chunks::values(rows, COLUMN_COUNT)
    )
}

/// Inserts `rows`, skipping ids already stored (or repeated in `rows`), and
/// calls `inserted(index, rowid)` for each row actually inserted, in order.
pub(super) fn insert(
    conn: &Connection,
    rows: &[RecordRow<'_>],
    mut inserted: impl FnMut(usize, i64),
) -> Result<(), StoreError> {
    let mut statements = Statements::new(conn);
    for (which, range) in chunks::cut(rows.len()) {
        let (done, size) = (range.start, range.len());
        let chunk = &rows[range];
        let changes = insert_chunk(statements.get(which, insert_sql)?, chunk)?;
        let last = conn.last_insert_rowid();
        if changes == size {
            let first = last - (size as i64) + 1;
            for (i, rowid) in (first..=last).enumerate() {
                inserted(done + i, rowid);
            }
        } else if changes > 0 {
            match_new_rows(conn, chunk, last - changes as i64, changes, |i, rowid| {
                inserted(done + i, rowid)
            })?;
        }
    }
    Ok(())
}

/// One multi-row INSERT of `chunk.len()` rows; returns how many it inserted.
fn insert_chunk(stmt: &mut Statement<'_>, chunk: &[RecordRow<'_>]) -> Result<usize, StoreError> {
    // Labels are rare; the common empty map binds a constant.
    let labels: Vec<Option<String>> = chunk
        .iter()
        .map(|row| {
            let labels = &row.priced.record.labels;
            (!labels.is_empty()).then(|| map_to_json(labels))
        })
        .collect();
    for (i, (row, labels)) in chunk.iter().zip(&labels).enumerate() {
        let (priced, base) = (row.priced, i * COLUMN_COUNT);
        let r = &priced.record;
        let mut bind =
            |column: usize, value: &dyn ToSql| stmt.raw_bind_parameter(base + column, value);
        bind(1, &StoredId::of(&r.id))?;
        bind(2, &r.ts_ms)?;
        bind(3, &row.series_id)?;
        bind(4, &r.duration_ms.map(to_i64))?;
        bind(5, &r.ttft_ms.map(to_i64))?;
        bind(6, &r.gateway)?;
        bind(7, &r.auth)?;
        bind(8, &labels.as_deref().unwrap_or("{}"))?;
        bind(9, &r.requested_model)?;
        bind(10, &r.stream)?;
        bind(11, &r.status)?;
        bind(12, &r.error)?;
        bind(13, &to_i64(r.tokens.input))?;
        bind(14, &to_i64(r.tokens.cached_input))?;
        bind(15, &to_i64(r.tokens.cache_write_input))?;
        bind(16, &to_i64(r.tokens.output))?;
        bind(17, &to_i64(r.tokens.reasoning))?;
        bind(18, &priced.cost_usd)?;
        bind(19, &priced.price_version)?;
    }
    Ok(stmt.raw_execute()?)
}

/// The rare chunk that held duplicates: its `count` new rows (rowids after
/// `before`) are matched to the chunk in order. Greedy matching is exact: a
/// row skipped as a duplicate never has the id of a later inserted row.
fn match_new_rows(
    conn: &Connection,
    chunk: &[RecordRow<'_>],
    before: i64,
    count: usize,
    mut inserted: impl FnMut(usize, i64),
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(SELECT_NEW_IDS)?;
    let mut rows = stmt.query(params![before])?;
    let mut next = 0;
    let mut matched = 0;
    while let Some(row) = rows.next()? {
        let rowid: i64 = row.get(0)?;
        let id = row.get_ref(1)?;
        let Some(offset) = chunk[next..]
            .iter()
            .position(|r| StoredId::of(&r.priced.record.id).is(id))
        else {
            break;
        };
        inserted(next + offset, rowid);
        next += offset + 1;
        matched += 1;
    }
    if matched == count {
        Ok(())
    } else {
        Err(StoreError::internal(format!(
            "records: {count} rows inserted but {matched} matched back to the batch"
        )))
    }
}
