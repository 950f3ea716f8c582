//! The virtual key tables of the PostgreSQL store (same rules as SQLite's,
//! `store/keys.rs`). A write is one transaction; the `api_keys_state` row it
//! bumps also serializes concurrent key writes from several replicas.

use deadpool_postgres::Client;
use tokio_postgres::Row;

use crate::domain::keys::{Key, Secret};
use crate::store::keys::{
    assemble, Expect, KeyRow, KeyWrite, SaveKeys, KEY_COLUMNS, SECRET_COLUMNS, SECRET_ORDER,
};
use crate::store::StoreError;

pub async fn save(client: &mut Client, writes: &[KeyWrite]) -> Result<SaveKeys, StoreError> {
    let tx = client.transaction().await?;
    let insert_key = tx
        .prepare_cached(&format!(
            "INSERT INTO api_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (key_id) DO NOTHING"
        ))
        .await?;
    let update_key = tx
        .prepare_cached(
            "UPDATE api_keys SET tags = $2, limits = $3, status = $4, updated_at_ms = $5, \
             expires_at_ms = $6, revision = $7 WHERE key_id = $1 AND revision = $8",
        )
        .await?;
    let delete_secrets = tx
        .prepare_cached("DELETE FROM api_key_secrets WHERE key_id = $1")
        .await?;
    let insert_secret = tx
        .prepare_cached(&format!(
            "INSERT INTO api_key_secrets ({SECRET_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"
        ))
        .await?;
    for write in writes {
        let row = KeyRow::of(&write.key);
        let changed = match write.expect {
            Expect::New => {
                tx.execute(
                    &insert_key,
                    &[
                        &row.key_id,
                        &row.tags,
                        &row.limits,
                        &row.status,
                        &row.created_at_ms,
                        &row.updated_at_ms,
                        &row.expires_at_ms,
                        &row.revision,
                    ],
                )
                .await?
            }
            Expect::Revision(read) => {
                tx.execute(
                    &update_key,
                    &[
                        &row.key_id,
                        &row.tags,
                        &row.limits,
                        &row.status,
                        &row.updated_at_ms,
                        &row.expires_at_ms,
                        &row.revision,
                        &read,
                    ],
                )
                .await?
            }
        };
        if changed != 1 {
            // Dropping `tx` rolls back whatever this batch wrote so far.
            return Ok(match write.expect {
                Expect::New => SaveKeys::Exists(row.key_id),
                Expect::Revision(_) => SaveKeys::Changed(row.key_id),
            });
        }
        tx.execute(&delete_secrets, &[&row.key_id]).await?;
        for s in &write.key.secrets {
            tx.execute(
                &insert_secret,
                &[
                    &row.key_id,
                    &s.sha256,
                    &s.last4,
                    &s.created_at_ms,
                    &s.not_after_ms,
                ],
            )
            .await?;
        }
    }
    tx.execute(
        "UPDATE api_keys_state SET revision = revision + 1 WHERE id = 1",
        &[],
    )
    .await?;
    tx.commit().await?;
    Ok(SaveKeys::Saved)
}

pub async fn get(client: &tokio_postgres::Client, key_id: &str) -> Result<Option<Key>, StoreError> {
    let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_id = $1");
    let Some(row) = client.query_opt(&sql, &[&key_id]).await? else {
        return Ok(None);
    };
    let sql = format!(
        "SELECT {SECRET_COLUMNS} FROM api_key_secrets WHERE key_id = $1 ORDER BY {SECRET_ORDER}"
    );
    let secrets = client
        .query(&sql, &[&key_id])
        .await?
        .iter()
        .map(raw_secret)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(assemble(vec![raw_key(&row)?], secrets)?.into_iter().next())
}

pub async fn list(client: &mut Client) -> Result<Vec<Key>, StoreError> {
    // One snapshot of both tables.
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let rows = tx
        .query(
            &format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY key_id"),
            &[],
        )
        .await?
        .iter()
        .map(raw_key)
        .collect::<Result<Vec<_>, _>>()?;
    let secrets = tx
        .query(
            &format!("SELECT {SECRET_COLUMNS} FROM api_key_secrets ORDER BY {SECRET_ORDER}"),
            &[],
        )
        .await?
        .iter()
        .map(raw_secret)
        .collect::<Result<Vec<_>, _>>()?;
    tx.commit().await?;
    assemble(rows, secrets)
}

pub async fn revision(client: &tokio_postgres::Client) -> Result<i64, StoreError> {
    Ok(client
        .query_opt("SELECT revision FROM api_keys_state WHERE id = 1", &[])
        .await?
        .map(|row| row.try_get(0))
        .transpose()?
        .unwrap_or(0))
}

fn raw_key(row: &Row) -> Result<KeyRow, StoreError> {
    Ok(KeyRow {
        key_id: row.try_get(0)?,
        tags: row.try_get(1)?,
        limits: row.try_get(2)?,
        status: row.try_get(3)?,
        created_at_ms: row.try_get(4)?,
        updated_at_ms: row.try_get(5)?,
        expires_at_ms: row.try_get(6)?,
        revision: row.try_get(7)?,
    })
}

fn raw_secret(row: &Row) -> Result<(String, Secret), StoreError> {
    Ok((
        row.try_get(0)?,
        Secret {
            sha256: row.try_get(1)?,
            last4: row.try_get(2)?,
            created_at_ms: row.try_get(3)?,
            not_after_ms: row.try_get(4)?,
        },
    ))
}
