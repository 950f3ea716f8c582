//! Prices in time (SPEC §13) in PostgreSQL (same rules as SQLite's
//! `prices.rs`). Repricing locks both rollups against writes (reads go on)
//! for its transaction, so an ingest committing meanwhile cannot slip a
//! record between the records read and the rollup rows rebuilt from them.

use std::collections::HashMap;

use deadpool_postgres::Client;

use crate::domain::pricing::book::{pricing_input, Discount, PriceChange, PriceChanges};
use crate::domain::pricing::ModelPrice;
use crate::domain::reconcile::import::{Import, ProviderLine};
use crate::domain::record::Tokens;
use crate::domain::time::{format_rfc3339_ms, DAY_MS, HOUR_MS};
use crate::store::{Pricer, PricesAdded, Repriced, StoreError};

pub async fn add(
    client: &mut Client,
    changes: &PriceChanges,
    now_ms: i64,
) -> Result<PricesAdded, StoreError> {
    let tx = client.transaction().await?;
    let mut out = PricesAdded::default();
    for c in &changes.prices {
        let p = &c.price;
        let stored = tx
            .query_opt(
                "SELECT input, output, cache_read, cache_write FROM price_changes \
                 WHERE provider = $1 AND model = $2 AND effective_from_ms = $3",
                &[&c.provider, &c.model, &c.effective_from_ms],
            )
            .await?
            .map(|r| {
                (
                    r.get::<_, f64>(0),
                    r.get::<_, f64>(1),
                    r.get::<_, f64>(2),
                    r.get::<_, f64>(3),
                )
            });
        match stored {
            Some(s) if s == (p.input, p.output, p.cache_read, p.cache_write) => out.unchanged += 1,
            Some(_) => out.conflicts.push(format!(
                "price of {}/{} from {}",
                c.provider,
                c.model,
                format_rfc3339_ms(c.effective_from_ms)
            )),
            None => {
                tx.execute(
                    "INSERT INTO price_changes (provider, model, effective_from_ms, input, \
                     output, cache_read, cache_write, created_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    &[
                        &c.provider,
                        &c.model,
                        &c.effective_from_ms,
                        &p.input,
                        &p.output,
                        &p.cache_read,
                        &p.cache_write,
                        &now_ms,
                    ],
                )
                .await?;
                out.added += 1;
            }
        }
    }
    for d in &changes.discounts {
        let model = d.model.clone().unwrap_or_default();
        let stored = tx
            .query_opt(
                "SELECT fraction FROM price_discounts \
                 WHERE provider = $1 AND model = $2 AND effective_from_ms = $3",
                &[&d.provider, &model, &d.effective_from_ms],
            )
            .await?
            .map(|r| r.get::<_, f64>(0));
        match stored {
            Some(f) if f == d.fraction => out.unchanged += 1,
            Some(_) => out.conflicts.push(format!(
                "discount of {}/{} from {}",
                d.provider,
                d.model.as_deref().unwrap_or("*"),
                format_rfc3339_ms(d.effective_from_ms)
            )),
            None => {
                tx.execute(
                    "INSERT INTO price_discounts (provider, model, effective_from_ms, fraction, \
                     created_ms) VALUES ($1, $2, $3, $4, $5)",
                    &[
                        &d.provider,
                        &model,
                        &d.effective_from_ms,
                        &d.fraction,
                        &now_ms,
                    ],
                )
                .await?;
                out.added += 1;
            }
        }
    }
    if out.conflicts.is_empty() {
        tx.commit().await?;
    } else {
        out.added = 0;
    }
    Ok(out)
}

pub async fn history(client: &Client) -> Result<PriceChanges, StoreError> {
    let prices = client
        .query(
            "SELECT provider, model, effective_from_ms, input, output, cache_read, cache_write \
             FROM price_changes ORDER BY effective_from_ms, provider, model",
            &[],
        )
        .await?
        .iter()
        .map(|r| PriceChange {
            provider: r.get(0),
            model: r.get(1),
            effective_from_ms: r.get(2),
            price: ModelPrice {
                input: r.get(3),
                output: r.get(4),
                cache_read: r.get(5),
                cache_write: r.get(6),
                max_output_tokens: None,
            },
        })
        .collect();
    let discounts = client
        .query(
            "SELECT provider, model, effective_from_ms, fraction FROM price_discounts \
             ORDER BY effective_from_ms, provider, model",
            &[],
        )
        .await?
        .iter()
        .map(|r| {
            let model: String = r.get(1);
            Discount {
                provider: r.get(0),
                model: (!model.is_empty()).then_some(model),
                effective_from_ms: r.get(2),
                fraction: r.get(3),
            }
        })
        .collect();
    Ok(PriceChanges { prices, discounts })
}

pub async fn reprice(
    client: &mut Client,
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
    let tx = client.transaction().await?;
    tx.batch_execute("LOCK TABLE usage_hourly, usage_daily IN EXCLUSIVE MODE")
        .await?;
    let horizon: Option<i64> = tx
        .query_opt(
            "SELECT records_before_ms FROM retention_state WHERE id = 1",
            &[],
        )
        .await?
        .map(|r| r.get(0));
    if let Some(h) = horizon.filter(|h| from_ms < *h) {
        return Err(StoreError::beyond_retention(format!(
            "raw records before {} have been deleted by retention (AISPEND_RETENTION_DAYS): \
             they cannot be repriced",
            format_rfc3339_ms(h)
        )));
    }
    let rows = tx
        .query(
            "SELECT r.id::text, r.id_text, r.ts_ms, r.series_id, s.provider, s.model, \
             r.requested_model, r.input_tokens, r.cached_input_tokens, \
             r.cache_write_input_tokens, r.output_tokens, r.reasoning_tokens, r.cost_usd \
             FROM records AS r JOIN series AS s ON s.id = r.series_id \
             WHERE r.ts_ms >= $1 AND r.ts_ms < $2 FOR UPDATE OF r",
            &[&from_ms, &to_ms],
        )
        .await?;
    let mut out = Repriced::default();
    let (mut uuids, mut uuid_costs) = (Vec::new(), Vec::new());
    let (mut texts, mut text_costs) = (Vec::new(), Vec::new());
    let mut hours: HashMap<(i64, i64), (f64, i64)> = HashMap::new();
    for r in &rows {
        let model: String = r.get(5);
        let count = |i: usize| u64::try_from(r.get::<_, i64>(i)).unwrap_or(0);
        let ts_ms: i64 = r.get(2);
        let record = pricing_input(
            ts_ms,
            r.get(4),
            (!model.is_empty()).then_some(model),
            r.get(6),
            Tokens {
                input: count(7),
                cached_input: count(8),
                cache_write_input: count(9),
                output: count(10),
                reasoning: count(11),
            },
        );
        let old: Option<f64> = r.get(12);
        let new = price(&record);
        out.records += 1;
        out.cost_before_usd += old.unwrap_or(0.0);
        out.cost_after_usd += new.unwrap_or(0.0);
        match (r.get::<_, Option<String>>(0), r.get::<_, Option<String>>(1)) {
            (Some(id), _) => {
                uuids.push(id);
                uuid_costs.push(new);
            }
            (None, Some(id)) => {
                texts.push(id);
                text_costs.push(new);
            }
            (None, None) => return Err(StoreError::internal("record without an id")),
        }
        let hour = ts_ms.div_euclid(HOUR_MS) * HOUR_MS;
        let slot = hours.entry((hour, r.get(3))).or_default();
        slot.0 += new.unwrap_or(0.0);
        slot.1 += i64::from(new.is_none());
    }
    tx.execute(
        "UPDATE records SET cost_usd = u.c, price_version = $3 \
         FROM unnest($1::text[], $2::float8[]) AS u(i, c) WHERE records.id = u.i::uuid",
        &[&uuids, &uuid_costs, &version],
    )
    .await?;
    tx.execute(
        "UPDATE records SET cost_usd = u.c, price_version = $3 \
         FROM unnest($1::text[], $2::float8[]) AS u(i, c) WHERE records.id_text = u.i",
        &[&texts, &text_costs, &version],
    )
    .await?;
    let (mut hour_ms, mut series, mut costs, mut unpriced) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((h, s), (c, u)) in hours {
        hour_ms.push(h);
        series.push(s);
        costs.push(c);
        unpriced.push(u);
    }
    tx.execute(
        "UPDATE usage_hourly AS h SET cost_usd = u.c, unpriced_requests = u.n \
         FROM unnest($1::bigint[], $2::bigint[], $3::float8[], $4::bigint[]) AS u(h, s, c, n) \
         WHERE h.hour_ms = u.h AND h.series_id = u.s",
        &[&hour_ms, &series, &costs, &unpriced],
    )
    .await?;
    // Each day touched: its daily rows are the sum of its hourly rows.
    let first_day = from_ms.div_euclid(DAY_MS) * DAY_MS;
    let end_day = (to_ms + DAY_MS - 1).div_euclid(DAY_MS) * DAY_MS;
    tx.execute(
        "UPDATE usage_daily AS d SET cost_usd = h.c, unpriced_requests = h.n \
         FROM (SELECT hour_ms - ((hour_ms % 86400000) + 86400000) % 86400000 AS day_ms, \
                      series_id, sum(cost_usd) AS c, sum(unpriced_requests)::bigint AS n \
               FROM usage_hourly WHERE hour_ms >= $1 AND hour_ms < $2 GROUP BY 1, 2) AS h \
         WHERE d.day_ms = h.day_ms AND d.series_id = h.series_id",
        &[&first_day, &end_day],
    )
    .await?;
    tx.commit().await?;
    Ok(out)
}

/// Replaces a source's lines in the import's range; (deleted, inserted).
pub async fn replace_provider_usage(
    client: &mut Client,
    import: &Import,
) -> Result<(u64, u64), StoreError> {
    let tx = client.transaction().await?;
    let deleted = tx
        .execute(
            "DELETE FROM provider_usage WHERE source = $1 AND start_ms >= $2 AND start_ms < $3",
            &[&import.source, &import.from_ms, &import.to_ms],
        )
        .await?;
    let insert = tx
        .prepare(
            "INSERT INTO provider_usage (provider, source, start_ms, end_ms, model, line_item, \
             credential, requests, input_tokens, cached_input_tokens, cache_write_input_tokens, \
             output_tokens, cost_usd) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .await?;
    for l in &import.lines {
        tx.execute(
            &insert,
            &[
                &l.provider,
                &l.source,
                &l.start_ms,
                &l.end_ms,
                &l.model,
                &l.line_item,
                &l.credential,
                &l.requests,
                &l.input_tokens,
                &l.cached_input_tokens,
                &l.cache_write_input_tokens,
                &l.output_tokens,
                &l.cost_usd,
            ],
        )
        .await?;
    }
    tx.commit().await?;
    Ok((deleted, import.lines.len() as u64))
}

pub async fn provider_usage(
    client: &Client,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<ProviderLine>, StoreError> {
    let rows = client
        .query(
            "SELECT provider, source, start_ms, end_ms, model, line_item, credential, requests, \
             input_tokens, cached_input_tokens, cache_write_input_tokens, output_tokens, cost_usd \
             FROM provider_usage WHERE start_ms >= $1 AND start_ms < $2 \
             ORDER BY start_ms, provider, source, model, line_item, credential",
            &[&from_ms, &to_ms],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ProviderLine {
            provider: r.get(0),
            source: r.get(1),
            start_ms: r.get(2),
            end_ms: r.get(3),
            model: r.get(4),
            line_item: r.get(5),
            credential: r.get(6),
            requests: r.get(7),
            input_tokens: r.get(8),
            cached_input_tokens: r.get(9),
            cache_write_input_tokens: r.get(10),
            output_tokens: r.get(11),
            cost_usd: r.get(12),
        })
        .collect())
}
