//! The usage record shipped per call (CONTRACTS §4, CONFIG.md), its id and its
//! timestamp format. Written straight from borrowed fields into the
//! shipper's buffer by a small JSON writer (`json_out`): it runs once per
//! call inside the gateway, where serde's generic serializer cost more.

use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;

use crate::filter::Filter;
use crate::json::out::{string, unsigned};
use crate::request::identity::{AuthKind, Principal, TagSchema, TagSet};
use crate::usage::{Held, MeterStart, RequestInfo, Route, Usage};

/// The collector's limits on what a record may hold (its
/// `domain/validate.rs`); the writer keeps every record inside them, so a
/// value a client or provider chose never gets a record refused at ingest.
pub const MAX_MODEL_BYTES: usize = 256;
/// Largest token count the collector stores.
pub const MAX_TOKENS: u64 = 1_000_000_000_000;
/// Marks a model name cut to `MAX_MODEL_BYTES`.
pub const TRUNCATED: &str = "\u{2026}";

/// A model name as the collector can store it: control characters written
/// out as `\u00XX` text, cut to `MAX_MODEL_BYTES` with a trailing `…` when
/// longer; None for an empty name. Borrowed when nothing needed changing.
pub fn storable_model(name: &str) -> Option<Cow<'_, str>> {
    if name.is_empty() {
        return None;
    }
    // Eight bytes at a time; every control character is a candidate.
    let clean =
        name.len() <= MAX_MODEL_BYTES && !crate::json::bytes::may_hold_control(name.as_bytes());
    if clean {
        return Some(Cow::Borrowed(name));
    }
    if name.len() <= MAX_MODEL_BYTES && !name.chars().any(char::is_control) {
        return Some(Cow::Borrowed(name)); // a 0xC2 that was not C1
    }
    let mut out = String::with_capacity(name.len().min(MAX_MODEL_BYTES + 8));
    for c in name.chars() {
        if c.is_control() {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
        if out.len() > MAX_MODEL_BYTES {
            break;
        }
    }
    if out.len() > MAX_MODEL_BYTES {
        let mut cut = MAX_MODEL_BYTES - TRUNCATED.len();
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str(TRUNCATED);
    }
    Some(Cow::Owned(out))
}

/// Token counts as the collector can store them: each at most `MAX_TOKENS`,
/// cache reads and writes within the input, reasoning within the output.
/// Returns whether anything had to change (the record then says
/// `tokens_clamped`).
pub fn clamp_tokens(t: &mut [u64; 5]) -> bool {
    let before = *t;
    let [input, cached, cache_write, output, reasoning] = t;
    for v in [
        &mut *input,
        &mut *cached,
        &mut *cache_write,
        &mut *output,
        &mut *reasoning,
    ] {
        *v = (*v).min(MAX_TOKENS);
    }
    *cached = (*cached).min(*input);
    *cache_write = (*cache_write).min(*input - *cached);
    *reasoning = (*reasoning).min(*output);
    *t != before
}

/// A response status the collector stores (100..=599); a call that ended
/// without one (the client went away first) is 499, as nginx logs it.
pub fn storable_status(status: u32) -> u32 {
    if (100..=599).contains(&status) {
        status
    } else {
        499
    }
}

/// A finished call, owned, waiting in the shipper for its record to be
/// written together with the next few (`Shipper::defer`): the record writer
/// then runs in a loop over several calls, its code fetched into the
/// instruction cache once for all of them rather than cold for each call
/// (README "Requests/s against the floor"). Refusals are written at once.
#[derive(Debug)]
pub struct Finished {
    /// The config the call ran under (its tag schema, gateway, credential).
    pub filter: Rc<Filter>,
    pub id: [u8; 32],
    pub start_ms: u64,
    pub end_ms: u64,
    pub ttft_ms: Option<u64>,
    pub principal: Principal,
    pub labels: Vec<(String, String)>,
    pub route: Route,
    pub request: RequestInfo,
    /// The request body when it passed unread (`request`, the defaults,
    /// is then read from it first: `read_usage`).
    pub request_body: Option<Vec<u8>>,
    pub status: u32,
    pub usage: Metered,
    pub reservation: Option<(f64, f64)>,
}

/// A finished call's usage: read as its response passed, or still to be
/// read from the body kept for it (`usage::Held`): what the response
/// headers told the meter (built from it with the call's route and request
/// info), what was kept, and whether the response came to its end.
#[derive(Debug)]
pub enum Metered {
    Read(Usage),
    Later(Box<(MeterStart, Held, bool)>),
}

impl Finished {
    /// Read what waited for the record: the request body if it passed
    /// unread, then the usage (`Metered::Later`).
    pub fn read_usage(&mut self) {
        if let Some(body) = self.request_body.take() {
            // As `on_request_body` reads a whole first chunk: the fast
            // reader, and the full one for what it cannot read.
            let (route, opts) = (&self.route, &self.filter.usage);
            let info = crate::usage::inspect_whole_request(route, &body, opts)
                .unwrap_or_else(|| crate::usage::inspect_request(route, &body, opts));
            // Such a body names no stream: it has nothing to rewrite.
            self.request = RequestInfo {
                body_rewrite: None,
                ..info
            };
        }
        if let Metered::Later(_) = self.usage {
            let read = std::mem::replace(&mut self.usage, Metered::Read(Usage::default()));
            if let Metered::Later(later) = read {
                let (start, held, end_of_stream) = *later;
                let mut meter = start.meter(&self.route, &self.request);
                meter.resume(held);
                self.usage = Metered::Read(meter.finish(end_of_stream));
            }
        }
    }

    /// Append the call's record to `out` (as `Call::write_record`), its
    /// usage read first if that waited.
    pub fn write_record(&mut self, out: &mut Vec<u8>) {
        self.read_usage();
        let Metered::Read(usage) = &self.usage else {
            return;
        };
        let f = &*self.filter;
        Call {
            id: std::str::from_utf8(&self.id).unwrap_or(""),
            start_ms: self.start_ms,
            end_ms: self.end_ms,
            ttft_ms: self.ttft_ms,
            gateway: f.profile.name(),
            schema: &f.schema,
            principal: &self.principal,
            labels: &self.labels,
            route: &self.route,
            request: &self.request,
            status: self.status,
            usage,
            principal_json: Some(&f.principal_json),
            reservation: self.reservation,
            credential_id: f.tags.credential_id(self.route.provider),
        }
        .write_record(out);
    }
}

/// The token counts of `usage` as a record states them (input, cached
/// input, cache write, output, reasoning; `clamp_tokens`), and whether
/// any had to change.
fn storable_tokens(usage: &Usage) -> ([u64; 5], bool) {
    let mut tokens = [
        usage.input_tokens,
        usage.cached_input_tokens,
        usage.cache_write_input_tokens,
        usage.output_tokens,
        usage.reasoning_tokens,
    ];
    let clamped = clamp_tokens(&mut tokens);
    (tokens, clamped)
}

/// The (input, output) tokens a record of `usage` states, as
/// `Call::write_record` returns them (clamped as the collector stores them).
pub fn recorded_tokens(usage: &Usage) -> (u64, u64) {
    let ([input, _, _, output, _], _) = storable_tokens(usage);
    (input, output)
}

/// What one call leaves behind, as the request flow knows it at its end.
#[derive(Debug)]
pub struct Call<'a> {
    pub id: &'a str,
    pub start_ms: u64,
    pub end_ms: u64,
    pub ttft_ms: Option<u64>,
    pub gateway: &'a str,
    pub schema: &'a TagSchema,
    pub principal: &'a Principal,
    pub labels: &'a [(String, String)],
    pub route: &'a Route,
    pub request: &'a RequestInfo,
    /// The response status, 0 when none came.
    pub status: u32,
    pub usage: &'a Usage,
    /// Where the principal's part of the record is kept between calls.
    pub principal_json: Option<&'a PrincipalJson>,
    /// A strict-budget call: (reserved, settled) USD.
    pub reservation: Option<(f64, f64)>,
    /// The id of the provider credential the call was sent with.
    pub credential_id: Option<&'a str>,
}

impl Call<'_> {
    /// Assemble the call's record and append its JSON to `out`. Values
    /// clients and providers chose are made storable here, so the collector
    /// never refuses a record for its shape. Returns the (input, output)
    /// tokens recorded, for the key's token limit.
    pub fn write_record(&self, out: &mut Vec<u8>) -> (u64, u64) {
        let usage = self.usage;
        let (tokens, clamped) = storable_tokens(usage);
        let [input_tokens, cached_input_tokens, cache_write_input_tokens, output_tokens, reasoning_tokens] =
            tokens;
        let error = usage
            .error
            .or((self.status >= 400).then_some("upstream_error"))
            .or(clamped.then_some("tokens_clamped"));
        let requested_model = self
            .request
            .model
            .as_deref()
            .or(self.route.path_model.as_deref())
            .and_then(storable_model);
        let model = usage
            .model
            .as_deref()
            .and_then(storable_model)
            .or_else(|| requested_model.clone());
        let record = Record {
            id: self.id,
            ts: self.start_ms,
            duration_ms: self.end_ms.saturating_sub(self.start_ms),
            ttft_ms: self.ttft_ms,
            gateway: self.gateway,
            key_id: &self.principal.key_id,
            auth: self.principal.auth.as_str(),
            tags: Tags {
                schema: self.schema,
                set: &self.principal.tags,
            },
            labels: self.labels,
            provider: self.route.provider.as_str(),
            operation: self.route.operation.as_str(),
            model: model.as_deref(),
            requested_model: requested_model.as_deref(),
            stream: self.request.stream,
            status: storable_status(self.status),
            error,
            input_tokens,
            cached_input_tokens,
            cache_write_input_tokens,
            output_tokens,
            reasoning_tokens,
            reservation: self.reservation,
            credential_id: self.credential_id,
        };
        let cache = self
            .principal_json
            .filter(|_| self.principal.auth == AuthKind::ApiKey);
        match cache {
            Some(cache) => cache.with(&record, self.principal, |part| {
                record.write_json_with(out, Some(part))
            }),
            None => record.write_json(out),
        }
        (input_tokens, output_tokens)
    }
}

/// One call, borrowed from the request's state for serialization.
#[derive(Debug)]
pub struct Record<'a> {
    pub id: &'a str,
    /// Request start, ms since the epoch (written as RFC 3339).
    pub ts: u64,
    pub duration_ms: u64,
    pub ttft_ms: Option<u64>,
    pub gateway: &'a str,
    pub key_id: &'a str,
    pub auth: &'a str,
    pub tags: Tags<'a>,
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
    /// A strict-budget call: (`reserved_usd`, `settled_usd`), written only then.
    pub reservation: Option<(f64, f64)>,
    /// `credential_id`, written only when the gateway set a configured
    /// provider credential.
    pub credential_id: Option<&'a str>,
}

impl Record<'_> {
    /// Append the record's JSON to `out` (a reused buffer).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        self.write_json_with(out, None)
    }

    /// `write_json`, with the principal's part already written (by
    /// `write_principal`, for this gateway and principal) when given.
    fn write_json_with(&self, out: &mut Vec<u8>, principal: Option<&[u8]>) {
        // The record's own keys are constants, written with their quotes and
        // separators in one copy; only values go through `string`'s escaping.
        // Same output as a generic writer (record_tests parses it back).
        out.reserve(640);
        out.extend_from_slice(b"{\"id\":");
        string(out, self.id);
        out.extend_from_slice(b",\"ts\":\"");
        out.extend_from_slice(&rfc3339_millis(self.ts));
        out.extend_from_slice(b"\",\"duration_ms\":");
        unsigned(out, self.duration_ms);
        out.extend_from_slice(b",\"ttft_ms\":");
        opt_unsigned(out, self.ttft_ms);
        match principal {
            Some(part) => out.extend_from_slice(part),
            None => self.write_principal(out),
        }
        out.extend_from_slice(b",\"labels\":");
        map(
            out,
            self.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        out.extend_from_slice(b",\"provider\":");
        string(out, self.provider);
        out.extend_from_slice(b",\"operation\":");
        string(out, self.operation);
        out.extend_from_slice(b",\"model\":");
        opt_string(out, self.model);
        out.extend_from_slice(b",\"requested_model\":");
        opt_string(out, self.requested_model);
        out.extend_from_slice(if self.stream {
            b",\"stream\":true,\"status\":"
        } else {
            b",\"stream\":false,\"status\":"
        });
        unsigned(out, u64::from(self.status));
        // Most calls have no error: its null and the next key in one copy.
        match self.error {
            None => out.extend_from_slice(b",\"error\":null,\"input_tokens\":"),
            Some(e) => {
                out.extend_from_slice(b",\"error\":");
                string(out, e);
                out.extend_from_slice(b",\"input_tokens\":");
            }
        }
        unsigned(out, self.input_tokens);
        out.extend_from_slice(b",\"cached_input_tokens\":");
        unsigned(out, self.cached_input_tokens);
        out.extend_from_slice(b",\"cache_write_input_tokens\":");
        unsigned(out, self.cache_write_input_tokens);
        out.extend_from_slice(b",\"output_tokens\":");
        unsigned(out, self.output_tokens);
        out.extend_from_slice(b",\"reasoning_tokens\":");
        unsigned(out, self.reasoning_tokens);
        if let Some(id) = self.credential_id {
            out.extend_from_slice(b",\"credential_id\":");
            string(out, id);
        }
        if let Some((reserved, settled)) = self.reservation {
            let finite = |x: f64| if x.is_finite() && x >= 0.0 { x } else { 0.0 };
            let text = format!(
                ",\"reserved_usd\":{},\"settled_usd\":{}",
                finite(reserved),
                finite(settled)
            );
            out.extend_from_slice(text.as_bytes());
        }
        out.push(b'}');
    }
}

impl Record<'_> {
    /// `,"gateway":…,"key_id":…,"auth":…,"tags":{…}`: the part of a record
    /// that depends only on the gateway and the principal.
    fn write_principal(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b",\"gateway\":");
        string(out, self.gateway);
        out.extend_from_slice(b",\"key_id\":");
        string(out, self.key_id);
        out.extend_from_slice(b",\"auth\":");
        string(out, self.auth);
        out.extend_from_slice(b",\"tags\":");
        map(
            out,
            self.tags
                .set
                .iter()
                .map(|(i, v)| (self.tags.schema.name(*i), v.as_str())),
        );
    }
}

/// Slots of the principal part of records, per registry key.
const PRINCIPAL_SLOTS: usize = 16;

/// The principal part of a record (`Record::write_principal`: gateway, key
/// id, auth, tags: a dozen escaped strings, a third of a record's cost),
/// written once per registry key and copied into each record after. Lives
/// in the compiled config, so a new config (schema, gateway, keys) starts
/// empty. Registry principals share their `Rc`s with the registry, which
/// identifies them; a slot keeps those `Rc`s alive, so an address is never
/// reused while it is cached. JWT and consumer principals are built per
/// call and written in full.
#[derive(Debug, Default)]
pub struct PrincipalJson {
    slots: RefCell<Vec<PrincipalSlot>>,
}

#[derive(Debug)]
struct PrincipalSlot {
    key_id: Rc<str>,
    tags: Rc<TagSet>,
    json: Vec<u8>,
}

impl Clone for PrincipalJson {
    /// A copy starts empty: it is a cache.
    fn clone(&self) -> Self {
        PrincipalJson::default()
    }
}

impl PrincipalJson {
    /// Call `f` with `record`'s principal part, written now if this
    /// principal's is not kept yet.
    fn with<R>(&self, record: &Record<'_>, principal: &Principal, f: impl FnOnce(&[u8]) -> R) -> R {
        let Ok(mut slots) = self.slots.try_borrow_mut() else {
            let mut json = Vec::new();
            record.write_principal(&mut json);
            return f(&json);
        };
        if slots.is_empty() {
            slots.reserve_exact(PRINCIPAL_SLOTS);
        }
        let index = (Rc::as_ptr(&principal.key_id).cast::<u8>() as usize / 8) % PRINCIPAL_SLOTS;
        let hit = slots.get(index).is_some_and(|s| {
            Rc::ptr_eq(&s.key_id, &principal.key_id) && Rc::ptr_eq(&s.tags, &principal.tags)
        });
        if !hit {
            let mut json = Vec::with_capacity(256);
            record.write_principal(&mut json);
            let slot = PrincipalSlot {
                key_id: principal.key_id.clone(),
                tags: principal.tags.clone(),
                json,
            };
            while slots.len() <= index {
                slots.push(PrincipalSlot {
                    key_id: Rc::from(""),
                    tags: Rc::default(),
                    json: Vec::new(),
                });
            }
            if let Some(old) = slots.get_mut(index) {
                *old = slot;
            }
        }
        match slots.get(index) {
            Some(slot) => f(&slot.json),
            None => f(&[]),
        }
    }
}

fn opt_string(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(v) => string(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

fn opt_unsigned(out: &mut Vec<u8>, value: Option<u64>) {
    match value {
        Some(v) => unsigned(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

/// `{"k":"v",…}` of string pairs.
fn map<'v>(out: &mut Vec<u8>, entries: impl Iterator<Item = (&'v str, &'v str)>) {
    out.push(b'{');
    for (i, (k, v)) in entries.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, k);
        out.push(b':');
        string(out, v);
    }
    out.push(b'}');
}

/// Tags by schema index, written as `{"team":"search",…}`.
#[derive(Debug)]
pub struct Tags<'a> {
    pub schema: &'a TagSchema,
    pub set: &'a TagSet,
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for milliseconds since the Unix epoch (UTC).
/// The text up to the seconds is kept for the last second written (calls
/// come many per second): then only the milliseconds are computed.
pub fn rfc3339_millis(ms: u64) -> [u8; 24] {
    thread_local! {
        // (second, its text); u64::MAX: none yet.
        static LAST: std::cell::Cell<(u64, [u8; 24])> =
            const { std::cell::Cell::new((u64::MAX, [0; 24])) };
    }
    let secs = ms / 1000;
    let mut out = match LAST.try_with(std::cell::Cell::get) {
        Ok((last, text)) if last == secs => text,
        _ => {
            let text = rfc3339_seconds(secs);
            let _ = LAST.try_with(|c| c.set((secs, text)));
            text
        }
    };
    let milli = (ms % 1000) as u32;
    if let Some(digits) = out.get_mut(20..23) {
        digits.copy_from_slice(&[
            b'0' + (milli / 100) as u8,
            b'0' + (milli / 10 % 10) as u8,
            b'0' + (milli % 10) as u8,
        ]);
    }
    out
}

/// `rfc3339_millis` for a whole second (`.000`).
fn rfc3339_seconds(secs: u64) -> [u8; 24] {
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

/// Record ids: 32 lowercase hex chars, time-ordered like UUIDv7: 48 bits of
/// the request's start (ms), then 80 bits from a per-VM random seed and a
/// counter. The low 64 bits are a bijection of the counter, so one VM never
/// repeats an id; the random seed keeps VMs apart. Time order lets the
/// collector's unique index on `id` take appends instead of random inserts.
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

    /// The next id for a request that started at `now_ms`, written into a
    /// stack buffer.
    pub fn next_id(&mut self, now_ms: u64) -> [u8; 32] {
        self.counter = self.counter.wrapping_add(1);
        let a = mix(self.seed[0] ^ self.counter);
        let b = mix(self.seed[1].wrapping_add(self.counter.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
        // 6 bytes of time, 2 of `b`, 8 of `a`.
        let high = (now_ms << 16) | (b & 0xffff);
        let mut out = [0u8; 32];
        for (slot, half) in out.chunks_exact_mut(8).zip([high >> 32, high, a >> 32, a]) {
            slot.copy_from_slice(&hex8(half as u32));
        }
        out
    }
}

/// The 8 lowercase hex digits of `x`, most significant first, computed a
/// word at a time (a digit per byte; no table, no per-digit branch).
fn hex8(x: u32) -> [u8; 8] {
    let mut n = u64::from(x);
    // Spread the nibbles so that byte k holds nibble k.
    n = (n | (n << 16)) & 0x0000_ffff_0000_ffff;
    n = (n | (n << 8)) & 0x00ff_00ff_00ff_00ff;
    n = (n | (n << 4)) & 0x0f0f_0f0f_0f0f_0f0f;
    // 1 in each byte whose nibble is 10 or more (no carry between bytes).
    let letters = ((n + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    let ascii = n + 0x3030_3030_3030_3030 + letters * u64::from(b'a' - b'0' - 10);
    ascii.to_be_bytes()
}

/// splitmix64's finalizer: a bijection on u64 with good avalanche.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests;
