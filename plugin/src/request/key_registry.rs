//! Keys issued over the collector's API (SPEC §8): the registry snapshot a
//! gateway polls (`GET /v1/keys/registry`), the compact form it is kept in
//! shared data, and each worker's one decoded copy that the request path
//! looks keys up in (by the sha256 of the presented key, no hostcall).
//!
//! Shared data holds two values, so the tick's freshness check never copies
//! the whole registry:
//! - [`META_KEY`]: `<fetched_at_ms>\n<version>` — rewritten on every good
//!   poll (200 or 304); read by every worker on every root tick.
//! - [`DATA_KEY`]: `<version>\n` then one line per secret,
//!   `<sha256 hex>\t<key_id>\t<a|r>\t<not_after_ms>\t<rpm>\t<tpm>[\t<tag>=<value>…]`
//!   (empty fields for "none") — rewritten only when the version changes;
//!   read by a worker only when the meta version differs from its copy.
//!
//! The snapshot is validated whole before anything is written: one bad
//! entry (hash, key_id, status, tag name or value, time) refuses the whole
//! answer and the last good registry stays.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use serde::Deserialize;

use crate::config;
use crate::request::identity::{
    AuthKind, DigestHash, KeyLimits, Principal, Rejection, TagSchema, TagSet,
};

pub const META_KEY: &str = "aispend:registry";
pub const DATA_KEY: &str = "aispend:registry:keys";

// --- the collector's answer ------------------------------------------------

#[derive(Debug, Deserialize)]
struct Doc<'a> {
    version: serde_json::Value,
    #[serde(borrow)]
    keys: Vec<KeyDoc<'a>>,
}

/// One entry, borrowed from the body where it can be (strings without
/// escapes): the polling worker validates 10,000s of these per new version.
#[derive(Debug, Deserialize)]
struct KeyDoc<'a> {
    #[serde(borrow)]
    sha256: Cow<'a, str>,
    #[serde(borrow)]
    key_id: Cow<'a, str>,
    #[serde(default, borrow)]
    tags: Tags<'a>,
    #[serde(default)]
    limits: Option<LimitsDoc>,
    #[serde(borrow)]
    status: Cow<'a, str>,
    #[serde(default)]
    not_after: NotAfter,
}

#[derive(Debug, Deserialize)]
struct LimitsDoc {
    #[serde(default)]
    requests_per_minute: Option<u64>,
    #[serde(default)]
    tokens_per_minute: Option<u64>,
}

/// A key's tags in answer order: a map node per key would cost more than
/// the rest of the entry (a repeated name is refused when validating).
#[derive(Debug, Default)]
struct Tags<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Tags<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = Tags<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("tags: an object of tag name to value")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut m: M,
            ) -> Result<Tags<'a>, M::Error> {
                let mut out = Vec::with_capacity(m.size_hint().unwrap_or(6));
                while let Some((Text(name), Text(value))) = m.next_entry::<Text<'a>, Text<'a>>()? {
                    out.push((name, value));
                }
                Ok(Tags(out))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

/// A string borrowed from the answer when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, s: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(s.to_string())))
            }
        }
        d.deserialize_str(Visit(std::marker::PhantomData))
    }
}

/// `not_after`: null, an RFC 3339 time, or unix seconds → milliseconds.
#[derive(Debug, Default)]
struct NotAfter(Option<u64>);

impl<'de> Deserialize<'de> for NotAfter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = NotAfter;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("not_after: null, an RFC 3339 time or unix seconds")
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<NotAfter, E> {
                Ok(NotAfter(None))
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<NotAfter, E> {
                Ok(NotAfter(None))
            }
            fn visit_u64<E: serde::de::Error>(self, secs: u64) -> Result<NotAfter, E> {
                secs.checked_mul(1000)
                    .map(|ms| NotAfter(Some(ms)))
                    .ok_or_else(|| E::custom("not_after: unix seconds out of range"))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<NotAfter, E> {
                parse_rfc3339_ms(s)
                    .map(|ms| NotAfter(Some(ms)))
                    .ok_or_else(|| E::custom(format!("not_after: `{s}` is not an RFC 3339 time")))
            }
        }
        d.deserialize_any(Visit)
    }
}

/// A validated snapshot in shared-data form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub version: String,
    /// The key lines (without the version line).
    pub lines: String,
    pub keys: usize,
}

/// Validate a registry answer whole and turn it into key lines. Any bad
/// entry refuses the answer (`Err` says which and why, without secrets).
pub fn from_collector(body: &[u8], max_bytes: usize) -> Result<Snapshot, String> {
    if body.len() > max_bytes {
        return Err(format!(
            "{} bytes, over identity.registry.max_bytes ({max_bytes})",
            body.len()
        ));
    }
    let doc: Doc = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let version = match doc.version {
        serde_json::Value::String(s) => s,
        serde_json::Value::Number(n) => n.to_string(),
        _ => return Err("version must be a string".into()),
    };
    if version.is_empty() || version.len() > 256 || !version.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("version must be 1..256 visible ASCII characters".into());
    }
    let mut lines = String::with_capacity(192 * doc.keys.len());
    let mut seen: HashSet<[u8; 32], DigestHash> =
        HashSet::with_capacity_and_hasher(doc.keys.len(), DigestHash);
    for (i, k) in doc.keys.iter().enumerate() {
        let at = |what: &str| format!("keys[{i}].{what}");
        let digest =
            config::parse_sha256_hex(&k.sha256).ok_or_else(|| at("sha256: expected 64 hex"))?;
        if !seen.insert(digest) {
            return Err(at("sha256: duplicate"));
        }
        if !config::valid_tag_value(&k.key_id) {
            return Err(at("key_id: expected 1..128 characters of [A-Za-z0-9._:/-]"));
        }
        let status = match &*k.status {
            "active" => 'a',
            "revoked" | "expired" => 'r',
            other => return Err(at(&format!("status: unknown `{other}`"))),
        };
        lines.extend(k.sha256.chars().map(|c| c.to_ascii_lowercase()));
        lines.push('\t');
        lines.push_str(&k.key_id);
        lines.push('\t');
        lines.push(status);
        lines.push('\t');
        push_opt(&mut lines, k.not_after.0);
        let limits = k.limits.as_ref();
        lines.push('\t');
        push_opt(&mut lines, limits.and_then(|l| l.requests_per_minute));
        lines.push('\t');
        push_opt(&mut lines, limits.and_then(|l| l.tokens_per_minute));
        for (j, (name, value)) in k.tags.0.iter().enumerate() {
            if k.tags.0.iter().take(j).any(|(n, _)| n == name) {
                return Err(at(&format!("tags: `{name}` twice")));
            }
            if !valid_tag_name(name) {
                return Err(at(&format!("tags: bad tag name `{name}`")));
            }
            if !config::valid_tag_value(value) {
                return Err(at(&format!(
                    "tags.{name}: expected 1..128 characters of [A-Za-z0-9._:/-]"
                )));
            }
            lines.push('\t');
            lines.push_str(name);
            lines.push('=');
            lines.push_str(value);
        }
        lines.push('\n');
    }
    Ok(Snapshot {
        version,
        lines,
        keys: doc.keys.len(),
    })
}

fn push_opt(out: &mut String, n: Option<u64>) {
    if let Some(n) = n {
        use std::fmt::Write;
        let _ = write!(out, "{n}");
    }
}

/// Tag names as the collector may send them: lowercase identifiers (they
/// cannot break the line format; names this gateway does not know are
/// skipped when decoding, as for static keys).
fn valid_tag_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` → milliseconds since the epoch.
pub fn parse_rfc3339_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        part.iter().try_fold(0i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let sep = |at: usize, c: &[u8]| b.get(at).is_some_and(|x| c.contains(x));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let mut at = 19;
    let mut millis = 0i64;
    if sep(at, b".") {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            if at - start < 3 {
                millis = millis * 10 + i64::from(b.get(at).copied().unwrap_or(b'0') - b'0');
            }
            at += 1;
        }
        if at == start {
            return None;
        }
        for _ in (at - start)..3 {
            millis *= 10;
        }
    }
    let offset_min = match b.get(at)? {
        b'Z' | b'z' if at + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if at + 6 == b.len() && sep(at + 3, b":") => {
            let m = num(at + 1, 2)? * 60 + num(at + 4, 2)?;
            if *sign == b'+' {
                m
            } else {
                -m
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_min * 60;
    u64::try_from(secs.checked_mul(1000)?.checked_add(millis)?).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

// --- shared data -------------------------------------------------------------

pub fn encode_meta(fetched_at_ms: u64, version: &str) -> Vec<u8> {
    format!("{fetched_at_ms}\n{version}").into_bytes()
}

/// Fetched-at and version of the shared registry.
pub fn split_meta(value: &[u8]) -> Option<(u64, &str)> {
    let text = std::str::from_utf8(value).ok()?;
    let (fetched, version) = text.split_once('\n')?;
    Some((fetched.parse().ok()?, version))
}

pub fn encode_data(version: &str, lines: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(version.len() + 1 + lines.len());
    out.extend_from_slice(version.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(lines.as_bytes());
    out
}

/// Version and key lines of the shared registry data.
pub fn split_data(value: &[u8]) -> Option<(&str, &str)> {
    std::str::from_utf8(value).ok()?.split_once('\n')
}

// --- the decoded registry ----------------------------------------------------

#[derive(Debug, Clone)]
pub struct Entry {
    pub principal: Principal,
    pub revoked: bool,
    pub not_after_ms: Option<u64>,
}

impl Entry {
    /// The principal if this secret may be used at `now_ms`.
    pub fn admit(&self, now_ms: u64) -> Result<Principal, Rejection> {
        if self.revoked {
            return Err(Rejection::RevokedKey);
        }
        if self.not_after_ms.is_some_and(|t| now_ms >= t) {
            return Err(Rejection::ExpiredKey);
        }
        Ok(self.principal.clone())
    }
}

/// One worker's registry: secrets by sha256. Taking a new version in only
/// indexes the lines by hash (one hex decode and one insert per secret); a
/// secret's line is decoded into a principal the first time it is presented
/// on this worker, and kept, so a refresh of 10,000s of keys stays cheap and
/// the request path pays the decode once per key, not per call.
#[derive(Debug, Default)]
pub struct KeyRegistry {
    text: String,
    /// Hash → (start, end) of its line in `text`.
    index: HashMap<[u8; 32], (u32, u32), DigestHash>,
    schema: Option<TagSchema>,
    decoded: RefCell<Decoded>,
    /// Entries left out because the static config defines their secret or
    /// key_id (static config wins).
    pub shadowed: usize,
}

#[derive(Debug, Default)]
struct Decoded {
    entries: HashMap<[u8; 32], Entry, DigestHash>,
    /// Keys of one team share their tags: each distinct tag text once.
    tag_sets: HashMap<String, Rc<TagSet>>,
}

impl KeyRegistry {
    /// The entry of a secret (decoded on first use).
    pub fn get(&self, digest: &[u8; 32]) -> Option<Entry> {
        let mut decoded = self.decoded.try_borrow_mut().ok()?;
        if let Some(e) = decoded.entries.get(digest) {
            return Some(e.clone());
        }
        let &(start, end) = self.index.get(digest)?;
        let line = self.text.get(start as usize..end as usize)?;
        let entry = decode_line(line, self.schema.as_ref()?, &mut decoded.tag_sets)?;
        decoded.entries.insert(*digest, entry.clone());
        Some(entry)
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Index key lines (written by [`from_collector`], so trusted to be
    /// well formed; a line that is not is skipped). `is_static` says whether
    /// the static config defines a secret or key_id: such entries are left
    /// out. Tag names the schema does not know are skipped when a line is
    /// decoded.
    pub fn decode(
        lines: &str,
        schema: &TagSchema,
        is_static: &dyn Fn(&[u8; 32], &str) -> bool,
    ) -> Self {
        // About 190 bytes a line with five tags: a close capacity, no counting pass.
        let mut index = HashMap::with_capacity_and_hasher(lines.len() / 128 + 1, DigestHash);
        let mut shadowed = 0;
        let mut start = 0usize;
        for line in lines.split_terminator('\n') {
            let end = start + line.len();
            let at = (start, end);
            start = end + 1;
            let (Some(hex), Some(rest)) = (line.get(..64), line.get(65..)) else {
                continue;
            };
            let key_id = rest.split('\t').next().unwrap_or("");
            let Some(digest) = config::parse_sha256_hex(hex) else {
                continue;
            };
            if is_static(&digest, key_id) {
                shadowed += 1;
                continue;
            }
            let (Ok(from), Ok(to)) = (u32::try_from(at.0), u32::try_from(at.1)) else {
                continue;
            };
            index.insert(digest, (from, to));
        }
        KeyRegistry {
            text: lines.to_string(),
            index,
            schema: Some(schema.clone()),
            decoded: RefCell::default(),
            shadowed,
        }
    }
}

/// One key line → its entry; None when it is not well formed.
fn decode_line(
    line: &str,
    schema: &TagSchema,
    tag_sets: &mut HashMap<String, Rc<TagSet>>,
) -> Option<Entry> {
    let mut f = line.splitn(7, '\t');
    let (_hex, key_id, status, not_after, rpm, tpm) = (
        f.next()?,
        f.next()?,
        f.next()?,
        f.next()?,
        f.next()?,
        f.next()?,
    );
    let tag_text = f.next().unwrap_or("");
    let tags = match tag_sets.get(tag_text) {
        Some(t) => t.clone(),
        None => {
            let mut set: TagSet = tag_text
                .split('\t')
                .filter_map(|pair| pair.split_once('='))
                .filter_map(|(n, v)| schema.index(n).map(|i| (i, v.to_string())))
                .collect();
            set.sort_by_key(|(i, _)| *i);
            let set = Rc::new(set);
            tag_sets.insert(tag_text.to_string(), set.clone());
            set
        }
    };
    let limits = KeyLimits {
        requests_per_minute: rpm.parse().ok().filter(|n| *n > 0),
        tokens_per_minute: tpm.parse().ok().filter(|n| *n > 0),
    };
    Some(Entry {
        principal: Principal {
            key_id: Rc::from(key_id),
            auth: AuthKind::ApiKey,
            tags,
            limits: (limits.requests_per_minute.is_some() || limits.tokens_per_minute.is_some())
                .then_some(limits),
        },
        revoked: status != "a",
        not_after_ms: not_after.parse().ok(),
    })
}

/// A worker's copy of the shared registry, taken in on the root tick only
/// when the shared version changed.
#[derive(Debug, Default)]
pub struct RegistryView {
    version: String,
    registry: Rc<KeyRegistry>,
    fetched_at_ms: Option<u64>,
}

/// What [`RegistryView::update`] needs from shared data.
pub enum Sync {
    /// Nothing changed (or no registry yet).
    Current,
    /// The meta names a version this copy lacks: read the data.
    NeedData,
}

impl RegistryView {
    pub fn keys(&self) -> &KeyRegistry {
        &self.registry
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    #[cfg(test)]
    pub fn keys_rc(&self) -> Rc<KeyRegistry> {
        self.registry.clone()
    }

    pub fn fetched_at_ms(&self) -> Option<u64> {
        self.fetched_at_ms
    }

    /// Forget the version so the next sync decodes again (a new config
    /// may define other static keys or tags).
    pub fn invalidate(&mut self) {
        self.version.clear();
    }

    /// Take in the meta value; whether the data must be read.
    pub fn check_meta(&mut self, meta: Option<&[u8]>) -> Sync {
        match meta.and_then(split_meta) {
            Some((fetched, version)) => {
                self.fetched_at_ms = Some(fetched);
                if version.is_empty() || version == self.version {
                    Sync::Current
                } else {
                    Sync::NeedData
                }
            }
            None => Sync::Current,
        }
    }

    /// Take in the data value; false when it is missing (evicted) or not
    /// ours, and the copy stays as it was.
    pub fn take_data(
        &mut self,
        data: Option<&[u8]>,
        schema: &TagSchema,
        is_static: &dyn Fn(&[u8; 32], &str) -> bool,
    ) -> bool {
        let Some((version, lines)) = data.and_then(split_data) else {
            return false;
        };
        if version.is_empty() {
            return false;
        }
        if version == self.version {
            // Already decoded (the meta lags behind a racing writer).
            return true;
        }
        self.registry = Rc::new(KeyRegistry::decode(lines, schema, is_static));
        self.version = version.to_string();
        true
    }
}

#[cfg(test)]
mod tests;
