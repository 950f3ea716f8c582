//! What the filter needs from its host, as a trait: the glue implements it
//! over proxy-wasm hostcalls, tests implement it in memory (`memory`, built
//! for tests and with the `testing` feature); `profile` holds every way
//! Envoy and Kong differ. Every
//! call is fallible on the host side; the trait absorbs failures into
//! `Option`/`Result` so nothing here can trap the VM.

#[cfg(any(test, feature = "testing"))]
pub mod memory;
pub mod profile;

/// The counters the filter exports (Envoy shows them as `wasmcustom.<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    RecordsEmitted,
    RecordsShipped,
    RecordsRetried,
    RecordsDropped,
    ShipFailures,
    Denied401,
    Denied400,
    Requests,
    Denied402,
    Denied429,
    Denied503,
    CapsPolls,
    CapsPollFailures,
    CapsStale,
    CapsUnenforced,
    LimitsUnenforced,
    RecordsRejected,
    Denied404,
    ConfigWarnings,
    Denied413,
    RegistryPolls,
    RegistryUpdates,
    RegistryRejected,
    RegistryPollFailures,
    RegistryStale,
}

impl Metric {
    pub const ALL: [Metric; 25] = [
        Metric::RecordsEmitted,
        Metric::RecordsShipped,
        Metric::RecordsRetried,
        Metric::RecordsDropped,
        Metric::ShipFailures,
        Metric::Denied401,
        Metric::Denied400,
        Metric::Requests,
        Metric::Denied402,
        Metric::Denied429,
        Metric::Denied503,
        Metric::CapsPolls,
        Metric::CapsPollFailures,
        Metric::CapsStale,
        Metric::CapsUnenforced,
        Metric::LimitsUnenforced,
        Metric::RecordsRejected,
        Metric::Denied404,
        Metric::ConfigWarnings,
        Metric::Denied413,
        Metric::RegistryPolls,
        Metric::RegistryUpdates,
        Metric::RegistryRejected,
        Metric::RegistryPollFailures,
        Metric::RegistryStale,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::RecordsEmitted => "aispend_records_emitted",
            Metric::RecordsShipped => "aispend_records_shipped",
            Metric::RecordsRetried => "aispend_records_retried",
            Metric::RecordsDropped => "aispend_records_dropped",
            Metric::ShipFailures => "aispend_ship_failures",
            Metric::Denied401 => "aispend_denied_401",
            Metric::Denied400 => "aispend_denied_400",
            Metric::Requests => "aispend_requests",
            Metric::Denied402 => "aispend_denied_402",
            Metric::Denied429 => "aispend_denied_429",
            Metric::Denied503 => "aispend_denied_503",
            Metric::CapsPolls => "aispend_caps_polls",
            Metric::CapsPollFailures => "aispend_caps_poll_failures",
            Metric::CapsStale => "aispend_caps_stale",
            Metric::CapsUnenforced => "aispend_caps_unenforced",
            Metric::LimitsUnenforced => "aispend_limits_unenforced",
            Metric::RecordsRejected => "aispend_records_rejected",
            Metric::Denied404 => "aispend_denied_404",
            Metric::ConfigWarnings => "aispend_config_warnings",
            Metric::Denied413 => "aispend_denied_413",
            Metric::RegistryPolls => "aispend_registry_polls",
            Metric::RegistryUpdates => "aispend_registry_updates",
            Metric::RegistryRejected => "aispend_registry_rejected",
            Metric::RegistryPollFailures => "aispend_registry_poll_failures",
            Metric::RegistryStale => "aispend_registry_stale",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// The host refused to start an HTTP call (unknown cluster, bad target).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DispatchError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedDataError {
    /// Someone else wrote the key since our read (retry with a fresh cas).
    CasMismatch,
    Other,
}

/// A header map as the host hands it over, kept as the bytes the host wrote
/// plus the length of every name and value, and read in place: a request
/// costs a few allocations here, not two per header, and no copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderBlock {
    /// From `base` on: `name\0value\0name\0value\0…` (header fields cannot
    /// contain NUL). Before it: the wire form's count and lengths.
    bytes: Vec<u8>,
    base: usize,
    /// (name length, value length) per header, in order.
    lens: Vec<(u32, u32)>,
    /// Every byte from `base` on is ASCII: any range of them is a `str`.
    /// Otherwise they are valid UTF-8 cut only at NULs (checked per slice).
    ascii: bool,
}

impl HeaderBlock {
    /// From proxy-wasm's serialized map: a u32 count, `count` pairs of u32
    /// lengths, then every name and value each followed by a NUL. Values
    /// that are not UTF-8 are read lossily (as a per-header copy would be).
    pub fn from_wire(mut bytes: Vec<u8>) -> Self {
        let count = bytes
            .first_chunk::<4>()
            .map_or(0, |w| u32::from_le_bytes(*w)) as usize;
        let start = count.saturating_mul(8).saturating_add(4);
        let Some(table) = bytes.get(4..start).filter(|_| count > 0) else {
            return HeaderBlock::default();
        };
        let lens: Vec<(u32, u32)> = table
            .chunks_exact(8)
            .map(|pair| {
                let w = pair
                    .first_chunk::<8>()
                    .map_or(0, |w| u64::from_le_bytes(*w));
                (w as u32, (w >> 32) as u32)
            })
            .collect();
        let expected: usize = lens.iter().fold(0usize, |sum, &(n, v)| {
            sum.saturating_add(n as usize)
                .saturating_add(v as usize)
                .saturating_add(2)
        });
        let text = bytes.get(start..).unwrap_or_default();
        if text.len() == expected && is_ascii(text) {
            // Read where the host wrote it: the lengths add up to the
            // bytes, which are all ASCII (this check costs a quarter of
            // `from_utf8`'s on wasm32). Header maps are ASCII in practice.
            return HeaderBlock {
                bytes,
                base: start,
                lens,
                ascii: true,
            };
        }
        bytes.drain(..start);
        match String::from_utf8(bytes) {
            Ok(text) if text.len() == expected => HeaderBlock {
                ascii: text.is_ascii(),
                bytes: text.into_bytes(),
                base: 0,
                lens,
            },
            Ok(text) => Self::from_nul_separated(text),
            Err(e) => Self::from_nul_separated(String::from_utf8_lossy(e.as_bytes()).into_owned()),
        }
    }

    /// Lengths found by scanning for the NULs (lossy or inconsistent input).
    fn from_nul_separated(text: String) -> Self {
        let mut lens = Vec::new();
        let mut parts = text.split('\0');
        while let (Some(n), Some(v)) = (parts.next(), parts.next()) {
            lens.push((n.len() as u32, v.len() as u32));
        }
        HeaderBlock {
            ascii: text.is_ascii(),
            bytes: text.into_bytes(),
            base: 0,
            lens,
        }
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut text = String::new();
        let mut lens = Vec::new();
        for (name, value) in pairs {
            for part in [name, value] {
                text.push_str(part);
                text.push('\0');
            }
            lens.push((name.len() as u32, value.len() as u32));
        }
        HeaderBlock {
            ascii: text.is_ascii(),
            bytes: text.into_bytes(),
            base: 0,
            lens,
        }
    }

    /// The (name, value) pairs in order, borrowed from the block.
    pub fn pairs(&self) -> Vec<(&str, &str)> {
        let mut out = Vec::with_capacity(self.lens.len());
        let mut rest = self.bytes.get(self.base..).unwrap_or_default();
        let ascii = self.ascii;
        for &(n, v) in &self.lens {
            let (n, v) = (n as usize, v as usize);
            // `name\0value\0`
            let value_at = n.saturating_add(1);
            let next = value_at.saturating_add(v).saturating_add(1);
            let (Some(name), Some(value)) = (
                rest.get(..n).and_then(|b| as_text(b, ascii)),
                rest.get(value_at..next - 1).and_then(|b| as_text(b, ascii)),
            ) else {
                break;
            };
            out.push((name, value));
            rest = rest.get(next..).unwrap_or_default();
        }
        out
    }

    /// First value of `name` (names are lowercase on both hosts). Only
    /// names of the same length are compared.
    pub fn get(&self, name: &str) -> Option<&str> {
        let [value] = self.get_each([name]);
        value
    }

    /// The first value of each of `names`, in one pass over the block (a
    /// response's `:status` and `content-type` together: one loop's code,
    /// not one per name).
    pub fn get_each<const N: usize>(&self, names: [&str; N]) -> [Option<&str>; N] {
        let mut found = [None; N];
        let Some(mut rest) = self.bytes.get(self.base..) else {
            return found;
        };
        for &(n, v) in &self.lens {
            let (n, v) = (n as usize, v as usize);
            let next = n.saturating_add(v).saturating_add(2);
            for (name, slot) in names.iter().zip(found.iter_mut()) {
                if slot.is_some() || n != name.len() {
                    continue;
                }
                let candidate = rest.get(..n).and_then(|c| as_text(c, self.ascii));
                if candidate.is_some_and(|c| crate::ascii::eq_ignore_case(c, name)) {
                    *slot = rest
                        .get(n + 1..next - 1)
                        .and_then(|v| as_text(v, self.ascii));
                }
            }
            match rest.get(next..) {
                Some(r) => rest = r,
                None => break,
            }
        }
        found
    }

    /// Which of `items`' names (the first 64) the block holds, as bits (bit
    /// `i` for `items[i]`), in one pass over the block.
    pub fn present<T>(&self, items: &[T], name_of: impl Fn(&T) -> &str) -> u64 {
        let items = items.get(..64).unwrap_or(items);
        // The names' lengths (mod 64) as bits: most headers are passed over
        // on their length alone.
        let lengths = items
            .iter()
            .fold(0u64, |m, item| m | 1 << (name_of(item).len() % 64));
        let mut bits = 0u64;
        let Some(mut rest) = self.bytes.get(self.base..) else {
            return 0;
        };
        for &(n, v) in &self.lens {
            let (n, v) = (n as usize, v as usize);
            let next = n.saturating_add(v).saturating_add(2);
            if lengths >> (n % 64) & 1 == 1 {
                let mut bit = 1u64;
                for item in items {
                    let name = name_of(item);
                    if name.len() == n
                        && rest
                            .get(..n)
                            .is_some_and(|c| c.eq_ignore_ascii_case(name.as_bytes()))
                    {
                        bits |= bit;
                    }
                    bit <<= 1;
                }
            }
            match rest.get(next..) {
                Some(r) => rest = r,
                None => break,
            }
        }
        bits
    }
}

/// Bytes of a `HeaderBlock` as text: as they are when the block is ASCII.
#[inline(always)]
fn as_text(bytes: &[u8], ascii: bool) -> Option<&str> {
    if ascii {
        // SAFETY: the caller's block is all ASCII from its `base` on.
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes).ok()
    }
}

/// Whether every byte is ASCII: 16 at a time (SIMD builds) or eight.
fn is_ascii(bytes: &[u8]) -> bool {
    // 16 bytes at a time with SIMD: the sign bits of the OR of every block
    // (the last block overlapping when the length is not a multiple of 16).
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if let Some(last) = bytes.len().checked_sub(16).and_then(|at| bytes.get(at..)) {
        use core::arch::wasm32::*;
        // SAFETY (both loads): each chunk is 16 readable bytes; v128 loads
        // need no alignment.
        let mut high = unsafe { v128_load(last.as_ptr().cast::<v128>()) };
        for block in bytes.chunks_exact(16) {
            high = v128_or(high, unsafe { v128_load(block.as_ptr().cast::<v128>()) });
        }
        return i8x16_bitmask(high) == 0;
    }
    let mut words = bytes.chunks_exact(8);
    let mut high = 0u64;
    for w in &mut words {
        let mut word = [0u8; 8];
        word.copy_from_slice(w);
        high |= u64::from_le_bytes(word);
    }
    for &b in words.remainder() {
        high |= u64::from(b);
    }
    high & 0x8080_8080_8080_8080 == 0
}

/// Host services used by the per-request flow and the root context.
pub trait Host {
    /// All request headers (lowercase names).
    fn request_headers(&mut self) -> HeaderBlock;
    /// Set (`Some`: overwrite, or add when absent) or remove (`None`) a
    /// request header. Never a whole-map write (see `profile`).
    fn set_request_header(&mut self, name: &str, value: Option<&str>);
    /// Add a request header the request does not have (no search for a
    /// copy to overwrite).
    fn add_request_header(&mut self, name: &str, value: &str);
    /// Set a writable host property (Kong: `request.query`); false when the
    /// host refused it.
    fn set_property(&mut self, path: &[&str], value: &[u8]) -> bool;
    /// All response headers, in one hostcall (cheaper than one per name).
    fn response_headers(&mut self) -> HeaderBlock;
    fn add_response_header(&mut self, name: &str, value: &str);
    /// Set a response header: every value the upstream sent under `name`
    /// gives way to this one.
    fn replace_response_header(&mut self, name: &str, value: &str);
    /// `size` bytes of the (buffered) request body from its start.
    fn request_body(&mut self, size: usize) -> Option<Vec<u8>>;
    fn replace_request_body(&mut self, body: &[u8]);
    /// The current response body chunk.
    fn response_body(&mut self, size: usize) -> Option<Vec<u8>>;
    fn replace_response_body(&mut self, body: &[u8]);
    /// Answer locally instead of going upstream.
    fn send_response(&mut self, status: u32, headers: &[(&str, &str)], body: &[u8]);
    /// A host property (`["metadata", "filter_metadata", …]`), raw bytes.
    fn property(&mut self, path: &[&str]) -> Option<Vec<u8>>;
    /// Wall clock, milliseconds since the Unix epoch.
    fn now_ms(&mut self) -> u64;
    fn increment_metric(&mut self, metric: Metric, delta: u64);
    fn shared_data_get(&mut self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    fn shared_data_set(
        &mut self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), SharedDataError>;
    /// Start an HTTP call; the answer arrives later on the root context.
    fn dispatch(
        &mut self,
        upstream: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u32, DispatchError>;
}

#[cfg(test)]
mod tests {
    use super::HeaderBlock;

    /// proxy-wasm's serialized map for `pairs`, as a host sends it.
    fn wire(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (n, v) in pairs {
            out.extend((n.len() as u32).to_le_bytes());
            out.extend((v.len() as u32).to_le_bytes());
        }
        for (n, v) in pairs {
            for part in [n, v] {
                out.extend_from_slice(part);
                out.push(0);
            }
        }
        out
    }

    #[test]
    fn reads_the_wire_form_in_place() {
        let block = HeaderBlock::from_wire(wire(&[
            (b":path", b"/v1/chat/completions"),
            (b"authorization", b"Bearer sk-1"),
            (b"x-empty", b""),
            (b"accept", b"*/*"),
        ]));
        assert_eq!(
            block.pairs(),
            [
                (":path", "/v1/chat/completions"),
                ("authorization", "Bearer sk-1"),
                ("x-empty", ""),
                ("accept", "*/*")
            ]
        );
        assert_eq!(block.get("Authorization"), Some("Bearer sk-1"));
        assert_eq!(block.get("x-empty"), Some(""));
        assert_eq!(block.get("missing"), None);
        assert_eq!(
            block.get_each(["missing", "x-empty", "authorization"]),
            [None, Some(""), Some("Bearer sk-1")]
        );
        let names = ["missing", "Accept", "x-empty", "accep"];
        assert_eq!(block.present(&names, |n| n), 0b0110);
        assert_eq!(block.present(&[] as &[&str], |n| n), 0);
        assert_eq!(
            block.pairs(),
            HeaderBlock::from_pairs(block.pairs()).pairs()
        );
    }

    #[test]
    fn bad_input_degrades_without_losing_other_headers() {
        // A value that is not UTF-8 is read lossily; its neighbours stay intact.
        let block = HeaderBlock::from_wire(wire(&[(b"a", b"x\xffy"), (b"b", b"2")]));
        assert_eq!(block.pairs(), [("a", "x\u{fffd}y"), ("b", "2")]);
        // Truncated or empty maps are empty, never a trap.
        assert!(HeaderBlock::from_wire(vec![9, 0, 0, 0, 1])
            .pairs()
            .is_empty());
        assert!(HeaderBlock::from_wire(Vec::new()).pairs().is_empty());
        // Lengths that disagree with the data: found again from the NULs.
        let mut bad = wire(&[(b"a", b"1"), (b"b", b"2")]);
        bad[4] = 9;
        assert_eq!(
            HeaderBlock::from_wire(bad).pairs(),
            [("a", "1"), ("b", "2")]
        );
    }
}
