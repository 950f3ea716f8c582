//! The usage record shipped per call (SPEC §4, CONFIG.md), its id and its
//! timestamp format. Serialized straight from borrowed fields: no
//! `serde_json::Value` on the hot path.

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::identity::{TagSchema, TagSet};

/// One call, borrowed from the request's state for serialization.
#[derive(Debug, Serialize)]
pub struct Record<'a> {
    pub id: &'a str,
    #[serde(serialize_with = "serialize_ts")]
    pub ts: u64,
    pub duration_ms: u64,
    pub ttft_ms: Option<u64>,
    pub gateway: &'a str,
    pub key_id: &'a str,
    pub auth: &'a str,
    pub tags: Tags<'a>,
    #[serde(serialize_with = "serialize_labels")]
    pub labels: &'a [(String, String)],
    pub provider: &'a str,
    pub operation: &'a str,
    pub model: Option<&'a str>,
    pub requested_model: Option<&'a str>,
    pub stream: bool,
    pub status: u32,
    pub error: Option<&'a str>,
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub cache_write_input_tokens: u64,
    pub output_tokens: u64,
    pub reasoning_tokens: u64,
}

impl Record<'_> {
    /// Append the record's JSON to `out` (a reused buffer).
    pub fn write_json(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        serde_json::to_writer(out, self)
    }
}

/// Tags by schema index, written as `{"team":"search",…}`.
#[derive(Debug)]
pub struct Tags<'a> {
    pub schema: &'a TagSchema,
    pub set: &'a TagSet,
}

impl Serialize for Tags<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.set.len()))?;
        for (i, v) in self.set {
            map.serialize_entry(self.schema.name(*i), v)?;
        }
        map.end()
    }
}

fn serialize_labels<S: Serializer>(labels: &&[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(labels.len()))?;
    for (k, v) in labels.iter() {
        map.serialize_entry(k, v)?;
    }
    map.end()
}

fn serialize_ts<S: Serializer>(ms: &u64, s: S) -> Result<S::Ok, S::Error> {
    let buf = rfc3339_millis(*ms);
    s.serialize_str(std::str::from_utf8(&buf).unwrap_or("1970-01-01T00:00:00.000Z"))
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for milliseconds since the Unix epoch (UTC).
pub fn rfc3339_millis(ms: u64) -> [u8; 24] {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let mut out = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for k in (0..width).rev() {
            if let Some(slot) = out.get_mut(at + k) {
                *slot = b'0' + (v % 10) as u8;
            }
            v /= 10;
        }
    };
    put(0, 4, y.clamp(0, 9999) as u64);
    put(5, 2, m as u64);
    put(8, 2, d as u64);
    put(11, 2, rem / 3600);
    put(14, 2, rem % 3600 / 60);
    put(17, 2, rem % 60);
    put(20, 3, ms % 1000);
    out
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Record ids: 32 lowercase hex chars from a per-VM random seed and a
/// counter. The mix is a bijection of the counter, so one VM never repeats an
/// id; the 128-bit random seed keeps VMs apart.
#[derive(Debug, Clone)]
pub struct IdGen {
    seed: [u64; 2],
    counter: u64,
}

impl IdGen {
    pub fn new(seed: [u8; 16]) -> Self {
        let mut lo = [0u8; 8];
        let mut hi = [0u8; 8];
        lo.copy_from_slice(seed.get(..8).unwrap_or(&[0; 8]));
        hi.copy_from_slice(seed.get(8..).unwrap_or(&[0; 8]));
        IdGen {
            seed: [u64::from_le_bytes(lo), u64::from_le_bytes(hi)],
            counter: 0,
        }
    }

    /// Seed from the clock when the host has no randomness: unique enough
    /// across VMs started at different nanoseconds, still unique within one.
    pub fn from_time(nanos: u128, salt: u64) -> Self {
        let a = mix(nanos as u64 ^ salt);
        let b = mix((nanos >> 64) as u64 ^ a.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15);
        let mut seed = [0u8; 16];
        seed[..8].copy_from_slice(&a.to_le_bytes());
        seed[8..].copy_from_slice(&b.to_le_bytes());
        IdGen::new(seed)
    }

    /// The next id, written into a stack buffer.
    pub fn next_id(&mut self) -> [u8; 32] {
        self.counter = self.counter.wrapping_add(1);
        let a = mix(self.seed[0] ^ self.counter);
        let b = mix(self.seed[1].wrapping_add(self.counter.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
        let mut out = [0u8; 32];
        let hex = b"0123456789abcdef";
        for (i, byte) in a
            .to_be_bytes()
            .iter()
            .chain(b.to_be_bytes().iter())
            .enumerate()
        {
            if let (Some(h), Some(l)) =
                (hex.get((byte >> 4) as usize), hex.get((byte & 15) as usize))
            {
                if let Some(slot) = out.get_mut(2 * i) {
                    *slot = *h;
                }
                if let Some(slot) = out.get_mut(2 * i + 1) {
                    *slot = *l;
                }
            }
        }
        out
    }
}

/// splitmix64's finalizer: a bijection on u64 with good avalanche.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
