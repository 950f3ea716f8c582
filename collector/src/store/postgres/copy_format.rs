//! Records encoded as tuples of PostgreSQL's binary `COPY` format, the
//! cheapest way into a table for both sides: the server parses fixed-width
//! binary fields without any SQL, and the client writes bytes without the
//! per-value dynamic dispatch of a parameterized statement.
//!
//! Format (PostgreSQL docs, "COPY", binary format): an 11-byte signature, a
//! flags word and a header-extension length; then per tuple a 16-bit field
//! count and per field a 32-bit length (-1 for NULL) followed by the value in
//! its type's binary send format (big-endian integers and floats, uuid as 16
//! bytes, text as UTF-8); then a 16-bit -1 trailer.

use super::stored_id::{ts_in_id, StoredId};
use crate::domain::record::{map_to_json, PricedRecord};

/// The `COPY` statement whose column list matches `encode_tuple`.
pub const COPY_RECORDS: &str = "COPY records (id, ts_ms, series_id, duration_ms, ttft_ms, \
     input_tokens, cached_input_tokens, cache_write_input_tokens, output_tokens, \
     reasoning_tokens, cost_usd, status, stream, ts_in_id, id_text, gateway, auth, labels, \
     requested_model, price_version, error) FROM STDIN (FORMAT binary)";

const FIELDS: i16 = 21;

/// Signature, flags (no OIDs), no header extension.
pub const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// End-of-data marker.
pub const TRAILER: &[u8] = &(-1i16).to_be_bytes();

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn put_null(out: &mut Vec<u8>) {
    out.extend_from_slice(&(-1i32).to_be_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Every field is bounded by validation (ids 128 bytes, labels a few KB),
    // far below i32::MAX; saturate rather than panic all the same.
    let len = i32::try_from(bytes.len()).unwrap_or(i32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

fn put_i64(out: &mut Vec<u8>, value: i64) {
    out.extend_from_slice(&8i32.to_be_bytes());
    out.extend_from_slice(&value.to_be_bytes());
}

fn put_bool(out: &mut Vec<u8>, value: bool) {
    out.extend_from_slice(&1i32.to_be_bytes());
    out.push(u8::from(value));
}

fn put_opt_i64(out: &mut Vec<u8>, value: Option<u64>) {
    match value {
        Some(v) => put_i64(out, to_i64(v)),
        None => put_null(out),
    }
}

fn put_opt_str(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(v) => put_bytes(out, v.as_bytes()),
        None => put_null(out),
    }
}

/// Appends one record as a tuple of `COPY_RECORDS`.
pub fn encode_tuple(out: &mut Vec<u8>, priced: &PricedRecord, id: &StoredId, series_id: i64) {
    let r = &priced.record;
    out.extend_from_slice(&FIELDS.to_be_bytes());
    let id_text = match id {
        StoredId::Uuid(bytes) => {
            put_bytes(out, bytes);
            None
        }
        StoredId::Text(text) => {
            put_null(out);
            Some(text)
        }
    };
    put_i64(out, r.ts_ms);
    put_i64(out, series_id);
    put_opt_i64(out, r.duration_ms);
    put_opt_i64(out, r.ttft_ms);
    put_i64(out, to_i64(r.tokens.input));
    put_i64(out, to_i64(r.tokens.cached_input));
    put_i64(out, to_i64(r.tokens.cache_write_input));
    put_i64(out, to_i64(r.tokens.output));
    put_i64(out, to_i64(r.tokens.reasoning));
    match priced.cost_usd {
        Some(cost) => {
            out.extend_from_slice(&8i32.to_be_bytes());
            out.extend_from_slice(&cost.to_bits().to_be_bytes());
        }
        None => put_null(out),
    }
    // Validated 100..=599.
    let status = i16::try_from(r.status).unwrap_or(i16::MAX);
    out.extend_from_slice(&2i32.to_be_bytes());
    out.extend_from_slice(&status.to_be_bytes());
    match r.stream {
        Some(stream) => put_bool(out, stream),
        None => put_null(out),
    }
    put_bool(out, ts_in_id(id, r.ts_ms));
    put_opt_str(out, id_text.map(String::as_str));
    put_bytes(out, r.gateway.as_bytes());
    put_opt_str(out, r.auth.as_deref());
    if r.labels.is_empty() {
        // Most records carry no labels: skip the serializer.
        put_bytes(out, b"{}");
    } else {
        put_bytes(out, map_to_json(&r.labels).as_bytes());
    }
    put_opt_str(out, r.requested_model.as_deref());
    put_bytes(out, priced.price_version.as_bytes());
    put_opt_str(out, r.error.as_deref());
}
