//! Fast paths for the small JSON values read on every call: a model name and
//! the integer members of a `usage` object. serde_json costs about 4k wasm
//! instructions for a usage object of 150 bytes; these walk it once.
//!
//! They accept only what they can read exactly and answer `None` otherwise
//! (an escaped key, a number with a fraction, a duplicate wanted key, a
//! structure they do not expect); the caller then asks serde, which decides.

use crate::json::is_ws;
use std::ops::Range;

use crate::json::bytes::{
    block_masks, find_from, needs_json_escape, plain_ascii, quote_backslash_masks, BlockMasks, Set,
};
#[cfg(test)]
use crate::json::bytes::{blocks, structural_mask};

/// A JSON string without escapes (`"gpt-4o"`), borrowed.
pub fn plain_string(raw: &[u8]) -> Option<&str> {
    let inner = raw.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    if let Some(ascii) = plain_ascii(inner) {
        return Some(ascii);
    }
    if needs_json_escape(inner) {
        return None;
    }
    std::str::from_utf8(inner).ok()
}

/// A non-negative JSON integer that fits u64 (`0`, `12`; not `012`, `1.0`, `-1`).
pub fn uint(raw: &[u8]) -> Option<u64> {
    if raw.is_empty() || raw.len() > 19 || (raw.len() > 1 && raw.first() == Some(&b'0')) {
        return None;
    }
    raw.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0'))
    })
}

/// `key == lit`, for a key compared against a literal: a word (or half
/// word) at a time from both ends, so a literal known at compile time folds
/// into a couple of constant compares instead of a `memcmp` call (about ten
/// wasm instructions a byte).
#[inline(always)]
pub fn key_is(key: &[u8], lit: &[u8]) -> bool {
    let n = lit.len();
    if key.len() != n {
        return false;
    }
    if n >= 8 {
        let mut i = 0;
        while i + 8 < n {
            if word(key, i) != word(lit, i) {
                return false;
            }
            i += 8;
        }
        return word(key, n - 8) == word(lit, n - 8);
    }
    if n >= 4 {
        return half(key, 0) == half(lit, 0) && half(key, n - 4) == half(lit, n - 4);
    }
    key == lit
}

/// The 4 bytes at `at` as a little-endian word, when there are 4.
#[inline(always)]
fn half(bytes: &[u8], at: usize) -> Option<u32> {
    let chunk = bytes.get(at..)?.first_chunk::<4>()?;
    Some(u32::from_le_bytes(*chunk))
}

/// `uint_or_null_at` in one pass over the digits (what `value_end` then
/// `uint` accept, without walking the number twice).
#[inline]
fn uint_value_at(bytes: &[u8], at: usize) -> Option<(u64, usize)> {
    let first = byte(bytes, at);
    if !first.is_ascii_digit() {
        let end = value_end(bytes, at)?;
        return Some((uint_or_null(bytes.get(at..end)?)?, end));
    }
    let mut acc = u64::from(first - b'0');
    let mut i = at + 1;
    loop {
        let b = byte(bytes, i);
        if !b.is_ascii_digit() {
            break;
        }
        // At most 19 digits are accepted below, and 19 digits never
        // overflow: no checked multiply (a 128-bit multiply call on wasm32).
        acc = acc.wrapping_mul(10).wrapping_add(u64::from(b - b'0'));
        i += 1;
    }
    // `value_end` would take these into the number too: not an integer
    // `uint` reads.
    if matches!(byte(bytes, i), b'-' | b'+' | b'.' | b'a'..=b'z' | b'E') {
        return None;
    }
    let len = i - at;
    if len > 19 || (len > 1 && first == b'0') {
        return None;
    }
    Some((acc, i))
}

/// `null` as 0, else `uint`.
pub fn uint_or_null(raw: &[u8]) -> Option<u64> {
    if raw == b"null" {
        Some(0)
    } else {
        uint(raw)
    }
}

/// The byte at `at`, or 0 past the end (0 is never valid JSON outside a
/// string, so every check below refuses it).
#[inline(always)]
fn byte(bytes: &[u8], at: usize) -> u8 {
    bytes.get(at).copied().unwrap_or(0)
}

#[inline(always)]
fn skip_ws(bytes: &[u8], mut at: usize) -> usize {
    while is_ws(byte(bytes, at)) {
        at += 1;
    }
    at
}

/// The 8 bytes at `at` as a little-endian word, when there are 8.
#[inline(always)]
fn word(bytes: &[u8], at: usize) -> Option<u64> {
    let chunk = bytes.get(at..)?.first_chunk::<8>()?;
    Some(u64::from_le_bytes(*chunk))
}

/// Index of the first `"` or `\` at or after `at`.
#[inline(always)]
fn quote_or_backslash(bytes: &[u8], at: usize) -> Option<usize> {
    find_from(bytes, at, Set::QuoteOrBackslash)
}

/// Index of the first `"`, `{`, `}`, `[` or `]` at or after `at` (the
/// reference walk `container_end` is tested against).
#[cfg(test)]
fn structural(bytes: &[u8], mut at: usize) -> Option<usize> {
    match blocks(bytes.get(at..)?, Set::Structural) {
        Ok(i) => return Some(at + i),
        Err(n) => at += n,
    }
    while let Some(w) = word(bytes, at) {
        let m = structural_mask(w);
        if m != 0 {
            return Some(at + (m.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    loop {
        match bytes.get(at)? {
            b'"' | b'{' | b'}' | b'[' | b']' => return Some(at),
            _ => at += 1,
        }
    }
}

/// End (exclusive) of the string whose opening quote is at `at`, and
/// whether it holds an escape (its raw bytes are then not its text).
#[inline(always)]
fn string_end(bytes: &[u8], at: usize) -> Option<(usize, bool)> {
    // Most strings end within the 16 bytes after the opening quote, with
    // no backslash before their end: one block test.
    if let Some(block) = bytes.get(at + 1..).and_then(|r| r.first_chunk::<16>()) {
        let (quote, backslash) = quote_backslash_masks(block);
        // Bits up to and including the first quote.
        let upto = quote ^ quote.wrapping_sub(1);
        if quote != 0 && backslash & upto == 0 {
            return Some((at + 2 + quote.trailing_zeros() as usize, false));
        }
    }
    let mut i = quote_or_backslash(bytes, at + 1)?;
    if byte(bytes, i) == b'"' {
        return Some((i + 1, false));
    }
    loop {
        // A backslash and the byte it escapes.
        i = quote_or_backslash(bytes, i + 2)?;
        if byte(bytes, i) == b'"' {
            return Some((i + 1, true));
        }
    }
}

/// End (exclusive) of the object or array opening at `at`: the bracket
/// that brings the nesting back to zero, outside strings. Sixteen bytes at
/// a time: a block's quotes give which of its bytes are inside a string
/// (a prefix XOR), its brackets outside them move the depth by their
/// counts, and only a block where the depth may reach zero is walked bit by
/// bit. A block holding a backslash (an escape) is read byte by byte, as is
/// the tail under 16 bytes. Same answer as a structural walk
/// (`tests::container_end_matches_the_structural_walk`).
fn container_end(bytes: &[u8], at: usize) -> Option<usize> {
    let mut depth = 0u32;
    let mut in_string = false;
    let mut i = at;
    loop {
        // The block at `i`, or for the last 1..16 bytes the final 16 of
        // `bytes` with their masks shifted so that bit k is byte `i + k`.
        let (m, n) = match bytes.get(i..).and_then(|r| r.first_chunk::<16>()) {
            Some(block) => (block_masks(block), 16),
            None => {
                let rest = bytes.len().checked_sub(i)?;
                if rest == 0 {
                    return None;
                }
                let Some(last) = bytes
                    .get(bytes.len().wrapping_sub(16)..)
                    .and_then(|r| r.first_chunk::<16>())
                else {
                    // Under 16 bytes in all.
                    break;
                };
                let m = block_masks(last);
                let shift = 16 - rest as u32;
                let m = BlockMasks {
                    quote: m.quote >> shift,
                    backslash: m.backslash >> shift,
                    open: m.open >> shift,
                    close: m.close >> shift,
                };
                (m, rest)
            }
        };
        if m.backslash != 0 {
            let mut escaped = false;
            let stop = i + n;
            // An escape pending at the block's end takes the next byte too.
            while i < stop || escaped {
                if let Some(end) =
                    step(byte(bytes, i), i, &mut depth, &mut in_string, &mut escaped)?
                {
                    return Some(end);
                }
                i += 1;
            }
            continue;
        }
        if m.open | m.close == 0 {
            // No bracket: only whether a string is open at its end matters.
            in_string ^= m.quote.count_ones() & 1 == 1;
            i += n;
            continue;
        }
        let mut inside = m.quote;
        inside ^= inside << 1;
        inside ^= inside << 2;
        inside ^= inside << 4;
        inside ^= inside << 8;
        if in_string {
            inside = !inside;
        }
        let open = m.open & !inside;
        let close = m.close & !inside;
        in_string ^= m.quote.count_ones() & 1 == 1;
        if close.count_ones() >= depth && close != 0 {
            // The depth may reach zero here: follow the brackets in order.
            let mut both = open | close;
            while both != 0 {
                let k = both.trailing_zeros();
                let bit = 1u32 << k;
                if open & bit != 0 {
                    depth += 1;
                } else {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        return Some(i + k as usize + 1);
                    }
                }
                both &= !bit;
            }
        } else {
            depth = depth + open.count_ones() - close.count_ones();
        }
        i += n;
    }
    let mut escaped = false;
    while i < bytes.len() {
        if let Some(end) = step(byte(bytes, i), i, &mut depth, &mut in_string, &mut escaped)? {
            return Some(end);
        }
        i += 1;
    }
    None
}

/// One byte of `container_end`'s walk at index `i`: `Some(Some(end))` when
/// it closes the container, `None` when the nesting goes below zero.
#[inline(always)]
fn step(
    b: u8,
    i: usize,
    depth: &mut u32,
    in_string: &mut bool,
    escaped: &mut bool,
) -> Option<Option<usize>> {
    if *in_string {
        if *escaped {
            *escaped = false;
        } else if b == b'\\' {
            *escaped = true;
        } else if b == b'"' {
            *in_string = false;
        }
        return Some(None);
    }
    match b {
        b'"' => *in_string = true,
        b'{' | b'[' => *depth += 1,
        b'}' | b']' => {
            *depth = depth.checked_sub(1)?;
            if *depth == 0 {
                return Some(Some(i + 1));
            }
        }
        _ => {}
    }
    Some(None)
}

/// Index of the first byte at or after `at` that cannot continue a number
/// or literal token (`-+.0-9a-zE`), or the end of `bytes`: 16 bytes at a
/// time where the build has SIMD (a 10-digit timestamp then costs one
/// block test instead of a range match per digit).
#[inline(always)]
fn token_end(bytes: &[u8], at: usize) -> usize {
    find_from(bytes, at, Set::TokenEnd).unwrap_or(bytes.len().max(at))
}

/// End (exclusive) of the value starting at `at`.
#[inline(always)]
fn value_end(bytes: &[u8], at: usize) -> Option<usize> {
    match byte(bytes, at) {
        b'"' => string_end(bytes, at).map(|(end, _)| end),
        b'{' | b'[' => container_end(bytes, at),
        b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => Some(token_end(bytes, at + 1)),
        _ => None,
    }
}

/// Calls `f(key, value)` for each member of the JSON object `obj`, in order,
/// with the key's raw bytes and the value's bytes. `None` when `obj` is not
/// an object this walk reads exactly, or when `f` answers `None`.
pub fn members<'a>(
    obj: &'a [u8],
    mut f: impl FnMut(&'a [u8], &'a [u8]) -> Option<()>,
) -> Option<()> {
    let end = object_at(obj, skip_ws(obj, 0), |key, start| {
        let end = value_end(obj, start)?;
        f(key, obj.get(start..end)?)?;
        Some(end)
    })?;
    (skip_ws(obj, end) == obj.len()).then_some(())
}

/// The members walk of the object whose `{` is at `at` in `bytes`, reading
/// each value in place: `f(key, start)` gets the key's raw bytes and where
/// its value starts, reads the value and answers where it ends (exclusive;
/// `value_end` skips one). Returns the index just past the closing `}`.
/// `None` as for `members`. A caller that reads a value while it walks
/// (a usage object inside a response) walks the document once.
#[inline]
pub fn object_at<'a>(
    bytes: &'a [u8],
    at: usize,
    mut f: impl FnMut(&'a [u8], usize) -> Option<usize>,
) -> Option<usize> {
    if byte(bytes, at) != b'{' {
        return None;
    }
    // Each step reads the byte where the grammar expects one and skips
    // whitespace only when that byte is whitespace (compact JSON has none).
    let (mut i, mut b) = next_token(bytes, at + 1);
    if b == b'}' {
        return Some(i + 1);
    }
    loop {
        if b != b'"' {
            return None;
        }
        let (key_end, escaped) = string_end(bytes, i)?;
        if escaped {
            return None;
        }
        let key = bytes.get(i + 1..key_end - 1)?;
        let (colon, c) = next_token(bytes, key_end);
        if c != b':' {
            return None;
        }
        let (start, _) = next_token(bytes, colon + 1);
        let end = f(key, start)?;
        if end <= start {
            return None;
        }
        let (after, c) = next_token(bytes, end);
        match c {
            b',' => (i, b) = next_token(bytes, after + 1),
            b'}' => return Some(after + 1),
            _ => return None,
        }
    }
}

/// The first non-whitespace byte at or after `at` and where it is (0 past
/// the end, as `byte`): one compare when `at` holds no whitespace.
#[inline(always)]
fn next_token(bytes: &[u8], at: usize) -> (usize, u8) {
    let b = byte(bytes, at);
    if !is_ws(b) {
        return (at, b);
    }
    let at = skip_ws(bytes, at + 1);
    (at, byte(bytes, at))
}

/// Index of the first non-whitespace byte at or after `at`.
pub fn skip_whitespace(bytes: &[u8], at: usize) -> usize {
    skip_ws(bytes, at)
}

/// End (exclusive) of the JSON value starting at `at`, skipped by its
/// structure alone (strings, nesting); `None` when no value starts there.
pub fn skip_value(bytes: &[u8], at: usize) -> Option<usize> {
    value_end(bytes, at)
}

/// The integer value starting at `at` (`null` → 0, as `uint_or_null`) and
/// where it ends.
#[inline]
pub fn uint_or_null_at(bytes: &[u8], at: usize) -> Option<(u64, usize)> {
    uint_value_at(bytes, at)
}

/// `nested_uint` for the value starting at `at` in `bytes`, read in place;
/// answers the count and where the value ends.
pub fn nested_uint_at(bytes: &[u8], at: usize, key: &[u8]) -> Option<(u64, usize)> {
    if byte(bytes, at) == b'n' {
        let end = value_end(bytes, at)?;
        return (bytes.get(at..end)? == b"null").then_some((0, end));
    }
    let mut out = 0;
    let mut seen = 0;
    let end = object_at(bytes, at, |k, start| {
        if key_is(k, key) {
            once(&mut seen, 1)?;
            let (v, end) = uint_or_null_at(bytes, start)?;
            out = v;
            Some(end)
        } else {
            value_end(bytes, start)
        }
    })?;
    Some((out, end))
}

/// Where the top-level members named in `keys` are in the JSON object
/// `obj` (the last occurrence wins), as ranges into `obj`; the members walk
/// skips everything else by its structure alone. `None` as for `members`
/// (the caller then asks the byte-at-a-time scanner, which decides).
pub fn top_level_ranges<const N: usize>(
    obj: &[u8],
    keys: &[&str],
) -> Option<[Option<Range<usize>>; N]> {
    let mut out: [Option<Range<usize>>; N] = std::array::from_fn(|_| None);
    let base = obj.as_ptr() as usize;
    members(obj, |key, value| {
        if let Some(slot) = keys
            .iter()
            .position(|k| key_is(key, k.as_bytes()))
            .and_then(|i| out.get_mut(i))
        {
            let start = value.as_ptr() as usize - base;
            *slot = Some(start..start + value.len());
        }
        Some(())
    })?;
    Some(out)
}

/// Marks `bit` seen; `None` the second time (serde refuses duplicate fields,
/// so the fast path leaves that case to it).
pub fn once(seen: &mut u32, bit: u32) -> Option<()> {
    if *seen & bit != 0 {
        return None;
    }
    *seen |= bit;
    Some(())
}

/// The integer member `key` of `obj` (`null` or absent → 0); `obj` itself may be `null`.
pub fn nested_uint(obj: &[u8], key: &[u8]) -> Option<u64> {
    let (out, end) = nested_uint_at(obj, skip_ws(obj, 0), key)?;
    (skip_ws(obj, end) == obj.len()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The structural walk `container_end` replaced: one `"`/bracket at a
    /// time, a string skipped to its closing quote.
    fn container_end_reference(bytes: &[u8], at: usize) -> Option<usize> {
        let mut depth = 0u32;
        let mut i = at;
        loop {
            i = structural(bytes, i)?;
            match byte(bytes, i) {
                b'"' => i = string_end(bytes, i)?.0,
                b'{' | b'[' => {
                    depth += 1;
                    i += 1;
                }
                _ => {
                    depth = depth.checked_sub(1)?;
                    i += 1;
                    if depth == 0 {
                        return Some(i);
                    }
                }
            }
        }
    }

    #[test]
    fn container_end_across_blocks_strings_and_escapes() {
        let cases: [&[u8]; 8] = [
            br#"[{"index":0,"message":{"role":"assistant","content":"w0 w1 w2 w3 w4"},"finish_reason":"stop"}],"usage":{}"#,
            br#"{"a":"}]}]}]}]}]}]}]}]}]}]}]}]}]","b":[1,2,3]} tail"#,
            br#"{"a":"0123456789abcd\"}]","b":"\\"}x"#,
            br#"{"a":"0123456789abcde\"}]","b":"\\\""}]}x"#,
            br#"[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]],1"#,
            br#"{"unterminated":"]]]]]]]]]]]]]]]]]]]]]"#,
            br#"[1,2,{"x":[3]}"#,
            b"{}",
        ];
        for bytes in cases {
            assert_eq!(
                container_end(bytes, 0),
                container_end_reference(bytes, 0),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
        assert_eq!(container_end(cases[0], 0), Some(94));
        assert_eq!(container_end(cases[5], 0), None);
    }

    proptest! {
        // Bytes that move the walk (quotes, escapes, brackets) among filler,
        // long enough to cross several 16-byte blocks.
        #[test]
        fn container_end_matches_the_structural_walk(
            rest in proptest::collection::vec(
                prop_oneof![
                    Just(b'"'), Just(b'\\'), Just(b'{'), Just(b'}'), Just(b'['), Just(b']'),
                    Just(b'a'), Just(b','), Just(b':'), Just(b' '), Just(b'0')
                ],
                0..120,
            ),
            open in prop_oneof![Just(b'{'), Just(b'[')],
        ) {
            let mut bytes = vec![open];
            bytes.extend_from_slice(&rest);
            prop_assert_eq!(container_end(&bytes, 0), container_end_reference(&bytes, 0));
            // And from an offset, as inside a document.
            let mut shifted = b"{\"k\":".to_vec();
            shifted.extend_from_slice(&bytes);
            prop_assert_eq!(container_end(&shifted, 5), container_end_reference(&shifted, 5));
        }
    }

    /// `string_end` a byte at a time.
    fn string_end_reference(bytes: &[u8], at: usize) -> Option<(usize, bool)> {
        let mut i = at + 1;
        let mut escaped = false;
        loop {
            match *bytes.get(i)? {
                b'\\' => {
                    escaped = true;
                    i += 2;
                }
                b'"' => return Some((i + 1, escaped)),
                _ => i += 1,
            }
        }
    }

    /// The members walk as it was before its whitespace fast path: every
    /// step skips whitespace, values end where `value_end` says.
    fn members_reference(obj: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        let mut i = skip_ws(obj, 0);
        if byte(obj, i) != b'{' {
            return None;
        }
        i = skip_ws(obj, i + 1);
        if byte(obj, i) == b'}' {
            return (skip_ws(obj, i + 1) == obj.len()).then_some(out);
        }
        loop {
            if byte(obj, i) != b'"' {
                return None;
            }
            let (key_end, escaped) = string_end_reference(obj, i)?;
            if escaped {
                return None;
            }
            let key = obj.get(i + 1..key_end - 1)?.to_vec();
            i = skip_ws(obj, key_end);
            if byte(obj, i) != b':' {
                return None;
            }
            let start = skip_ws(obj, i + 1);
            let end = value_end(obj, start)?;
            out.push((key, obj.get(start..end)?.to_vec()));
            i = skip_ws(obj, end);
            match byte(obj, i) {
                b',' => i = skip_ws(obj, i + 1),
                b'}' => return (skip_ws(obj, i + 1) == obj.len()).then_some(out),
                _ => return None,
            }
        }
    }

    proptest! {
        #[test]
        fn string_end_matches_the_byte_walk(
            bytes in proptest::collection::vec(
                prop_oneof![Just(b'"'), Just(b'\\'), Just(b'a'), Just(b' '), Just(b'{')],
                0..60,
            ),
        ) {
            for at in 0..bytes.len() + 1 {
                prop_assert_eq!(string_end(&bytes, at), string_end_reference(&bytes, at), "at {}", at);
            }
        }

        // Documents made of JSON tokens in any order (most refused, many
        // read), with and without whitespace between them.
        #[test]
        fn members_walk_matches_the_reference(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just(&b"{"[..]), Just(&b"}"[..]), Just(&b"["[..]), Just(&b"]"[..]),
                    Just(&b":"[..]), Just(&b","[..]), Just(&b" "[..]), Just(&b"\n"[..]),
                    Just(&b"\"model\""[..]), Just(&b"\"usage\""[..]), Just(&b"\"a\\\"b\""[..]),
                    Just(&b"\"chat.completion.long.value\""[..]), Just(&b"12"[..]), Just(&b"-1.5e3"[..]),
                    Just(&b"null"[..]), Just(&b"true"[..]), Just(&b"x"[..]),
                    Just(&b"\"k\":1,"[..]), Just(&b"\"k\":\"v\","[..]),
                ],
                0..40,
            ),
            close in any::<bool>(),
        ) {
            let mut doc = b"{".to_vec();
            for p in &parts {
                doc.extend_from_slice(p);
            }
            if close {
                doc.push(b'}');
            }
            let fast = collect(&doc);
            let reference = members_reference(&doc).map(|m| {
                m.into_iter()
                    .map(|(k, v)| {
                        (
                            String::from_utf8_lossy(&k).into_owned(),
                            String::from_utf8_lossy(&v).into_owned(),
                        )
                    })
                    .collect::<Vec<_>>()
            });
            prop_assert_eq!(fast, reference, "{}", String::from_utf8_lossy(&doc));
        }

        // Well-formed members with whitespace anywhere between tokens: the
        // walk reads them all, as the reference does.
        #[test]
        fn members_walk_reads_well_formed_objects(
            members in proptest::collection::vec(
                (
                    prop_oneof![Just("model"), Just("usage"), Just("id"), Just("a\\\"b"), Just("choices_and_more_keys")],
                    prop_oneof![
                        Just("1732430000"), Just("\"gpt-4o-mini-2024-07-18\""), Just("null"),
                        Just("{\"cached_tokens\":0}"), Just("[{\"a\":\"]}\\\"\"}, 1]"), Just("-0.5"),
                    ],
                    prop_oneof![Just(""), Just(" "), Just("\n\t ")],
                ),
                0..8,
            ),
        ) {
            let mut doc = String::from("{");
            for (k, (key, value, ws)) in members.iter().enumerate() {
                if k > 0 {
                    doc.push_str(ws);
                    doc.push(',');
                }
                doc.push_str(&format!("{ws}\"{key}\"{ws}:{ws}{value}{ws}"));
            }
            doc.push('}');
            let doc = doc.as_bytes();
            let reference = members_reference(doc).map(|m| m.len());
            prop_assert_eq!(collect(doc).map(|m| m.len()), reference);
            prop_assert_eq!(reference.is_some(), !members.iter().any(|(k, _, _)| k.contains('\\')));
        }
    }

    fn collect(obj: &[u8]) -> Option<Vec<(String, String)>> {
        let mut out = Vec::new();
        members(obj, |k, v| {
            out.push((
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            ));
            Some(())
        })?;
        Some(out)
    }

    #[test]
    fn walks_members_of_every_kind() {
        let obj =
            br#"{ "a" : 1 , "b":"x\"}" ,"c":{"d":[1,{"e":"]"}]},"f":null,"g":-1.5e3,"h":true}"#;
        let got = collect(obj).unwrap();
        let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "b", "c", "f", "g", "h"]);
        assert_eq!(got[1].1, r#""x\"}""#);
        assert_eq!(got[2].1, r#"{"d":[1,{"e":"]"}]}"#);
        assert_eq!(got[4].1, "-1.5e3");
        assert_eq!(collect(b" {} ").unwrap(), []);
    }

    #[test]
    fn refuses_what_it_cannot_read_exactly() {
        for bad in [
            &br#"{"a":1"#[..],
            br#"{"a":1}x"#,
            br#"{"a" 1}"#,
            br#"{"a":1,}"#,
            br#"{"\u0061":1}"#,
            br#"{"a":{"b":1}"#,
            br#"["a"]"#,
            b"",
        ] {
            assert!(collect(bad).is_none(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn integers_and_strings() {
        assert_eq!(uint(b"0"), Some(0));
        assert_eq!(uint(b"1234"), Some(1234));
        assert_eq!(
            uint(b"9999999999999999999"),
            Some(9_999_999_999_999_999_999)
        );
        for bad in [
            &b"012"[..],
            b"1.0",
            b"-1",
            b"1e3",
            b"",
            b"\"1\"",
            b"99999999999999999999",
        ] {
            assert_eq!(uint(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(uint_or_null(b"null"), Some(0));
        assert_eq!(plain_string(br#""gpt-4o""#), Some("gpt-4o"));
        assert_eq!(plain_string(br#""a\"b""#), None);
        assert_eq!(plain_string(b"null"), None);
        assert_eq!(plain_string(b"\"tab\there\""), None);
    }

    #[test]
    fn top_level_ranges_agree_with_the_scanner() {
        use crate::json::scan as json_scan;
        const KEYS: &[&str; 2] = &["model", "usage"];
        for doc in [
            &br#"{"data":[{"model":"inner","usage":1}],"model" : "gpt-4o" ,"usage":{"a":[1,{"b":"}"}]}}"#[..],
            br#"{"text":"say \"usage\": {","usage":{"n":2}}"#,
            br#"{"usage":{"n":1},"usage":{"n":2}}"#,
            b"{ \"model\" :\n \"x\" \n, \"usage\": 12 }",
            br#"{}"#,
        ] {
            let fast: [Option<Range<usize>>; 2] = top_level_ranges(doc, KEYS).unwrap();
            assert_eq!(Some(fast), json_scan::scanned_ranges(doc, KEYS), "{}", String::from_utf8_lossy(doc));
        }
        // Not an object, or not one this walk reads: the scanner decides.
        for doc in [
            &br#"[{"usage":{"n":1}}]"#[..],
            br#"{"\u0075sage":1}"#,
            br#"{"usage":{"n":1}"#,
        ] {
            assert!(top_level_ranges::<2>(doc, KEYS).is_none());
        }
    }

    #[test]
    fn key_compare_matches_slice_equality() {
        let lits: [&[u8]; 8] = [
            b"",
            b"id",
            b"model",
            b"usage",
            b"prompt_tokens",
            b"stream_options",
            b"completion_tokens_details",
            b"abcdefgh",
        ];
        for lit in lits {
            for key in lits {
                assert_eq!(key_is(key, lit), key == lit);
            }
            // One byte off anywhere is told apart.
            for at in 0..lit.len() {
                let mut near = lit.to_vec();
                near[at] ^= 1;
                assert!(!key_is(&near, lit), "{at}");
            }
        }
    }

    #[test]
    fn integers_read_in_place_agree_with_locate_then_read() {
        for doc in [
            &b"0,"[..],
            b"12}",
            b"012,",
            b"1.5,",
            b"1e3,",
            b"12x",
            b"-1,",
            b"null,",
            b"nul,",
            b"true,",
            b"9999999999999999999,",
            b"99999999999999999999,",
            b"18446744073709551616,",
            b"7",
            b"\"7\",",
        ] {
            let located = value_end(doc, 0).and_then(|end| Some((uint_or_null(&doc[..end])?, end)));
            assert_eq!(
                uint_or_null_at(doc, 0),
                located,
                "{}",
                String::from_utf8_lossy(doc)
            );
        }
    }

    #[test]
    fn nested_integers() {
        assert_eq!(
            nested_uint(br#"{"cached_tokens":7,"x":[1]}"#, b"cached_tokens"),
            Some(7)
        );
        assert_eq!(nested_uint(b"null", b"cached_tokens"), Some(0));
        assert_eq!(nested_uint(b"{}", b"cached_tokens"), Some(0));
        assert_eq!(
            nested_uint(
                br#"{"cached_tokens":1,"cached_tokens":2}"#,
                b"cached_tokens"
            ),
            None
        );
        assert_eq!(
            nested_uint(br#"{"cached_tokens":"7"}"#, b"cached_tokens"),
            None
        );
    }
}
