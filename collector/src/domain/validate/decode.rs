//! One record's JSON decoded straight into the fields validation reads,
//! without a `serde_json::Value` tree: strings stay borrowed from the body
//! when they hold no escape, unknown fields are skipped, and nothing is kept
//! of arrays or nested objects but their kind.
//!
//! It decodes what `serde_json::Value` would and no more: every value goes
//! through `deserialize_any` (so a number out of range fails here as it did
//! there), a field given twice keeps its last value (as `Value`'s map does),
//! and a tag or label object keeps its entries in document order; the
//! validation sorts them and keeps the last of a repeated key.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// One field's value as validation needs it.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Field<'a> {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(Cow<'a, str>),
    Array,
    /// The entries of a `tags` or `labels` object in document order; empty
    /// for any other field's object.
    Object(Vec<(Cow<'a, str>, Field<'a>)>),
}

impl Field<'_> {
    /// `Value::as_u64`.
    pub(super) fn as_u64(&self) -> Option<u64> {
        match *self {
            Field::U64(n) => Some(n),
            Field::I64(n) => u64::try_from(n).ok(),
            _ => None,
        }
    }

    /// `Value::as_f64`.
    pub(super) fn as_f64(&self) -> Option<f64> {
        match *self {
            Field::U64(n) => Some(n as f64),
            Field::I64(n) => Some(n as f64),
            Field::F64(x) => Some(x),
            _ => None,
        }
    }
}

/// The fields of a record validation reads; `None` when absent.
#[derive(Debug, Default)]
pub(super) struct RawRecord<'a> {
    pub id: Option<Field<'a>>,
    pub ts: Option<Field<'a>>,
    pub duration_ms: Option<Field<'a>>,
    pub ttft_ms: Option<Field<'a>>,
    pub gateway: Option<Field<'a>>,
    pub key_id: Option<Field<'a>>,
    pub auth: Option<Field<'a>>,
    pub tags: Option<Field<'a>>,
    pub labels: Option<Field<'a>>,
    pub provider: Option<Field<'a>>,
    pub operation: Option<Field<'a>>,
    pub model: Option<Field<'a>>,
    pub requested_model: Option<Field<'a>>,
    pub stream: Option<Field<'a>>,
    pub status: Option<Field<'a>>,
    pub error: Option<Field<'a>>,
    pub input_tokens: Option<Field<'a>>,
    pub cached_input_tokens: Option<Field<'a>>,
    pub cache_write_input_tokens: Option<Field<'a>>,
    pub output_tokens: Option<Field<'a>>,
    pub reasoning_tokens: Option<Field<'a>>,
    pub reserved_usd: Option<Field<'a>>,
    pub settled_usd: Option<Field<'a>>,
    pub credential_id: Option<Field<'a>>,
}

/// A decoded record: `None` when the JSON value is not an object.
pub(super) struct Decoded<'a>(pub Option<RawRecord<'a>>);

impl<'de> Deserialize<'de> for Decoded<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RecordVisitor)
    }
}

struct RecordVisitor;

impl<'de> Visitor<'de> for RecordVisitor {
    type Value = Decoded<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut r = RawRecord::default();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let slot = match key.as_ref() {
                "id" => &mut r.id,
                "ts" => &mut r.ts,
                "duration_ms" => &mut r.duration_ms,
                "ttft_ms" => &mut r.ttft_ms,
                "gateway" => &mut r.gateway,
                "key_id" => &mut r.key_id,
                "auth" => &mut r.auth,
                "tags" => &mut r.tags,
                "labels" => &mut r.labels,
                "provider" => &mut r.provider,
                "operation" => &mut r.operation,
                "model" => &mut r.model,
                "requested_model" => &mut r.requested_model,
                "stream" => &mut r.stream,
                "status" => &mut r.status,
                "error" => &mut r.error,
                "input_tokens" => &mut r.input_tokens,
                "cached_input_tokens" => &mut r.cached_input_tokens,
                "cache_write_input_tokens" => &mut r.cache_write_input_tokens,
                "output_tokens" => &mut r.output_tokens,
                "reasoning_tokens" => &mut r.reasoning_tokens,
                "reserved_usd" => &mut r.reserved_usd,
                "settled_usd" => &mut r.settled_usd,
                "credential_id" => &mut r.credential_id,
                _ => {
                    map.next_value::<Skip>()?;
                    continue;
                }
            };
            let entries = matches!(key.as_ref(), "tags" | "labels");
            *slot = Some(map.next_value_seed(FieldSeed { entries })?);
        }
        Ok(Decoded(Some(r)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        skip_seq(seq)?;
        Ok(Decoded(None))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Decoded(None))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Decoded(None))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Decoded(None))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Decoded(None))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Decoded(None))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Decoded(None))
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Decoded(None))
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// A map key, borrowed when it holds no escape.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// One field's value; `entries` keeps an object's entries (one level).
struct FieldSeed {
    entries: bool,
}

impl<'de> DeserializeSeed<'de> for FieldSeed {
    type Value = Field<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed {
    type Value = Field<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Field::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Field::I64(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Field::U64(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Field::F64(v))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Owned(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Field::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Field::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        skip_seq(seq)?;
        Ok(Field::Array)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        if !self.entries {
            skip_map(map)?;
            return Ok(Field::Object(Vec::new()));
        }
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(4).min(16));
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let value = map.next_value_seed(FieldSeed { entries: false })?;
            entries.push((key, value));
        }
        Ok(Field::Object(entries))
    }
}

/// Any JSON value, read through (numbers parsed as `Value` parses them) and
/// dropped.
struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skip;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_none<E: de::Error>(self) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Skip, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Skip, A::Error> {
        skip_seq(seq)?;
        Ok(Skip)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Skip, A::Error> {
        skip_map(map)?;
        Ok(Skip)
    }
}

fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<Skip>()?.is_some() {}
    Ok(())
}

fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_key_seed(KeySeed)?.is_some() {
        map.next_value::<Skip>()?;
    }
    Ok(())
}
