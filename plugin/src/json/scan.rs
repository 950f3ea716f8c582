//! An incremental JSON scanner that finds the values of a few top-level keys
//! (`model`, `usage`, …) without building the document.
//!
//! Usage sits at the top level of every provider's response, next to payloads
//! that can be megabytes (embedding vectors, long completions). The scanner
//! walks the bytes once, across chunk boundaries, tracking only nesting depth
//! and string state, and reports where the wanted values start and end; the
//! caller keeps just those bytes and deserializes them with serde.
//!
//! "Top level" means the members of the top-level object or, when the document
//! is an array (Gemini's non-SSE `streamGenerateContent`), the members of each
//! element object; a later occurrence replaces an earlier one.
//!
//! It checks the structure it needs (balanced containers, one top-level value,
//! no truncation) but is not a validator: the captured values are parsed by
//! serde, which rejects anything malformed inside them.

use crate::json::is_ws;
use std::ops::Range;

/// Longest key compared; longer keys can never be one we look for.
const MAX_KEY: usize = 32;

/// A value boundary, as an index into the slice given to `Scanner::scan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// The value of `keys[key]` starts at `at`.
    Start { key: usize, at: usize },
    /// The value being captured ended just before `at` (may include trailing whitespace).
    End { at: usize },
}

/// The scanning state machine. Feed it consecutive slices of one document.
#[derive(Debug, Clone)]
pub struct Scanner {
    keys: &'static [&'static str],
    depth: u32,
    /// Depth whose object members are "top level" (0 until the first byte).
    record_depth: u32,
    record_is_object: bool,
    in_string: bool,
    escape: Escape,
    string_is_key: bool,
    key_buf: [u8; MAX_KEY],
    key_len: usize,
    /// The key read so far can name no wanted key (longer than `MAX_KEY`,
    /// or a broken `\u` escape).
    key_void: bool,
    /// At record depth inside an object, the next string is a key.
    expect_key: bool,
    /// Key just read is wanted; its value follows the `:`.
    pending_key: Option<usize>,
    /// Saw `:` after a wanted key; the next non-whitespace byte starts the value.
    await_value: Option<usize>,
    capturing: bool,
    /// The top-level value is closed.
    done: bool,
    invalid: bool,
}

impl Scanner {
    pub fn new(keys: &'static [&'static str]) -> Self {
        Scanner {
            keys,
            depth: 0,
            record_depth: 0,
            record_is_object: false,
            in_string: false,
            escape: Escape::None,
            string_is_key: false,
            key_buf: [0; MAX_KEY],
            key_len: 0,
            key_void: false,
            expect_key: false,
            pending_key: None,
            await_value: None,
            capturing: false,
            done: false,
            invalid: false,
        }
    }

    /// The whole document was seen and its structure is sound.
    pub fn complete(&self) -> bool {
        self.done && !self.invalid && !self.in_string
    }

    /// The bytes cannot be the JSON document we expect.
    pub fn invalid(&self) -> bool {
        self.invalid
    }

    /// A wanted value is open at the end of the last slice.
    pub fn capturing(&self) -> bool {
        self.capturing
    }

    /// Scan the next slice of the document, reporting value boundaries to `sink`.
    pub fn scan(&mut self, bytes: &[u8], mut sink: impl FnMut(Mark)) {
        let mut i = 0;
        while i < bytes.len() && !self.invalid {
            let rest = bytes.get(i..).unwrap_or_default();
            if self.in_string {
                i += self.scan_string(rest);
                continue;
            }
            if self.depth > self.record_depth && self.await_value.is_none() {
                // Deep inside a value nothing but nesting and strings matter:
                // skip numbers, literals and separators in one pass.
                match crate::json::bytes::find_structural(rest) {
                    Some(p) => i += p,
                    None => return,
                }
            }
            let Some(&b) = bytes.get(i) else { break };
            self.structural(b, i, &mut sink);
            i += 1;
        }
    }

    /// Consume string bytes; returns how many were used.
    fn scan_string(&mut self, rest: &[u8]) -> usize {
        match self.escape {
            Escape::None => {}
            Escape::Started => {
                self.escape = Escape::None;
                let Some(&b) = rest.first() else { return 0 };
                if b == b'u' && self.string_is_key {
                    self.escape = Escape::Unicode { unit: 0, left: 4 };
                } else {
                    self.push_key(&[unescaped(b)]);
                }
                return 1;
            }
            Escape::Unicode { unit, left } => {
                let Some(digit) = rest.first().and_then(|&b| char::from(b).to_digit(16)) else {
                    // Not JSON: such a key names nothing; the byte is read
                    // as string bytes again (it may close the string).
                    self.escape = Escape::None;
                    self.key_void = true;
                    return 0;
                };
                let unit = unit << 4 | digit;
                self.escape = if left > 1 {
                    Escape::Unicode {
                        unit,
                        left: left - 1,
                    }
                } else {
                    let mut utf8 = [0u8; 4];
                    // A surrogate half (of a character past U+FFFF) is kept
                    // as a byte no UTF-8 text holds: such a key names none
                    // of the (BMP) keys the filter reads.
                    let decoded = char::from_u32(unit)
                        .map_or(&[0xFF][..], |c| c.encode_utf8(&mut utf8).as_bytes());
                    self.push_key(decoded);
                    Escape::None
                };
                return 1;
            }
        }
        match crate::json::bytes::find_quote_or_backslash(rest) {
            None => {
                self.push_key(rest);
                rest.len()
            }
            Some(p) => {
                self.push_key(rest.get(..p).unwrap_or_default());
                if rest.get(p) == Some(&b'\\') {
                    self.escape = Escape::Started;
                } else {
                    self.in_string = false;
                    if self.string_is_key {
                        self.end_key();
                    }
                }
                p + 1
            }
        }
    }

    fn push_key(&mut self, bytes: &[u8]) {
        if !self.string_is_key || bytes.is_empty() {
            return;
        }
        let end = self.key_len + bytes.len();
        match self.key_buf.get_mut(self.key_len..end) {
            Some(dst) if !self.key_void => {
                dst.copy_from_slice(bytes);
                self.key_len = end;
            }
            _ => self.key_void = true,
        }
    }

    fn end_key(&mut self) {
        self.string_is_key = false;
        self.expect_key = false;
        let key = self.key_buf.get(..self.key_len).unwrap_or_default();
        self.pending_key = if self.key_void {
            None
        } else {
            self.keys.iter().position(|k| k.as_bytes() == key)
        };
    }

    fn start_value(&mut self, at: usize, sink: &mut impl FnMut(Mark)) {
        if let Some(key) = self.await_value.take() {
            self.capturing = true;
            sink(Mark::Start { key, at });
        }
    }

    fn end_value(&mut self, at: usize, sink: &mut impl FnMut(Mark)) {
        if self.capturing {
            self.capturing = false;
            sink(Mark::End { at });
        }
    }

    fn structural(&mut self, b: u8, at: usize, sink: &mut impl FnMut(Mark)) {
        match b {
            b if is_ws(b) => {}
            b'"' => {
                if self.done || self.depth == 0 {
                    self.invalid = true;
                    return;
                }
                self.start_value(at, sink);
                self.in_string = true;
                self.string_is_key =
                    self.expect_key && self.record_is_object && self.depth == self.record_depth;
                self.key_len = 0;
                self.key_void = false;
            }
            b'{' | b'[' => {
                if self.done {
                    self.invalid = true;
                    return;
                }
                self.start_value(at, sink);
                self.depth = self.depth.saturating_add(1);
                if self.record_depth == 0 {
                    // The first byte decides where the keys live.
                    self.record_depth = if b == b'{' { 1 } else { 2 };
                }
                if self.depth == self.record_depth {
                    self.record_is_object = b == b'{';
                    self.expect_key = self.record_is_object;
                    self.pending_key = None;
                }
            }
            b'}' | b']' => {
                if self.depth == 0 {
                    self.invalid = true;
                    return;
                }
                if self.depth == self.record_depth {
                    self.end_value(at, sink);
                    self.pending_key = None;
                    self.await_value = None;
                }
                self.depth -= 1;
                if self.depth == 0 {
                    self.done = true;
                }
            }
            b',' => {
                if self.depth == self.record_depth {
                    self.end_value(at, sink);
                    self.expect_key = self.record_is_object;
                    self.pending_key = None;
                }
            }
            b':' => {
                if self.depth == self.record_depth && self.await_value.is_none() {
                    self.await_value = self.pending_key.take();
                }
            }
            _ => {
                if self.depth == 0 {
                    // Only an object or an array can carry usage.
                    self.invalid = true;
                    return;
                }
                self.start_value(at, sink);
            }
        }
    }
}

/// Where the scanner is in a string's escape sequence. Keys are compared
/// as the provider's parser reads them, escapes decoded (`"str\u0065am"`
/// is `stream`), so a client cannot hide a key from the filter by
/// spelling it with escapes. Values' escapes are left to serde.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escape {
    None,
    /// Just after a `\`.
    Started,
    /// In a key's `\uXXXX`: the code unit so far and the hex digits left.
    Unicode {
        unit: u32,
        left: u8,
    },
}

/// The byte a one-character JSON escape stands for (`\n` → newline).
fn unescaped(b: u8) -> u8 {
    match b {
        b'b' => 0x08,
        b'f' => 0x0C,
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        other => other,
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !is_ws(*b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ws(*b))
        .map_or(start, |p| p + 1);
    bytes.get(start..end).unwrap_or_default()
}

/// Ranges of the top-level values of `keys` in a complete document (last
/// occurrence wins), or None when the bytes are not one complete JSON
/// object/array. Allocation-free.
pub fn top_level_ranges<const N: usize>(
    bytes: &[u8],
    keys: &'static [&'static str; N],
) -> Option<[Option<Range<usize>>; N]> {
    ranges_of(bytes, keys)
}

/// `top_level_ranges` for `keys` as a slice; keys past `N` are never found.
/// The members walk (`json_fast`) answers the documents it reads exactly;
/// the byte scanner decides the rest (arrays, escaped keys, malformed bytes).
fn ranges_of<const N: usize>(
    bytes: &[u8],
    keys: &'static [&'static str],
) -> Option<[Option<Range<usize>>; N]> {
    crate::json::fast::top_level_ranges(bytes, keys).or_else(|| scanned_ranges(bytes, keys))
}

/// `top_level_ranges` by the byte scanner alone (the reference the members
/// walk is tested against).
pub fn scanned_ranges<const N: usize>(
    bytes: &[u8],
    keys: &'static [&'static str],
) -> Option<[Option<Range<usize>>; N]> {
    let mut scanner = Scanner::new(keys);
    let mut found: [Option<Range<usize>>; N] = std::array::from_fn(|_| None);
    let mut open: Option<(usize, usize)> = None;
    scanner.scan(bytes, |mark| match mark {
        Mark::Start { key, at } => open = Some((key, at)),
        Mark::End { at } => {
            if let Some((key, start)) = open.take() {
                if let Some(slot) = found.get_mut(key) {
                    *slot = Some(start..at);
                }
            }
        }
    });
    if !scanner.complete() {
        return None;
    }
    for range in found.iter_mut().flatten() {
        let value = bytes.get(range.clone()).unwrap_or_default();
        let lead = value.iter().take_while(|b| is_ws(**b)).count();
        let start = range.start + lead;
        *range = start..start + trim(value).len();
    }
    Some(found)
}

/// Most keys a parser asks the JSON scanner for (every parser asks for two).
pub const MAX_KEYS: usize = 4;

/// Like `top_level`, for a key list known only as a slice (a parser's
/// `json_keys`); keys past `MAX_KEYS` are never found.
pub fn top_level_of<'a>(
    bytes: &'a [u8],
    keys: &'static [&'static str],
) -> Option<[Option<&'a [u8]>; MAX_KEYS]> {
    let ranges = ranges_of::<MAX_KEYS>(bytes, keys)?;
    Some(ranges.map(|r| r.and_then(|r| bytes.get(r))))
}

/// `top_level_of` by the byte scanner alone, for a document the members
/// walk already refused.
pub fn scanned_of<'a>(
    bytes: &'a [u8],
    keys: &'static [&'static str],
) -> Option<[Option<&'a [u8]>; MAX_KEYS]> {
    let ranges = scanned_ranges::<MAX_KEYS>(bytes, keys)?;
    Some(ranges.map(|r| r.and_then(|r| bytes.get(r))))
}

/// The top-level values of `keys` in a complete document, borrowed from it.
pub fn top_level<'a, const N: usize>(
    bytes: &'a [u8],
    keys: &'static [&'static str; N],
) -> Option<[Option<&'a [u8]>; N]> {
    let ranges = top_level_ranges(bytes, keys)?;
    Some(ranges.map(|r| r.and_then(|r| bytes.get(r))))
}

/// Scans a document arriving in chunks and keeps only the wanted values,
/// each bounded by `limit` bytes.
#[derive(Debug, Clone)]
pub struct CaptureScanner {
    scanner: Scanner,
    values: Vec<Vec<u8>>,
    seen: Vec<bool>,
    active: Option<usize>,
    limit: usize,
    overflow: bool,
}

impl CaptureScanner {
    pub fn new(keys: &'static [&'static str], limit: usize) -> Self {
        CaptureScanner {
            scanner: Scanner::new(keys),
            values: keys.iter().map(|_| Vec::new()).collect(),
            seen: keys.iter().map(|_| false).collect(),
            active: None,
            limit,
            overflow: false,
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        let CaptureScanner {
            scanner,
            values,
            seen,
            active,
            limit,
            overflow,
        } = self;
        let mut start = 0;
        let mut keep = |values: &mut Vec<Vec<u8>>, key: usize, range: Range<usize>| {
            let (Some(buf), Some(part)) = (values.get_mut(key), chunk.get(range)) else {
                return;
            };
            if buf.len() + part.len() > *limit {
                *overflow = true;
                buf.clear();
            } else {
                buf.extend_from_slice(part);
            }
        };
        scanner.scan(chunk, |mark| match mark {
            Mark::Start { key, at } => {
                if let Some(buf) = values.get_mut(key) {
                    buf.clear();
                }
                if let Some(flag) = seen.get_mut(key) {
                    *flag = true;
                }
                *active = Some(key);
                start = at;
            }
            Mark::End { at } => {
                if let Some(key) = active.take() {
                    keep(values, key, start..at);
                }
            }
        });
        if let Some(key) = *active {
            keep(values, key, start..chunk.len());
        }
    }

    /// The document ended well-formed.
    pub fn complete(&self) -> bool {
        self.scanner.complete()
    }

    /// A wanted value exceeded the limit and was dropped.
    pub fn overflowed(&self) -> bool {
        self.overflow
    }

    /// The captured value of `keys[key]`, trimmed; None when the key was absent.
    pub fn value(&self, key: usize) -> Option<&[u8]> {
        if !self.seen.get(key).copied().unwrap_or(false) {
            return None;
        }
        self.values.get(key).map(|v| trim(v))
    }
}

/// True when a JSON value (already trimmed) is `null`.
pub fn is_null(value: &[u8]) -> bool {
    value == b"null"
}

/// True when a JSON value is an empty array (`[]`, whitespace allowed).
pub fn is_empty_array(value: &[u8]) -> bool {
    value.first() == Some(&b'[')
        && value.last() == Some(&b']')
        && trim(
            value
                .get(1..value.len().saturating_sub(1))
                .unwrap_or_default(),
        )
        .is_empty()
        && value.len() >= 2
}

/// Position of `needle` in `haystack`, a cheap pre-filter before parsing.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, tail) = needle.split_first()?;
    let mut from = 0;
    while let Some(p) = haystack
        .get(from..)
        .and_then(|h| h.iter().position(|&b| b == first))
    {
        let at = from + p;
        if haystack.get(at + 1..at + needle.len()) == Some(tail) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// True when `"key"` occurs followed by `:` and a `{` (an object value),
/// ignoring whitespace. Text inside JSON strings cannot match because its
/// quotes are escaped, so this only finds real keys (at any depth).
pub fn has_object_member(json: &[u8], quoted_key: &[u8]) -> bool {
    let mut from = 0;
    while let Some(p) = json.get(from..).and_then(|h| find(h, quoted_key)) {
        let after = from + p + quoted_key.len();
        let mut rest = json
            .get(after..)
            .unwrap_or_default()
            .iter()
            .copied()
            .skip_while(|b| is_ws(*b));
        if rest.next() == Some(b':') && rest.find(|b| !is_ws(*b)) == Some(b'{') {
            return true;
        }
        from = after;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &[&str; 2] = &["model", "usage"];

    #[test]
    fn finds_top_level_values_only() {
        let doc = br#"{"data":[{"model":"inner","usage":1}],"model" : "gpt-4o" ,"usage":{"a":[1,{"b":"}"}]}}"#;
        let [model, usage] = top_level(doc, KEYS).unwrap();
        assert_eq!(model, Some(&b"\"gpt-4o\""[..]));
        assert_eq!(usage, Some(&br#"{"a":[1,{"b":"}"}]}"#[..]));
    }

    #[test]
    fn escaped_quotes_do_not_end_strings() {
        let doc = br#"{"text":"say \"usage\": {","usage":{"n":2}}"#;
        let [model, usage] = top_level(doc, KEYS).unwrap();
        assert_eq!(model, None);
        assert_eq!(usage, Some(&br#"{"n":2}"#[..]));
        assert!(!has_object_member(
            br#"{"text":"say \"usage\": {"}"#,
            b"\"usage\""
        ));
        assert!(has_object_member(br#"{"usage" :  {"n":1}}"#, b"\"usage\""));
        assert!(!has_object_member(br#"{"usage":null}"#, b"\"usage\""));
    }

    const REQUEST: &[&str; 3] = &["model", "stream", "stream_options"];

    #[test]
    fn escaped_keys_are_read_as_decoded() {
        let doc = br#"{"mod\u0065l":"m","\u0073tr\u0065am":true,"stream\u005Foptions":{"a":1},"str\neam":2}"#;
        let [model, stream, options] = top_level(doc, REQUEST).unwrap();
        assert_eq!(model, Some(&b"\"m\""[..]));
        assert_eq!(stream, Some(&b"true"[..]));
        assert_eq!(options, Some(&br#"{"a":1}"#[..]));
        // A broken `\u` escape names nothing; the rest still reads.
        for doc in [
            &br#"{"str\u00zzam":true,"model":"m"}"#[..],
            br#"{"stream\u00":true,"model":"m"}"#,
        ] {
            let [model, stream, _] = top_level(doc, REQUEST).unwrap();
            assert_eq!((model, stream), (Some(&b"\"m\""[..]), None));
        }
        // Non-ASCII and surrogate escapes are other keys.
        let doc = br#"{"stre\u00e1m":1,"stream\ud83d\ude00":2,"stream":3}"#;
        assert_eq!(top_level(doc, REQUEST).unwrap()[1], Some(&b"3"[..]));
        // Escapes in values are the values' own business.
        let doc = br#"{"model":"a\u0022b","stream":false}"#;
        let [model, stream, _] = top_level(doc, REQUEST).unwrap();
        assert_eq!(model, Some(&br#""a\u0022b""#[..]));
        assert_eq!(stream, Some(&b"false"[..]));
    }

    proptest::proptest! {
        /// Whatever escapes a client writes its keys with, the scanner
        /// finds the values a JSON parser (serde_json, as the provider's)
        /// reads, wherever the chunks are cut.
        #[test]
        fn keys_read_as_a_parser_reads_them(
            members in proptest::collection::btree_map(
                proptest::sample::select(vec!["model", "stream", "stream_options", "messages", "str", "streams"]),
                0u32..1000,
                0..6,
            ),
            escapes in proptest::collection::vec(0u8..4, 64),
            cut in 0usize..200,
        ) {
            let mut doc = String::from("{");
            let mut n = 0;
            for (i, (key, value)) in members.iter().enumerate() {
                if i > 0 {
                    doc.push(',');
                }
                doc.push('"');
                for c in key.chars() {
                    n += 1;
                    match escapes.get(n % escapes.len()) {
                        Some(0) => doc.push_str(&format!("\\u{:04x}", u32::from(c))),
                        Some(1) => doc.push_str(&format!("\\u{:04X}", u32::from(c))),
                        _ => doc.push(c),
                    }
                }
                doc.push_str(&format!("\":{value}"));
            }
            doc.push('}');
            let parsed: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&doc).unwrap();
            let bytes = doc.as_bytes();
            let found = top_level(bytes, REQUEST).unwrap();
            let (a, b) = bytes.split_at(cut.min(bytes.len()));
            let mut cap = CaptureScanner::new(REQUEST, 64);
            cap.feed(a);
            cap.feed(b);
            for (i, key) in REQUEST.iter().enumerate() {
                let want = parsed.get(*key).map(|v| v.to_string().into_bytes());
                proptest::prop_assert_eq!(found[i].map(<[u8]>::to_vec), want.clone(), "{}", doc);
                proptest::prop_assert_eq!(cap.value(i).map(<[u8]>::to_vec), want, "{}", doc);
            }
        }
    }

    #[test]
    fn arrays_of_objects_keep_the_last_value() {
        let doc = br#"[{"usage":{"n":1}},{"model":"m"},{"usage":{"n":3}}]"#;
        let [model, usage] = top_level(doc, KEYS).unwrap();
        assert_eq!(model, Some(&b"\"m\""[..]));
        assert_eq!(usage, Some(&br#"{"n":3}"#[..]));
    }

    #[test]
    fn rejects_non_json_and_truncation() {
        assert!(top_level(b"<html>oops</html>", KEYS).is_none());
        assert!(top_level(br#"{"usage":{"n":1}"#, KEYS).is_none());
        assert!(top_level(br#"{"a":"unterminated}"#, KEYS).is_none());
        assert!(top_level(br#"{"a":1}}"#, KEYS).is_none());
        assert!(top_level(br#"{"a":1} x"#, KEYS).is_none());
        assert!(top_level(b"", KEYS).is_none());
        assert!(top_level(b"42", KEYS).is_none());
    }

    #[test]
    fn scalar_values_are_trimmed() {
        let doc = b"{ \"model\" :\n \"x\" \n, \"usage\": 12 }";
        let [model, usage] = top_level(doc, KEYS).unwrap();
        assert_eq!(model, Some(&b"\"x\""[..]));
        assert_eq!(usage, Some(&b"12"[..]));
    }

    #[test]
    fn capture_scanner_is_split_invariant() {
        let doc = br#"{"id":"x","data":[{"embedding":[0.1,-0.2,3e-5]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}"#;
        for cut in 0..=doc.len() {
            let (a, b) = doc.split_at(cut);
            let mut cap = CaptureScanner::new(KEYS, 1024);
            cap.feed(a);
            cap.feed(b);
            assert!(cap.complete(), "cut {cut}");
            assert_eq!(cap.value(0), Some(&b"\"text-embedding-3-small\""[..]));
            assert_eq!(
                cap.value(1),
                Some(&br#"{"prompt_tokens":8,"total_tokens":8}"#[..])
            );
        }
    }

    #[test]
    fn capture_scanner_bounds_values() {
        let mut cap = CaptureScanner::new(KEYS, 8);
        cap.feed(br#"{"usage":{"prompt_tokens":8}}"#);
        assert!(cap.overflowed());
        assert!(cap.complete());
    }

    #[test]
    fn empty_array_and_find() {
        assert!(is_empty_array(b"[]"));
        assert!(is_empty_array(b"[ \n ]"));
        assert!(!is_empty_array(b"[1]"));
        assert!(!is_empty_array(b"["));
        assert_eq!(find(b"abcabd", b"abd"), Some(3));
        assert_eq!(find(b"ab", b"abc"), None);
    }
}
