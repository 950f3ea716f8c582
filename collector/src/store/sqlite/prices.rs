//! Prices in time (SPEC §13) in SQLite: the price changes and discounts
//! (append only), and repricing a range of records with its rollups.

use std::collections::{BTreeMap, HashMap};

use rusqlite::{params, Connection, OptionalExtension};

use super::rollup::{DAILY, HOURLY};
use super::seal;
use crate::domain::pricing::book::{pricing_input, Discount, PriceChange, PriceChanges};
use crate::domain::pricing::ModelPrice;
use crate::domain::reconcile::import::{Import, ProviderLine};
use crate::domain::record::{Tokens, UsageRecord};
use crate::domain::time::{format_rfc3339_ms, DAY_MS, HOUR_MS};
use crate::store::{Pricer, PricesAdded, Repriced, StoreError};

fn change_key(c: &PriceChange) -> String {
    format!(
        "price of {}/{} from {}",
        c.provider,
        c.model,
        format_rfc3339_ms(c.effective_from_ms)
    )
}

fn discount_key(d: &Discount) -> String {
    format!(
        "discount of {}/{} from {}",
        d.provider,
        d.model.as_deref().unwrap_or("*"),
        format_rfc3339_ms(d.effective_from_ms)
    )
}

/// Stores the changes and discounts; see `Store::add_prices`.
pub(super) fn add(
    conn: &Connection,
    changes: &PriceChanges,
    now_ms: i64,
) -> Result<PricesAdded, StoreError> {
    let tx = conn.unchecked_transaction()?;
    let mut out = PricesAdded::default();
    for c in &changes.prices {
        let p = &c.price;
        let stored: Option<(f64, f64, f64, f64)> = tx
            .query_row(
                "SELECT input, output, cache_read, cache_write FROM price_changes \
                 WHERE provider = ?1 AND model = ?2 AND effective_from_ms = ?3",
                params![c.provider, c.model, c.effective_from_ms],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        match stored {
            Some(s) if s == (p.input, p.output, p.cache_read, p.cache_write) => out.unchanged += 1,
            Some(_) => out.conflicts.push(change_key(c)),
            None => {
                tx.execute(
                    "INSERT INTO price_changes (provider, model, effective_from_ms, input, \
                     output, cache_read, cache_write, created_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        c.provider,
                        c.model,
                        c.effective_from_ms,
                        p.input,
                        p.output,
                        p.cache_read,
                        p.cache_write,
                        now_ms
                    ],
                )?;
                out.added += 1;
            }
        }
    }
    for d in &changes.discounts {
        let model = d.model.clone().unwrap_or_default();
        let stored: Option<f64> = tx
            .query_row(
                "SELECT fraction FROM price_discounts \
                 WHERE provider = ?1 AND model = ?2 AND effective_from_ms = ?3",
                params![d.provider, model, d.effective_from_ms],
                |r| r.get(0),
            )
            .optional()?;
        match stored {
            Some(f) if f == d.fraction => out.unchanged += 1,
            Some(_) => out.conflicts.push(discount_key(d)),
            None => {
                tx.execute(
                    "INSERT INTO price_discounts (provider, model, effective_from_ms, fraction, \
                     created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![d.provider, model, d.effective_from_ms, d.fraction, now_ms],
                )?;
                out.added += 1;
            }
        }
    }
    if out.conflicts.is_empty() {
        tx.commit()?;
    } else {
        out.added = 0;
    }
    Ok(out)
}

pub(super) fn history(conn: &Connection) -> Result<PriceChanges, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT provider, model, effective_from_ms, input, output, cache_read, cache_write \
         FROM price_changes ORDER BY effective_from_ms, provider, model",
    )?;
    let prices = stmt
        .query_map([], |r| {
            Ok(PriceChange {
                provider: r.get(0)?,
                model: r.get(1)?,
                effective_from_ms: r.get(2)?,
                price: ModelPrice {
                    input: r.get(3)?,
                    output: r.get(4)?,
                    cache_read: r.get(5)?,
                    cache_write: r.get(6)?,
                    max_output_tokens: None,
                },
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut stmt = conn.prepare_cached(
        "SELECT provider, model, effective_from_ms, fraction FROM price_discounts \
         ORDER BY effective_from_ms, provider, model",
    )?;
    let discounts = stmt
        .query_map([], |r| {
            let model: String = r.get(1)?;
            Ok(Discount {
                provider: r.get(0)?,
                model: (!model.is_empty()).then_some(model),
                effective_from_ms: r.get(2)?,
                fraction: r.get(3)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PriceChanges { prices, discounts })
}

/// Reprices `[from_ms, to_ms)` (whole hours); see `Store::reprice`.
pub(super) fn reprice(
    conn: &Connection,
    from_ms: i64,
    to_ms: i64,
    price: &Pricer,
    version: &str,
) -> Result<Repriced, StoreError> {
    if from_ms.rem_euclid(HOUR_MS) != 0 || to_ms.rem_euclid(HOUR_MS) != 0 || to_ms <= from_ms {
        return Err(StoreError::invalid(
            "reprice range must be whole hours, from < to",
        ));
    }
    let tx = conn.unchecked_transaction()?;
    let horizon: Option<i64> = tx
        .query_row(
            "SELECT records_before_ms FROM retention_state WHERE id = 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(h) = horizon.filter(|h| from_ms < *h) {
        return Err(StoreError::beyond_retention(format!(
            "raw records before {} have been deleted by retention (AISPEND_RETENTION_DAYS): \
             they cannot be repriced",
            format_rfc3339_ms(h)
        )));
    }
    // Each record once (the spans of two hours may overlap), by rowid.
    let mut records: BTreeMap<i64, (UsageRecord, i64, Option<f64>)> = BTreeMap::new();
    {
        let mut stmt = tx.prepare(
            "SELECT r.rowid, r.ts_ms, r.series_id, s.provider, s.model, r.requested_model, \
             r.input_tokens, r.cached_input_tokens, r.cache_write_input_tokens, \
             r.output_tokens, r.reasoning_tokens, r.cost_usd \
             FROM record_spans AS sp \
             JOIN records AS r ON r.rowid BETWEEN sp.first_rowid AND sp.last_rowid \
             JOIN series AS s ON s.id = r.series_id \
             WHERE sp.hour_ms >= ?1 AND sp.hour_ms < ?2 AND r.ts_ms >= ?1 AND r.ts_ms < ?2",
        )?;
        let mut rows = stmt.query(params![from_ms, to_ms])?;
        while let Some(r) = rows.next()? {
            let model: String = r.get(4)?;
            let count = |i: usize| -> Result<u64, rusqlite::Error> {
                Ok(u64::try_from(r.get::<_, i64>(i)?).unwrap_or(0))
            };
            let record = pricing_input(
                r.get(1)?,
                r.get(3)?,
                (!model.is_empty()).then_some(model),
                r.get(5)?,
                Tokens {
                    input: count(6)?,
                    cached_input: count(7)?,
                    cache_write_input: count(8)?,
                    output: count(9)?,
                    reasoning: count(10)?,
                },
            );
            records.insert(r.get(0)?, (record, r.get(2)?, r.get(11)?));
        }
    }
    let mut out = Repriced::default();
    // (hour bucket) → (cost, unpriced) rebuilt from every record of the hour.
    let mut hours: HashMap<i64, (f64, i64)> = HashMap::new();
    {
        let mut update =
            tx.prepare("UPDATE records SET cost_usd = ?2, price_version = ?3 WHERE rowid = ?1")?;
        for (rowid, (record, series_id, old)) in &records {
            let new = price(record);
            out.records += 1;
            out.cost_before_usd += old.unwrap_or(0.0);
            out.cost_after_usd += new.unwrap_or(0.0);
            update.execute(params![rowid, new, version])?;
            let bucket = HOURLY
                .bucket(record.ts_ms, *series_id)
                .ok_or_else(|| StoreError::invalid("record ts out of range"))?;
            let slot = hours.entry(bucket).or_default();
            slot.0 += new.unwrap_or(0.0);
            slot.1 += i64::from(new.is_none());
        }
        let mut set = tx.prepare(
            "UPDATE usage_hourly SET cost_usd = ?2, unpriced_requests = ?3 WHERE bucket = ?1",
        )?;
        for (bucket, (cost, unpriced)) in &hours {
            set.execute(params![bucket, cost, unpriced])?;
        }
    }
    // Sealed days touched: their daily rows are the sum of their hourly rows.
    let sealed_before = seal::sealed_before(&tx)?.unwrap_or(i64::MIN);
    let first_day = from_ms.div_euclid(DAY_MS) * DAY_MS;
    let mut day = first_day;
    while day < to_ms && day < sealed_before {
        let mut sums: HashMap<i64, (f64, i64)> = HashMap::new();
        HOURLY.scan(&tx, day, day + DAY_MS, |series_id, _, s| {
            let slot = sums.entry(series_id).or_default();
            slot.0 += s.cost_usd;
            slot.1 += s.unpriced_requests;
        })?;
        let mut set = tx.prepare_cached(
            "UPDATE usage_daily SET cost_usd = ?2, unpriced_requests = ?3 WHERE bucket = ?1",
        )?;
        for (series_id, (cost, unpriced)) in sums {
            let bucket = DAILY
                .bucket(day, series_id)
                .ok_or_else(|| StoreError::invalid("day out of range"))?;
            set.execute(params![bucket, cost, unpriced])?;
        }
        day += DAY_MS;
    }
    tx.commit()?;
    Ok(out)
}

/// Replaces a source's lines in the import's range; (deleted, inserted).
pub(super) fn replace_provider_usage(
    conn: &Connection,
    import: &Import,
) -> Result<(u64, u64), StoreError> {
    let tx = conn.unchecked_transaction()?;
    let deleted = tx.execute(
        "DELETE FROM provider_usage WHERE source = ?1 AND start_ms >= ?2 AND start_ms < ?3",
        params![import.source, import.from_ms, import.to_ms],
    )?;
    {
        let mut insert = tx.prepare(
            "INSERT INTO provider_usage (provider, source, start_ms, end_ms, model, line_item, \
             credential, requests, input_tokens, cached_input_tokens, cache_write_input_tokens, \
             output_tokens, cost_usd) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?;
        for l in &import.lines {
            insert.execute(params![
                l.provider,
                l.source,
                l.start_ms,
                l.end_ms,
                l.model,
                l.line_item,
                l.credential,
                l.requests,
                l.input_tokens,
                l.cached_input_tokens,
                l.cache_write_input_tokens,
                l.output_tokens,
                l.cost_usd
            ])?;
        }
    }
    tx.commit()?;
    Ok((deleted as u64, import.lines.len() as u64))
}

pub(super) fn provider_usage(
    conn: &Connection,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<ProviderLine>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT provider, source, start_ms, end_ms, model, line_item, credential, requests, \
         input_tokens, cached_input_tokens, cache_write_input_tokens, output_tokens, cost_usd \
         FROM provider_usage WHERE start_ms >= ?1 AND start_ms < ?2 \
         ORDER BY start_ms, provider, source, model, line_item, credential",
    )?;
    let rows = stmt
        .query_map(params![from_ms, to_ms], |r| {
            Ok(ProviderLine {
                provider: r.get(0)?,
                source: r.get(1)?,
                start_ms: r.get(2)?,
                end_ms: r.get(3)?,
                model: r.get(4)?,
                line_item: r.get(5)?,
                credential: r.get(6)?,
                requests: r.get(7)?,
                input_tokens: r.get(8)?,
                cached_input_tokens: r.get(9)?,
                cache_write_input_tokens: r.get(10)?,
                output_tokens: r.get(11)?,
                cost_usd: r.get(12)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}
