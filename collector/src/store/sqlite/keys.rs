//! The virtual key tables of the SQLite store (`store/keys.rs` says what
//! they hold): writes on the writer connection in one transaction, reads on
//! a reader.

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::domain::keys::{Key, Secret};
use crate::store::keys::{
    assemble, Expect, KeyRow, KeyWrite, SaveKeys, KEY_COLUMNS, SECRET_COLUMNS, SECRET_ORDER,
};
use crate::store::StoreError;

pub(super) fn save(conn: &Connection, writes: &[KeyWrite]) -> Result<SaveKeys, StoreError> {
    let tx = conn.unchecked_transaction()?;
    for write in writes {
        let row = KeyRow::of(&write.key);
        let changed = match write.expect {
            Expect::New => tx
                .prepare_cached(&format!(
                    "INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                     ON CONFLICT (key_id) DO NOTHING"
                ))?
                .execute(params![
                    row.key_id,
                    row.tags,
                    row.limits,
                    row.status,
                    row.created_at_ms,
                    row.updated_at_ms,
                    row.expires_at_ms,
                    row.revision
                ])?,
            Expect::Revision(read) => tx
                .prepare_cached(
                    "UPDATE api_keys SET tags = ?2, limits = ?3, status = ?4, \
                     updated_at_ms = ?5, expires_at_ms = ?6, revision = ?7 \
                     WHERE key_id = ?1 AND revision = ?8",
                )?
                .execute(params![
                    row.key_id,
                    row.tags,
                    row.limits,
                    row.status,
                    row.updated_at_ms,
                    row.expires_at_ms,
                    row.revision,
                    read
                ])?,
        };
        if changed != 1 {
            // Dropping `tx` rolls back whatever this batch wrote so far.
            return Ok(match write.expect {
                Expect::New => SaveKeys::Exists(row.key_id),
                Expect::Revision(_) => SaveKeys::Changed(row.key_id),
            });
        }
        tx.prepare_cached("DELETE FROM api_key_secrets WHERE key_id = ?1")?
            .execute(params![row.key_id])?;
        let mut insert = tx.prepare_cached(&format!(
            "INSERT INTO api_key_secrets ({SECRET_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"
        ))?;
        for s in &write.key.secrets {
            insert.execute(params![
                row.key_id,
                s.sha256,
                s.last4,
                s.created_at_ms,
                s.not_after_ms
            ])?;
        }
    }
    tx.execute(
        "INSERT INTO api_keys_state (id, revision) VALUES (1, 1) \
         ON CONFLICT (id) DO UPDATE SET revision = revision + 1",
        [],
    )?;
    tx.commit()?;
    Ok(SaveKeys::Saved)
}

pub(super) fn get(conn: &Connection, key_id: &str) -> Result<Option<Key>, StoreError> {
    let row = conn
        .prepare_cached(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_id = ?1"
        ))?
        .query_row(params![key_id], raw_key)
        .optional()?;
    let Some(row) = row else {
        return Ok(None);
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SECRET_COLUMNS} FROM api_key_secrets WHERE key_id = ?1 ORDER BY {SECRET_ORDER}"
    ))?;
    let secrets = stmt
        .query_map(params![key_id], raw_secret)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(assemble(vec![row], secrets)?.into_iter().next())
}

pub(super) fn list(conn: &Connection) -> Result<Vec<Key>, StoreError> {
    // One read transaction, so keys and secrets are of the same moment.
    let tx = conn.unchecked_transaction()?;
    let rows = tx
        .prepare_cached(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys ORDER BY key_id"
        ))?
        .query_map([], raw_key)?
        .collect::<Result<Vec<_>, _>>()?;
    let secrets = tx
        .prepare_cached(&format!(
            "SELECT {SECRET_COLUMNS} FROM api_key_secrets ORDER BY {SECRET_ORDER}"
        ))?
        .query_map([], raw_secret)?
        .collect::<Result<Vec<_>, _>>()?;
    tx.finish()?;
    assemble(rows, secrets)
}

pub(super) fn revision(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT revision FROM api_keys_state WHERE id = 1")?
        .query_row([], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

fn raw_key(row: &Row<'_>) -> Result<KeyRow, rusqlite::Error> {
    Ok(KeyRow {
        key_id: row.get(0)?,
        tags: row.get(1)?,
        limits: row.get(2)?,
        status: row.get(3)?,
        created_at_ms: row.get(4)?,
        updated_at_ms: row.get(5)?,
        expires_at_ms: row.get(6)?,
        revision: row.get(7)?,
    })
}

fn raw_secret(row: &Row<'_>) -> Result<(String, Secret), rusqlite::Error> {
    Ok((
        row.get(0)?,
        Secret {
            sha256: row.get(1)?,
            last4: row.get(2)?,
            created_at_ms: row.get(3)?,
            not_after_ms: row.get(4)?,
        },
    ))
}
