//! Validation of one incoming record, from its JSON text (ingest, decoded
//! by `decode` without a `serde_json::Value` tree) or from a `Value`.
//!
//! Records are validated one by one from untyped JSON so that one bad record
//! is rejected alone with a precise reason while the rest of the batch is kept.
//! Unknown extra fields are ignored: newer filters may ship more.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use decode::{Decoded, Field};

use super::record::{Tokens, UsageRecord};
use super::time::parse_rfc3339_ms;

/// Largest token count accepted in one record. Far above any real call, and
/// low enough that sums over billions of records cannot overflow an `i64`.
pub const MAX_TOKENS: u64 = 1_000_000_000_000;
const MAX_ID_LEN: usize = 128;
const MAX_TAG_KEY_LEN: usize = 64;
const MAX_TAG_VALUE_LEN: usize = 128;
const MAX_NAME_LEN: usize = 64;
const MAX_MODEL_LEN: usize = 256;
const MAX_ERROR_LEN: usize = 64;

/// The label a record's `credential_id` is kept under.
pub const CREDENTIAL_LABEL: &str = "credential_id";

/// Validates one record; the error is a human-readable reason naming the field.
pub fn validate_record(value: &Value) -> Result<UsageRecord, String> {
    // A `&Value` yields every number, string and object as it holds them, so
    // this decoding cannot fail; the arm is there to avoid a panic path.
    let decoded =
        Decoded::deserialize(value).map_err(|e| format!("record is not valid JSON: {e}"))?;
    validate_decoded(decoded)
}

/// Validates one record from its JSON text (one element of an ingest
/// batch), decoded without a `Value` tree: the same answers as
/// `validate_record` on the text's `Value`, errors included.
pub fn validate_record_json(text: &str) -> Result<UsageRecord, String> {
    let decoded = serde_json::from_str::<Decoded<'_>>(text)
        .map_err(|e| format!("record is not valid JSON: {e}"))?;
    validate_decoded(decoded)
}

fn validate_decoded(decoded: Decoded<'_>) -> Result<UsageRecord, String> {
    let obj = decoded
        .0
        .ok_or_else(|| String::from("record must be a JSON object"))?;

    let tokens = Tokens {
        input: token_field(&obj.input_tokens, "input_tokens")?,
        cached_input: token_field(&obj.cached_input_tokens, "cached_input_tokens")?,
        cache_write_input: token_field(&obj.cache_write_input_tokens, "cache_write_input_tokens")?,
        output: token_field(&obj.output_tokens, "output_tokens")?,
        reasoning: token_field(&obj.reasoning_tokens, "reasoning_tokens")?,
    };
    // CONTRACTS §3: cache reads and writes are shares of input, reasoning a share of
    // output. A record breaking that would be priced wrongly, so say so.
    if tokens.cached_input.saturating_add(tokens.cache_write_input) > tokens.input {
        return Err(String::from(
            "cached_input_tokens + cache_write_input_tokens exceed input_tokens",
        ));
    }
    if tokens.reasoning > tokens.output {
        return Err(String::from("reasoning_tokens exceed output_tokens"));
    }

    let ts_text = required_str(&obj.ts, "ts")?;
    let ts_ms = parse_rfc3339_ms(ts_text)
        .ok_or_else(|| format!("field `ts`: expected an RFC 3339 timestamp, got {ts_text:?}"))?;

    let status = match &obj.status {
        None | Some(Field::Null) => return Err(missing("status")),
        Some(v) => v
            .as_u64()
            .filter(|s| (100..=599).contains(s))
            .and_then(|s| u16::try_from(s).ok())
            .ok_or_else(|| String::from("field `status`: expected an integer 100..=599"))?,
    };

    // A strict budget's call (SPEC §6): what the gateway reserved and what
    // it settled to. Checked, not stored: spend is the collector's price of
    // the tokens, and the leases hold the gateway's own accounting.
    optional_usd(&obj.reserved_usd, "reserved_usd")?;
    optional_usd(&obj.settled_usd, "settled_usd")?;

    // The provider credential the gateway sent the call with (SPEC §13):
    // kept as the label `credential_id`, the filter's value over a client's.
    let mut labels = tag_fields(obj.labels, "labels")?;
    if let Some(id) = optional_str(&obj.credential_id, "credential_id")? {
        if !is_tag_value(id) {
            return Err(format!(
                "field `credential_id`: expected 1..={MAX_TAG_VALUE_LEN} characters of [A-Za-z0-9._:/-]"
            ));
        }
        labels.insert(CREDENTIAL_LABEL.to_owned(), id.to_owned());
    }

    Ok(UsageRecord {
        id: id_field(obj.id)?,
        ts_ms,
        duration_ms: optional_u64(&obj.duration_ms, "duration_ms")?,
        ttft_ms: optional_u64(&obj.ttft_ms, "ttft_ms")?,
        gateway: name_field(obj.gateway, "gateway")?,
        key_id: tag_value_field(obj.key_id, "key_id")?,
        auth: optional_name(obj.auth, "auth")?,
        tags: tag_fields(obj.tags, "tags")?,
        labels,
        provider: name_field(obj.provider, "provider")?,
        operation: name_field(obj.operation, "operation")?,
        model: optional_model(obj.model, "model")?,
        requested_model: optional_model(obj.requested_model, "requested_model")?,
        stream: optional_bool(&obj.stream, "stream")?,
        status,
        error: optional_error(obj.error)?,
        tokens,
    })
}

/// Tag keys: `[a-z0-9_]{1,64}` (CONTRACTS §2).
pub fn is_tag_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_TAG_KEY_LEN
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Tag values: `[A-Za-z0-9._:/-]{1,128}` (CONTRACTS §2).
pub fn is_tag_value(value: &str) -> bool {
    !value.is_empty() && value.len() <= MAX_TAG_VALUE_LEN && value.bytes().all(is_tag_value_byte)
}

fn is_tag_value_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'-')
}

fn missing(field: &str) -> String {
    format!("field `{field}` is required")
}

/// A field's string, still borrowed from the body when it can be, so a
/// field that fails its check costs no copy and one that passes one at most.
fn required_string<'a>(value: Option<Field<'a>>, field: &str) -> Result<Cow<'a, str>, String> {
    match value {
        None | Some(Field::Null) => Err(missing(field)),
        Some(Field::Str(s)) => Ok(s),
        Some(_) => Err(format!("field `{field}`: expected a string")),
    }
}

fn optional_string<'a>(
    value: Option<Field<'a>>,
    field: &str,
) -> Result<Option<Cow<'a, str>>, String> {
    match value {
        None | Some(Field::Null) => Ok(None),
        Some(Field::Str(s)) => Ok(Some(s)),
        Some(_) => Err(format!("field `{field}`: expected a string or null")),
    }
}

fn required_str<'v>(value: &'v Option<Field<'_>>, field: &str) -> Result<&'v str, String> {
    match value {
        None | Some(Field::Null) => Err(missing(field)),
        Some(Field::Str(s)) => Ok(s),
        Some(_) => Err(format!("field `{field}`: expected a string")),
    }
}

fn optional_str<'v>(value: &'v Option<Field<'_>>, field: &str) -> Result<Option<&'v str>, String> {
    match value {
        None | Some(Field::Null) => Ok(None),
        Some(Field::Str(s)) => Ok(Some(s)),
        Some(_) => Err(format!("field `{field}`: expected a string or null")),
    }
}

fn id_field(value: Option<Field<'_>>) -> Result<String, String> {
    let id = required_string(value, "id")?;
    if id.is_empty() || id.len() > MAX_ID_LEN || !id.bytes().all(is_tag_value_byte) {
        return Err(format!(
            "field `id`: expected 1..={MAX_ID_LEN} characters of [A-Za-z0-9._:/-]"
        ));
    }
    Ok(id.into_owned())
}

/// Short identifiers such as `gateway`, `provider`, `operation`, `auth`.
fn check_name(field: &str, value: Cow<'_, str>) -> Result<String, String> {
    if value.is_empty() || value.len() > MAX_NAME_LEN || !value.bytes().all(is_tag_value_byte) {
        return Err(format!(
            "field `{field}`: expected 1..={MAX_NAME_LEN} characters of [A-Za-z0-9._:/-]"
        ));
    }
    Ok(value.into_owned())
}

fn name_field(value: Option<Field<'_>>, field: &str) -> Result<String, String> {
    check_name(field, required_string(value, field)?)
}

fn optional_name(value: Option<Field<'_>>, field: &str) -> Result<Option<String>, String> {
    optional_string(value, field)?
        .map(|v| check_name(field, v))
        .transpose()
}

fn tag_value_field(value: Option<Field<'_>>, field: &str) -> Result<String, String> {
    let value = required_string(value, field)?;
    if !is_tag_value(&value) {
        return Err(format!(
            "field `{field}`: expected 1..={MAX_TAG_VALUE_LEN} characters of [A-Za-z0-9._:/-]"
        ));
    }
    Ok(value.into_owned())
}

/// Model ids come from providers and deployments (Azure names are free-form),
/// so only length and control characters are checked.
fn optional_model(value: Option<Field<'_>>, field: &str) -> Result<Option<String>, String> {
    let Some(model) = optional_string(value, field)? else {
        return Ok(None);
    };
    if model.is_empty() || model.len() > MAX_MODEL_LEN || model.chars().any(char::is_control) {
        return Err(format!(
            "field `{field}`: expected 1..={MAX_MODEL_LEN} characters without control characters"
        ));
    }
    Ok(Some(model.into_owned()))
}

fn optional_error(value: Option<Field<'_>>) -> Result<Option<String>, String> {
    let Some(code) = optional_string(value, "error")? else {
        return Ok(None);
    };
    if code.is_empty() || code.len() > MAX_ERROR_LEN || code.chars().any(char::is_control) {
        return Err(format!(
            "field `error`: expected a short code of 1..={MAX_ERROR_LEN} characters or null"
        ));
    }
    Ok(Some(code.into_owned()))
}

fn optional_bool(value: &Option<Field<'_>>, field: &str) -> Result<Option<bool>, String> {
    match value {
        None | Some(Field::Null) => Ok(None),
        Some(Field::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(format!("field `{field}`: expected a boolean or null")),
    }
}

fn optional_usd(value: &Option<Field<'_>>, field: &str) -> Result<Option<f64>, String> {
    match value {
        None | Some(Field::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|x| x.is_finite() && *x >= 0.0)
            .map(Some)
            .ok_or_else(|| format!("field `{field}`: expected a USD amount >= 0 or null")),
    }
}

fn optional_u64(value: &Option<Field<'_>>, field: &str) -> Result<Option<u64>, String> {
    match value {
        None | Some(Field::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("field `{field}`: expected a non-negative integer or null")),
    }
}

fn token_field(value: &Option<Field<'_>>, field: &str) -> Result<u64, String> {
    match value {
        None | Some(Field::Null) => Err(missing(field)),
        Some(v) => v.as_u64().filter(|n| *n <= MAX_TOKENS).ok_or_else(|| {
            format!("field `{field}`: expected a non-negative integer <= {MAX_TOKENS}")
        }),
    }
}

/// `tag_map` over a decoded record's field: the same checks, in the same
/// (sorted key) order, and a key given twice keeps its last value, as the
/// `Value` object the record used to be decoded into did.
fn tag_fields(value: Option<Field<'_>>, field: &str) -> Result<BTreeMap<String, String>, String> {
    let mut entries = match value {
        None | Some(Field::Null) => return Ok(BTreeMap::new()),
        Some(Field::Object(entries)) => entries,
        Some(_) => return Err(format!("field `{field}`: expected an object")),
    };
    // Stable: of a repeated key, the last given is the last of its run.
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut checked = Vec::with_capacity(entries.len());
    let mut entries = entries.into_iter().peekable();
    while let Some((key, value)) = entries.next() {
        if entries.peek().is_some_and(|(next, _)| *next == key) {
            continue;
        }
        if !is_tag_key(&key) {
            return Err(format!(
                "field `{field}`: key {key:?} must match [a-z0-9_]{{1,{MAX_TAG_KEY_LEN}}}"
            ));
        }
        let Field::Str(text) = value else {
            return Err(format!("field `{field}.{key}`: expected a string"));
        };
        if !is_tag_value(&text) {
            return Err(format!(
                "field `{field}.{key}`: value must match [A-Za-z0-9._:/-]{{1,{MAX_TAG_VALUE_LEN}}}"
            ));
        }
        checked.push((key.into_owned(), text.into_owned()));
    }
    // Sorted and unique: built in one pass.
    Ok(checked.into_iter().collect())
}

/// A tag (or label) object: keys per `is_tag_key`, string values per
/// `is_tag_value`; absent or null is empty. The error names the field.
pub fn tag_map(obj: &Map<String, Value>, field: &str) -> Result<BTreeMap<String, String>, String> {
    let entries = match obj.get(field) {
        None | Some(Value::Null) => return Ok(BTreeMap::new()),
        Some(Value::Object(entries)) => entries,
        Some(_) => return Err(format!("field `{field}`: expected an object")),
    };
    let mut map = BTreeMap::new();
    for (key, value) in entries {
        if !is_tag_key(key) {
            return Err(format!(
                "field `{field}`: key {key:?} must match [a-z0-9_]{{1,{MAX_TAG_KEY_LEN}}}"
            ));
        }
        let Value::String(text) = value else {
            return Err(format!("field `{field}.{key}`: expected a string"));
        };
        if !is_tag_value(text) {
            return Err(format!(
                "field `{field}.{key}`: value must match [A-Za-z0-9._:/-]{{1,{MAX_TAG_VALUE_LEN}}}"
            ));
        }
        map.insert(key.clone(), text.clone());
    }
    Ok(map)
}

mod decode;

#[cfg(test)]
mod tests;
