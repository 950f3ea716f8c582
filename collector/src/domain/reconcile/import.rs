//! Providers' own usage and cost exports, read as downloaded (SPEC §13):
//! OpenAI organization usage (completions) and costs API pages, Anthropic
//! Admin API messages usage and cost reports, Google Cloud Billing export
//! rows as CSV. Each becomes provider lines, one per bucket × result.
//!
//! An export covers `[from_ms, to_ms)` (its first bucket's start to its last
//! bucket's end) for one `source`; storing it replaces that source's lines
//! in the range, so the same export twice changes nothing and an
//! overlapping one replaces the overlap.

use serde_json::{Map, Value};

use crate::domain::time::{parse_rfc3339_ms, DAY_MS};

/// One line of a provider export.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProviderLine {
    pub provider: String,
    /// `openai.usage`, `openai.costs`, `anthropic.usage`, `anthropic.cost`,
    /// `gemini.billing`.
    pub source: String,
    pub start_ms: i64,
    pub end_ms: i64,
    /// `''` when the export does not name one.
    pub model: String,
    /// `''` for tokens; else what the cost is for (`web_search`, …).
    pub line_item: String,
    /// The API key, project or workspace billed (`''`: not named).
    pub credential: String,
    pub requests: i64,
    /// Every input token, cache reads and writes included (as records count).
    pub input_tokens: i64,
    pub cached_input_tokens: i64,
    pub cache_write_input_tokens: i64,
    pub output_tokens: i64,
    /// Billed USD (cost exports); `None` in usage exports.
    pub cost_usd: Option<f64>,
}

/// One export, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Import {
    pub provider: String,
    pub source: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub lines: Vec<ProviderLine>,
    /// Rows left out (not an AI service in a billing export, zero rows).
    pub skipped: u64,
}

pub const PROVIDERS: [&str; 3] = ["openai", "anthropic", "gemini"];

/// Parses `body` as `provider`'s export.
pub fn parse(provider: &str, body: &[u8]) -> Result<Import, String> {
    match provider {
        "openai" => openai(&json_of(body)?),
        "anthropic" => anthropic(&json_of(body)?),
        "gemini" => gcp_billing_csv(body),
        other => Err(format!(
            "provider: {other:?} is not one of {}",
            PROVIDERS.join(", ")
        )),
    }
}

fn json_of(body: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(body).map_err(|e| format!("body: not valid JSON: {e}"))
}

fn text(o: &Map<String, Value>, name: &str) -> String {
    o.get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_default()
}

fn count(o: &Map<String, Value>, at: &str, name: &str) -> Result<i64, String> {
    match o.get(name) {
        None | Some(Value::Null) => Ok(0),
        Some(v) => v
            .as_i64()
            .filter(|n| *n >= 0)
            .ok_or_else(|| format!("{at}.{name}: expected a whole number >= 0")),
    }
}

fn finish(
    provider: &str,
    source: Option<&str>,
    lines: Vec<ProviderLine>,
    skipped: u64,
    range: Option<(i64, i64)>,
) -> Result<Import, String> {
    let Some(source) = source else {
        return Err(String::from(
            "body: no bucket with a result: nothing to import (an empty page)",
        ));
    };
    let (from_ms, to_ms) = range.ok_or_else(|| String::from("body: no time bucket"))?;
    Ok(Import {
        provider: provider.to_owned(),
        source: source.to_owned(),
        from_ms,
        to_ms,
        lines,
        skipped,
    })
}

fn widen(range: &mut Option<(i64, i64)>, start: i64, end: i64) {
    *range = Some(match *range {
        Some((a, b)) => (a.min(start), b.max(end)),
        None => (start, end),
    });
}

fn one_source<'a>(source: &mut Option<&'a str>, this: &'a str, at: &str) -> Result<(), String> {
    match source {
        Some(s) if *s != this => Err(format!(
            "{at}: a {this} result in a {s} export: import usage and cost pages separately"
        )),
        _ => {
            *source = Some(this);
            Ok(())
        }
    }
}

/// One `results[j]` of a provider's bucket (`at` is its error path) as an
/// object, and the line it starts: the provider, the bucket's range and the
/// credential billed (the API key id, else `account`: the project or
/// workspace).
fn result_line<'a>(
    r: &'a Value,
    at: &str,
    provider: &str,
    (start_ms, end_ms): (i64, i64),
    account: &str,
) -> Result<(&'a Map<String, Value>, ProviderLine), String> {
    let r = r
        .as_object()
        .ok_or_else(|| format!("{at}: expected an object"))?;
    let credential = [text(r, "api_key_id"), text(r, account)]
        .into_iter()
        .find(|s| !s.is_empty())
        .unwrap_or_default();
    let line = ProviderLine {
        provider: provider.into(),
        start_ms,
        end_ms,
        credential,
        ..ProviderLine::default()
    };
    Ok((r, line))
}

/// The suffixes OpenAI's cost `line_item` gives token costs
/// (`gpt-4o-mini-2024-07-18, input`).
const OPENAI_TOKEN_ITEMS: [&str; 5] = [
    ", input",
    ", output",
    ", cached input",
    ", batch input",
    ", batch output",
];

/// OpenAI `/v1/organization/usage/completions` or `/v1/organization/costs`
/// pages: `{"object":"page","data":[{"object":"bucket","start_time",
/// "end_time","results":[…]}],…}`.
fn openai(v: &Value) -> Result<Import, String> {
    let data = v
        .get("data")
        .and_then(Value::as_array)
        .filter(|_| v.get("object").and_then(Value::as_str) == Some("page"))
        .ok_or_else(|| {
            String::from(
                "body: expected an OpenAI usage or costs page {\"object\":\"page\",\"data\":[…]}",
            )
        })?;
    let (mut lines, mut source, mut range, mut skipped) = (Vec::new(), None, None, 0);
    for (i, bucket) in data.iter().enumerate() {
        let at = format!("data[{i}]");
        let b = bucket
            .as_object()
            .ok_or_else(|| format!("{at}: expected an object"))?;
        let secs = |name: &str| {
            b.get(name)
                .and_then(Value::as_i64)
                .map(|s| s * 1000)
                .ok_or_else(|| format!("{at}.{name}: expected unix seconds"))
        };
        let (start, end) = (secs("start_time")?, secs("end_time")?);
        if end <= start {
            return Err(format!("{at}.end_time: must be after start_time"));
        }
        widen(&mut range, start, end);
        // `results` (the API) or `result` (some SDK dumps).
        let results = b
            .get("results")
            .or_else(|| b.get("result"))
            .and_then(Value::as_array)
            .ok_or_else(|| format!("{at}.results: expected an array"))?;
        for (j, r) in results.iter().enumerate() {
            let at = format!("{at}.results[{j}]");
            let (r, mut line) = result_line(r, &at, "openai", (start, end), "project_id")?;
            match r.get("object").and_then(Value::as_str) {
                Some("organization.usage.completions.result") => {
                    one_source(&mut source, "openai.usage", &at)?;
                    line.source = "openai.usage".into();
                    line.model = text(r, "model");
                    line.requests = count(r, &at, "num_model_requests")?;
                    line.input_tokens = count(r, &at, "input_tokens")?;
                    line.cached_input_tokens = count(r, &at, "input_cached_tokens")?;
                    line.output_tokens = count(r, &at, "output_tokens")?;
                    if line.requests == 0 && line.input_tokens == 0 && line.output_tokens == 0 {
                        skipped += 1;
                        continue;
                    }
                }
                Some("organization.costs.result") => {
                    one_source(&mut source, "openai.costs", &at)?;
                    line.source = "openai.costs".into();
                    let amount = r
                        .get("amount")
                        .and_then(Value::as_object)
                        .ok_or_else(|| format!("{at}.amount: expected an object"))?;
                    let currency = text(amount, "currency");
                    if !currency.eq_ignore_ascii_case("usd") {
                        return Err(format!(
                            "{at}.amount.currency: {currency:?}: only usd is reconciled"
                        ));
                    }
                    let value = amount
                        .get("value")
                        .and_then(Value::as_f64)
                        .filter(|v| v.is_finite())
                        .ok_or_else(|| format!("{at}.amount.value: expected a number"))?;
                    line.cost_usd = Some(value);
                    let item = text(r, "line_item");
                    match OPENAI_TOKEN_ITEMS
                        .iter()
                        .find_map(|suffix| item.strip_suffix(suffix))
                    {
                        Some(model) => line.model = model.to_owned(),
                        None => line.line_item = item,
                    }
                }
                other => {
                    return Err(format!(
                        "{at}.object: {other:?}: expected organization.usage.completions.result \
                         or organization.costs.result"
                    ))
                }
            }
            lines.push(line);
        }
    }
    finish("openai", source, lines, skipped, range)
}

/// Anthropic `/v1/organizations/usage_report/messages` or
/// `/v1/organizations/cost_report`: `{"data":[{"starting_at","ending_at",
/// "results":[…]}],"has_more","next_page"}`.
fn anthropic(v: &Value) -> Result<Import, String> {
    let data = v
        .get("data")
        .and_then(Value::as_array)
        .filter(|_| v.get("has_more").is_some())
        .ok_or_else(|| {
            String::from(
                "body: expected an Anthropic usage or cost report {\"data\":[…],\"has_more\":…}",
            )
        })?;
    let (mut lines, mut source, mut range, mut skipped) = (Vec::new(), None, None, 0);
    for (i, bucket) in data.iter().enumerate() {
        let at = format!("data[{i}]");
        let b = bucket
            .as_object()
            .ok_or_else(|| format!("{at}: expected an object"))?;
        let time = |name: &str| {
            b.get(name)
                .and_then(Value::as_str)
                .and_then(parse_rfc3339_ms)
                .ok_or_else(|| format!("{at}.{name}: expected an RFC 3339 time"))
        };
        let (start, end) = (time("starting_at")?, time("ending_at")?);
        if end <= start {
            return Err(format!("{at}.ending_at: must be after starting_at"));
        }
        widen(&mut range, start, end);
        let results = b
            .get("results")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("{at}.results: expected an array"))?;
        for (j, r) in results.iter().enumerate() {
            let at = format!("{at}.results[{j}]");
            let (r, mut line) = result_line(r, &at, "anthropic", (start, end), "workspace_id")?;
            line.model = text(r, "model");
            if r.contains_key("uncached_input_tokens") {
                one_source(&mut source, "anthropic.usage", &at)?;
                line.source = "anthropic.usage".into();
                let uncached = count(r, &at, "uncached_input_tokens")?;
                let read = count(r, &at, "cache_read_input_tokens")?;
                // `cache_creation: {ephemeral_5m_input_tokens, …}`, or flat.
                let write = match r.get("cache_creation").and_then(Value::as_object) {
                    Some(c) => {
                        let at = format!("{at}.cache_creation");
                        count(c, &at, "ephemeral_5m_input_tokens")?
                            + count(c, &at, "ephemeral_1h_input_tokens")?
                    }
                    None => {
                        count(r, &at, "cache_creation_5m_input_tokens")?
                            + count(r, &at, "cache_creation_1h_input_tokens")?
                    }
                };
                line.input_tokens = uncached + read + write;
                line.cached_input_tokens = read;
                line.cache_write_input_tokens = write;
                line.output_tokens = count(r, &at, "output_tokens")?;
                if line.input_tokens == 0 && line.output_tokens == 0 {
                    skipped += 1;
                    continue;
                }
            } else if r.contains_key("amount") {
                one_source(&mut source, "anthropic.cost", &at)?;
                line.source = "anthropic.cost".into();
                let currency = text(r, "currency");
                if !currency.is_empty() && !currency.eq_ignore_ascii_case("usd") {
                    return Err(format!(
                        "{at}.currency: {currency:?}: only USD is reconciled"
                    ));
                }
                // In the lowest currency unit (cents), as a decimal string.
                let cents = match r.get("amount") {
                    Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
                    Some(v) => v.as_f64(),
                    None => None,
                }
                .filter(|c| c.is_finite())
                .ok_or_else(|| format!("{at}.amount: expected a decimal string (cents)"))?;
                line.cost_usd = Some(cents / 100.0);
                let cost_type = text(r, "cost_type");
                if !cost_type.is_empty() && cost_type != "tokens" {
                    line.line_item = cost_type;
                    line.model = String::new();
                }
            } else {
                return Err(format!(
                    "{at}: neither a usage result (uncached_input_tokens) nor a cost result (amount)"
                ));
            }
            lines.push(line);
        }
    }
    finish("anthropic", source, lines, skipped, range)
}

// ---- Google Cloud Billing export rows (CSV) ---------------------------------

/// Splits CSV text into records (RFC 4180: quotes, doubled quotes, CRLF).
fn csv_records(text: &str) -> Vec<Vec<String>> {
    let (mut out, mut row, mut cur, mut quoted) = (Vec::new(), Vec::new(), String::new(), false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => row.push(std::mem::take(&mut cur)),
            ('\r', false) => {}
            ('\n', false) => {
                row.push(std::mem::take(&mut cur));
                out.push(std::mem::take(&mut row));
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() || !row.is_empty() {
        row.push(cur);
        out.push(row);
    }
    out.retain(|r| !(r.len() == 1 && r[0].trim().is_empty()));
    out
}

/// `2026-11-03 00:00:00 UTC` (BigQuery's text), or RFC 3339.
fn gcp_time(text: &str) -> Option<i64> {
    let t = text.trim();
    parse_rfc3339_ms(t).or_else(|| {
        let t = t.strip_suffix(" UTC").unwrap_or(t);
        let (date, time) = t.split_once(' ')?;
        parse_rfc3339_ms(&format!("{date}T{time}Z"))
    })
}

/// The services whose rows are reconciled; other rows are skipped.
fn is_ai_service(description: &str) -> bool {
    let d = description.to_ascii_lowercase();
    ["gemini", "generative language", "vertex ai"]
        .iter()
        .any(|s| d.contains(s))
}

/// `Gemini 2.5 Flash Input Text Tokens` → (`gemini-2.5-flash`, input).
fn gcp_sku(description: &str) -> Option<(String, bool)> {
    let d = description.to_ascii_lowercase();
    for (word, is_output) in [(" input", false), (" output", true)] {
        if let Some(i) = d.find(word) {
            let model = d[..i].trim().replace(' ', "-");
            if model.starts_with("gemini") && d.contains("token") {
                return Some((model, is_output));
            }
        }
    }
    None
}

/// Google Cloud Billing export rows as CSV, with the standard usage cost
/// table's columns (`service.description`, `sku.description`,
/// `usage_start_time`, `usage_end_time`, `project.id`, `cost`, `currency`,
/// `usage.amount`, `usage.unit`; `_` may stand for `.`).
fn gcp_billing_csv(body: &[u8]) -> Result<Import, String> {
    let text = std::str::from_utf8(body).map_err(|_| String::from("body: not UTF-8 text"))?;
    let mut rows = csv_records(text.trim_start_matches('\u{feff}')).into_iter();
    let header: Vec<String> = rows
        .next()
        .ok_or_else(|| String::from("body: empty CSV"))?
        .into_iter()
        .map(|h| h.trim().replace('_', ".").to_ascii_lowercase())
        .collect();
    let col = |name: &str| header.iter().position(|h| *h == name.replace('_', "."));
    let need = |name: &str| {
        col(name).ok_or_else(|| {
            format!(
                "header: column {name} missing (a Cloud Billing export: service.description, \
                 sku.description, usage_start_time, usage_end_time, cost, currency)"
            )
        })
    };
    let (service, sku, start_c, end_c, cost_c, currency_c) = (
        need("service.description")?,
        need("sku.description")?,
        need("usage_start_time")?,
        need("usage_end_time")?,
        need("cost")?,
        need("currency")?,
    );
    let (project_c, amount_c) = (col("project.id"), col("usage.amount"));
    let (mut lines, mut range, mut skipped) = (Vec::new(), None, 0);
    for (i, row) in rows.enumerate() {
        let at = format!("row {}", i + 2);
        let cell = |c: usize| row.get(c).map(String::as_str).unwrap_or("").trim();
        let start = gcp_time(cell(start_c))
            .ok_or_else(|| format!("{at}: usage_start_time: expected a time"))?;
        let end = gcp_time(cell(end_c))
            .ok_or_else(|| format!("{at}: usage_end_time: expected a time"))?;
        // The export's range counts every row, AI or not.
        widen(
            &mut range,
            start.div_euclid(DAY_MS) * DAY_MS,
            end.max(start + 1),
        );
        if !is_ai_service(cell(service)) {
            skipped += 1;
            continue;
        }
        let currency = cell(currency_c);
        if !currency.eq_ignore_ascii_case("usd") {
            return Err(format!(
                "{at}: currency {currency:?}: only USD is reconciled"
            ));
        }
        let cost: f64 = cell(cost_c)
            .parse()
            .ok()
            .filter(|c: &f64| c.is_finite())
            .ok_or_else(|| format!("{at}: cost: expected a number"))?;
        let amount = amount_c
            .and_then(|c| cell(c).parse::<f64>().ok())
            .filter(|a| a.is_finite() && *a >= 0.0)
            .unwrap_or(0.0) as i64;
        let mut line = ProviderLine {
            provider: "gemini".into(),
            source: "gemini.billing".into(),
            start_ms: start,
            end_ms: end,
            credential: project_c.map(|c| cell(c).to_owned()).unwrap_or_default(),
            cost_usd: Some(cost),
            ..ProviderLine::default()
        };
        match gcp_sku(cell(sku)) {
            Some((model, true)) => {
                line.model = model;
                line.output_tokens = amount;
            }
            Some((model, false)) => {
                line.model = model;
                line.input_tokens = amount;
            }
            None => line.line_item = cell(sku).to_owned(),
        }
        lines.push(line);
    }
    let source = (!lines.is_empty() || range.is_some()).then_some("gemini.billing");
    finish("gemini", source, lines, skipped, range)
}

#[cfg(test)]
mod tests;
