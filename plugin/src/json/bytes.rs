//! Byte searches over many bytes at a time. `iter().position` costs about
//! five wasm instructions per byte; a 64-bit word test costs about two, and
//! a 128-bit SIMD test (the wasm build enables `simd128`, see
//! `.cargo/config.toml`) about one per eight. These run over every JSON byte
//! the filter reads or writes on a call.
//!
//! `zero_bytes(x)` sets the high bit of each zero byte of `x`. A byte above a
//! zero byte can be flagged too (the subtraction borrows), but never one
//! below, so the lowest flagged byte is always exact.

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

#[inline]
fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(ONES) & !x & HIGHS
}

#[inline]
fn splat(b: u8) -> u64 {
    ONES * u64::from(b)
}

/// Bytes below `n` (n ≤ 0x80), flagged like `zero_bytes`.
#[inline]
fn below(x: u64, n: u8) -> u64 {
    x.wrapping_sub(splat(n)) & !x & HIGHS
}

/// A set of bytes searched for, 16 at a time where the build has SIMD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Set {
    /// `"` or `\`.
    QuoteOrBackslash,
    /// `"`, `{`, `}`, `[` or `]`.
    Structural,
    /// What a JSON string must escape: `"`, `\` or a byte below 0x20.
    Escape,
    /// `Escape` or a byte of 0x80 and above (not ASCII).
    EscapeOrHigh,
    /// A C0 byte, DEL or 0xC2 (`may_hold_control`).
    Control,
    /// One byte value.
    Byte(u8),
    /// A byte that cannot continue a JSON number or literal token (one
    /// outside `-+.0-9a-zE`): where such a token ends.
    TokenEnd,
}

/// The bytes of `block` in `set`, one bit each (bit k = byte k).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn set_mask(block: &[u8; 16], set: Set) -> u32 {
    use core::arch::wasm32::*;
    // SAFETY: `block` is 16 readable bytes; v128 loads need no alignment.
    let v = unsafe { v128_load(block.as_ptr().cast::<v128>()) };
    let eq = |b: u8| i8x16_eq(v, u8x16_splat(b));
    let hit = match set {
        Set::QuoteOrBackslash => v128_or(eq(b'"'), eq(b'\\')),
        Set::Structural => {
            // `[`/`]` are `{`/`}` without bit 5.
            let folded = v128_or(v, u8x16_splat(0x20));
            v128_or(
                eq(b'"'),
                v128_or(
                    i8x16_eq(folded, u8x16_splat(b'{')),
                    i8x16_eq(folded, u8x16_splat(b'}')),
                ),
            )
        }
        Set::Escape => v128_or(v128_or(eq(b'"'), eq(b'\\')), u8x16_lt(v, u8x16_splat(0x20))),
        // Signed, bytes of 0x80 and above are below 0x20 too.
        Set::EscapeOrHigh => v128_or(v128_or(eq(b'"'), eq(b'\\')), i8x16_lt(v, i8x16_splat(0x20))),
        Set::Control => v128_or(u8x16_lt(v, u8x16_splat(0x20)), v128_or(eq(0x7f), eq(0xc2))),
        Set::Byte(b) => eq(b),
        Set::TokenEnd => {
            // Unsigned range tests: `v - lo < len` (wrapping).
            let digit = u8x16_lt(u8x16_sub(v, u8x16_splat(b'0')), u8x16_splat(10));
            let lower = u8x16_lt(u8x16_sub(v, u8x16_splat(b'a')), u8x16_splat(26));
            let signs = v128_or(v128_or(eq(b'-'), eq(b'+')), v128_or(eq(b'.'), eq(b'E')));
            v128_not(v128_or(v128_or(digit, lower), signs))
        }
    };
    u32::from(i8x16_bitmask(hit))
}

/// The first byte of `set` in the leading whole 16-byte blocks of `bytes`
/// (`Ok`), or where those blocks end (`Err`): the caller searches the rest
/// a word at a time. Without SIMD in the build: `Err(0)`.
#[inline(always)]
pub fn blocks(bytes: &[u8], set: Set) -> Result<usize, usize> {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        let mut at = 0;
        while let Some(chunk) = bytes.get(at..).and_then(|r| r.first_chunk::<16>()) {
            let m = set_mask(chunk, set);
            if m != 0 {
                return Ok(at + m.trailing_zeros() as usize);
            }
            at += 16;
        }
        Err(at)
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        let _ = (bytes, set);
        Err(0)
    }
}

/// Whether `b` is in `set` (the byte-at-a-time definition every search
/// here agrees with).
#[inline(always)]
pub fn in_set(b: u8, set: Set) -> bool {
    match set {
        Set::QuoteOrBackslash => b == b'"' || b == b'\\',
        Set::Structural => matches!(b, b'"' | b'{' | b'}' | b'[' | b']'),
        Set::Escape => b == b'"' || b == b'\\' || b < 0x20,
        Set::EscapeOrHigh => b == b'"' || b == b'\\' || !(0x20..0x80).contains(&b),
        Set::Control => b < 0x20 || b == 0x7f || b == 0xc2,
        Set::Byte(x) => b == x,
        Set::TokenEnd => !matches!(b, b'-' | b'+' | b'.' | b'0'..=b'9' | b'a'..=b'z' | b'E'),
    }
}

/// Index of the first byte of `set` at or after `at` in `bytes`, `None`
/// when there is none before the end (or `at` is past it). With SIMD: whole
/// 16-byte blocks from `at`, then the last 0..16 bytes in one more block
/// test (the final 16 bytes of `bytes`, overlapping what was searched, when
/// it has that many; else a zero-padded copy), never a word or byte loop.
/// Without: a word at a time for `"`/`\`, byte by byte otherwise.
#[inline(always)]
pub fn find_from(bytes: &[u8], at: usize, set: Set) -> Option<usize> {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        let mut i = at;
        while let Some(chunk) = bytes.get(i..).and_then(|r| r.first_chunk::<16>()) {
            let m = set_mask(chunk, set);
            if m != 0 {
                return Some(i + m.trailing_zeros() as usize);
            }
            i += 16;
        }
        let len = bytes.len();
        let rest = len.checked_sub(i)?;
        if rest == 0 {
            return None;
        }
        // Bit k of `m` is byte `i + k`, for the bytes from `i` to the end.
        let m = match bytes
            .get(len.wrapping_sub(16)..)
            .and_then(|r| r.first_chunk::<16>())
        {
            Some(last) => set_mask(last, set) >> (16 - rest),
            None => {
                // Fewer than 16 bytes in all (so `i` is `at` and below 16).
                let mut block = [0u8; 16];
                block.get_mut(..len)?.copy_from_slice(bytes);
                (set_mask(&block, set) & ((1u32 << len) - 1)) >> i
            }
        };
        (m != 0).then(|| i + m.trailing_zeros() as usize)
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        let mut i = at;
        if set == Set::QuoteOrBackslash {
            while let Some(chunk) = bytes.get(i..).and_then(|r| r.first_chunk::<8>()) {
                let m = quote_mask(u64::from_le_bytes(*chunk));
                if m != 0 {
                    return Some(i + (m.trailing_zeros() / 8) as usize);
                }
                i += 8;
            }
        }
        loop {
            if in_set(*bytes.get(i)?, set) {
                return Some(i);
            }
            i += 1;
        }
    }
}

/// The `"` and `\\` bytes of `block`, one bit each (bit k = byte k).
#[inline(always)]
pub fn quote_backslash_masks(block: &[u8; 16]) -> (u32, u32) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        use core::arch::wasm32::*;
        // SAFETY: `block` is 16 readable bytes; v128 loads need no alignment.
        let v = unsafe { v128_load(block.as_ptr().cast::<v128>()) };
        (
            u32::from(i8x16_bitmask(i8x16_eq(v, u8x16_splat(b'"')))),
            u32::from(i8x16_bitmask(i8x16_eq(v, u8x16_splat(b'\\')))),
        )
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        let (mut q, mut bs) = (0, 0);
        for (k, &b) in block.iter().enumerate() {
            q |= u32::from(b == b'"') << k;
            bs |= u32::from(b == b'\\') << k;
        }
        (q, bs)
    }
}

/// What matters to JSON nesting in a 16-byte block, one bit per byte
/// (bit k = byte k): `"`, `\\`, `{`/`[` and `}`/`]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockMasks {
    pub quote: u32,
    pub backslash: u32,
    pub open: u32,
    pub close: u32,
}

/// `BlockMasks` of `block`: four compares and four bitmasks with SIMD, a
/// byte loop without (native builds and tests, where the same block walk
/// then runs over these masks).
#[inline(always)]
pub fn block_masks(block: &[u8; 16]) -> BlockMasks {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        use core::arch::wasm32::*;
        // SAFETY: `block` is 16 readable bytes; v128 loads need no alignment.
        let v = unsafe { v128_load(block.as_ptr().cast::<v128>()) };
        // `[`/`]` are `{`/`}` without bit 5, and no other byte maps onto them.
        let folded = v128_or(v, u8x16_splat(0x20));
        BlockMasks {
            quote: u32::from(i8x16_bitmask(i8x16_eq(v, u8x16_splat(b'"')))),
            backslash: u32::from(i8x16_bitmask(i8x16_eq(v, u8x16_splat(b'\\')))),
            open: u32::from(i8x16_bitmask(i8x16_eq(folded, u8x16_splat(b'{')))),
            close: u32::from(i8x16_bitmask(i8x16_eq(folded, u8x16_splat(b'}')))),
        }
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        let mut m = BlockMasks {
            quote: 0,
            backslash: 0,
            open: 0,
            close: 0,
        };
        for (k, &b) in block.iter().enumerate() {
            let bit = 1u32 << k;
            match b {
                b'"' => m.quote |= bit,
                b'\\' => m.backslash |= bit,
                b'{' | b'[' => m.open |= bit,
                b'}' | b']' => m.close |= bit,
                _ => {}
            }
        }
        m
    }
}

/// Index of the first byte of `bytes` in `set`: 16-byte blocks (SIMD), then
/// words whose mask (from `test`) is set, then the tail `slow` accepts.
#[inline]
fn first(
    bytes: &[u8],
    set: Set,
    test: impl Fn(u64) -> u64,
    slow: impl Fn(u8) -> bool,
) -> Option<usize> {
    let skipped = match blocks(bytes, set) {
        Ok(i) => return Some(i),
        Err(n) => n,
    };
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        // The last 0..16 bytes in one more block test, not words and a byte
        // loop: the final 16 bytes (overlapping what was searched) when
        // there are that many, else the bytes copied into a padded block.
        let _ = (&test, &slow);
        let len = bytes.len();
        let rest = len - skipped;
        if rest == 0 {
            return None;
        }
        let m = match bytes
            .get(len.wrapping_sub(16)..)
            .and_then(|r| r.first_chunk::<16>())
        {
            Some(last) => set_mask(last, set) >> (16 - rest),
            None => {
                let mut block = [0u8; 16];
                block.get_mut(..len)?.copy_from_slice(bytes);
                set_mask(&block, set) & ((1u32 << len) - 1)
            }
        };
        if m == 0 {
            None
        } else {
            Some(skipped + m.trailing_zeros() as usize)
        }
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    first_in_words(bytes, skipped, test, slow)
}

/// `first`'s search of `bytes` from `skipped` a word at a time, then the
/// tail byte by byte (builds without SIMD).
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline]
fn first_in_words(
    bytes: &[u8],
    skipped: usize,
    test: impl Fn(u64) -> u64,
    slow: impl Fn(u8) -> bool,
) -> Option<usize> {
    let bytes = bytes.get(skipped..)?;
    let mut chunks = bytes.chunks_exact(8);
    let mut at = skipped;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let m = test(u64::from_le_bytes(word));
        if m != 0 {
            return Some(at + (m.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| slow(b))
        .map(|p| at + p)
}

/// The bytes of `w` that are `"` or `\`, flagged like `zero_bytes`.
#[inline(always)]
pub fn quote_mask(w: u64) -> u64 {
    zero_bytes(w ^ splat(b'"')) | zero_bytes(w ^ splat(b'\\'))
}

/// The bytes of `w` that are `"`, `{`, `}`, `[` or `]`, flagged like `zero_bytes`.
#[inline(always)]
pub fn structural_mask(w: u64) -> u64 {
    // `[`/`]` are `{`/`}` without bit 5, and no other byte maps onto them.
    let folded = w | splat(0x20);
    zero_bytes(w ^ splat(b'"'))
        | zero_bytes(folded ^ splat(b'{'))
        | zero_bytes(folded ^ splat(b'}'))
}

/// First `"` or `\` (the end of a JSON string's plain run).
pub fn find_quote_or_backslash(bytes: &[u8]) -> Option<usize> {
    first(bytes, Set::QuoteOrBackslash, quote_mask, |b| {
        b == b'"' || b == b'\\'
    })
}

/// First byte that matters to JSON nesting outside strings: `"`, `{`, `}`,
/// `[` or `]`.
pub fn find_structural(bytes: &[u8]) -> Option<usize> {
    first(bytes, Set::Structural, structural_mask, |b| {
        matches!(b, b'"' | b'{' | b'}' | b'[' | b']')
    })
}

/// True when a JSON string needs escaping: a `"`, a `\` or a control byte.
pub fn needs_json_escape(bytes: &[u8]) -> bool {
    first(
        bytes,
        Set::Escape,
        |w| zero_bytes(w ^ splat(b'"')) | zero_bytes(w ^ splat(b'\\')) | below(w, 0x20),
        |b| b == b'"' || b == b'\\' || b < 0x20,
    )
    .is_some()
}

/// `bytes` as text when they are ASCII that a JSON string holds as is (no
/// `"`, `\\` or byte below 0x20): one search, no UTF-8 decoding (which
/// costs about eight wasm instructions a byte). `None` otherwise, whatever
/// else they are.
pub fn plain_ascii(bytes: &[u8]) -> Option<&str> {
    let hit = first(
        bytes,
        Set::EscapeOrHigh,
        |w| {
            zero_bytes(w ^ splat(b'"'))
                | zero_bytes(w ^ splat(b'\\'))
                | below(w, 0x20)
                | (w & HIGHS)
        },
        |b| in_set(b, Set::EscapeOrHigh),
    );
    if hit.is_some() {
        return None;
    }
    // SAFETY: no byte of `bytes` is 0x80 or above (the search above found
    // none: `word_search_equals_byte_search` checks it against `in_set`),
    // and ASCII is valid UTF-8.
    Some(unsafe { std::str::from_utf8_unchecked(bytes) })
}

/// True when `bytes` may hold a control character: a C0 byte, DEL, or a
/// 0xC2 lead byte (C1 controls are U+0080..U+009F, UTF-8 `C2 80`..`C2 9F`).
/// A 0xC2 that starts another character is a false positive the caller
/// settles by decoding; a control character is never missed.
pub fn may_hold_control(bytes: &[u8]) -> bool {
    first(
        bytes,
        Set::Control,
        |w| below(w, 0x20) | zero_bytes(w ^ splat(0x7f)) | zero_bytes(w ^ splat(0xc2)),
        |b| b < 0x20 || b == 0x7f || b == 0xc2,
    )
    .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn control_candidates_are_never_missed() {
        assert!(!may_hold_control(b"gpt-4o-mini-2024-07-18"));
        assert!(may_hold_control(b"gpt-4o-mini\x01"));
        assert!(may_hold_control("gpt-4o-mini-2024-07-18\u{7f}".as_bytes()));
        assert!(may_hold_control("abcdefgh\u{85}".as_bytes()));
        assert!(
            may_hold_control("\u{a9}".as_bytes()),
            "a C2 lead byte is a candidate"
        );
        for c in (0u32..0x20).chain(0x7f..0xa0) {
            let s = format!("model-name-{}", char::from_u32(c).unwrap());
            assert!(may_hold_control(s.as_bytes()), "{c:#x}");
        }
    }

    fn slow_structural(b: u8) -> bool {
        matches!(b, b'"' | b'{' | b'}' | b'[' | b']')
    }

    #[test]
    fn finds_the_first_match_in_words_and_tails() {
        assert_eq!(find_quote_or_backslash(b"abcdefghij\"kl"), Some(10));
        assert_eq!(find_quote_or_backslash(b"ab\\c\""), Some(2));
        assert_eq!(find_quote_or_backslash(b"plain text, no end"), None);
        assert_eq!(find_structural(b"12345678,9 ]"), Some(11));
        assert_eq!(find_structural(b"\x00\x01[\"}"), Some(2));
        assert!(needs_json_escape(b"0123456789\n"));
        assert!(!needs_json_escape("é ü 🙂 gpt-4o-mini".as_bytes()));
    }

    proptest! {
        // Bytes chosen near the edges the word tricks could get wrong:
        // zero, the targets, their bit-5 twins and high bytes.
        #[test]
        fn word_search_equals_byte_search(
            bytes in proptest::collection::vec(
                prop_oneof![
                    Just(0u8), Just(1), Just(0x1f), Just(0x20), Just(b'"'), Just(b'\\'),
                    Just(b'{'), Just(b'}'), Just(b'['), Just(b']'), Just(0x5c ^ 0x20),
                    Just(0x7f), Just(0x80), Just(0xff), Just(b'0'), Just(b'a'), Just(0xc2), any::<u8>()
                ],
                0..56,
            )
        ) {
            prop_assert_eq!(
                find_quote_or_backslash(&bytes),
                bytes.iter().position(|&b| b == b'"' || b == b'\\')
            );
            prop_assert_eq!(find_structural(&bytes), bytes.iter().position(|&b| slow_structural(b)));
            prop_assert_eq!(
                plain_ascii(&bytes).is_some(),
                !bytes.iter().any(|&b| in_set(b, Set::EscapeOrHigh))
            );
            for set in [Set::QuoteOrBackslash, Set::Structural, Set::Escape, Set::EscapeOrHigh, Set::Control, Set::Byte(b'"'), Set::TokenEnd] {
                for at in 0..bytes.len() + 2 {
                    prop_assert_eq!(
                        find_from(&bytes, at, set),
                        bytes.get(at..).and_then(|r| r.iter().position(|&b| in_set(b, set))).map(|p| at + p),
                        "{:?} from {}", set, at
                    );
                }
            }
            prop_assert_eq!(
                needs_json_escape(&bytes),
                bytes.iter().any(|&b| b == b'"' || b == b'\\' || b < 0x20)
            );
        }
    }
}

/// First `b` in `bytes`.
pub fn find_byte(bytes: &[u8], b: u8) -> Option<usize> {
    first(
        bytes,
        Set::Byte(b),
        |w| zero_bytes(w ^ splat(b)),
        |x| x == b,
    )
}

/// Whether `needle` occurs in `haystack`: a first-byte search (many bytes
/// at a time), then a compare. For short header values this is cheaper than
/// `str::contains`, which builds a two-way searcher on every call.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    let mut from = 0;
    while haystack.len() - from >= needle.len() {
        let Some(p) = haystack.get(from..).and_then(|h| find_byte(h, first)) else {
            return false;
        };
        let at = from + p;
        match haystack.get(at + 1..at + needle.len()) {
            Some(tail) if tail == rest => return true,
            Some(_) => from = at + 1,
            None => return false,
        }
    }
    false
}

/// Whether `haystack` may hold a JSON key starting with `quoted` (a quote
/// and the key's first letters: `"stream` for `stream` and
/// `stream_options`), as written or spelled with `\u` escapes, which a JSON
/// parser decodes (`"str\u0065am"` is `stream`): `quoted` itself, or a `\u`
/// escape spelling the key's next letter right after a quote and a start of
/// its letters (`"`, `"s`, …). Only a `\u` escape can spell a letter, so a
/// `false` is certain; a `true` may be text inside a string.
///
/// One pass tests `quoted`'s first and last byte at 16 positions at once
/// (SIMD) and notes whether any backslash was seen; only then are the
/// backslashes looked at one by one.
pub fn may_hold_key(haystack: &[u8], quoted: &[u8]) -> bool {
    let (Some(&first), Some(&last)) = (quoted.first(), quoted.last()) else {
        return true;
    };
    let n = quoted.len();
    let literal = |i: usize| {
        haystack.get(i) == Some(&first)
            && haystack.get(i + n - 1) == Some(&last)
            && haystack.get(i..i + n) == Some(quoted)
    };
    let positions = (haystack.len() + 1).saturating_sub(n);
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if positions >= 16 {
        use core::arch::wasm32::*;
        // Blocks of 16 start positions, the last one overlapping the one
        // before it (a candidate tested twice is only compared twice).
        let mut i = 0;
        let mut backslashes = u8x16_splat(0);
        loop {
            let start = i.min(positions - 16);
            let blocks = haystack
                .get(start..)
                .and_then(|r| r.first_chunk::<16>())
                .zip(
                    haystack
                        .get(start + n - 1..)
                        .and_then(|r| r.first_chunk::<16>()),
                );
            let Some((a, b)) = blocks else {
                return false;
            };
            // SAFETY: `a` and `b` are 16 readable bytes each; v128 loads
            // need no alignment.
            let (va, vb) = unsafe {
                (
                    v128_load(a.as_ptr().cast::<v128>()),
                    v128_load(b.as_ptr().cast::<v128>()),
                )
            };
            // `a` covers the bytes before `positions`, `b` the rest.
            let slash = u8x16_splat(b'\\');
            backslashes = v128_or(
                backslashes,
                v128_or(i8x16_eq(va, slash), i8x16_eq(vb, slash)),
            );
            let hit = v128_and(
                i8x16_eq(va, u8x16_splat(first)),
                i8x16_eq(vb, u8x16_splat(last)),
            );
            let mut m = u32::from(i8x16_bitmask(hit));
            while m != 0 {
                if literal(start + m.trailing_zeros() as usize) {
                    return true;
                }
                m &= m - 1;
            }
            if start + 16 >= positions {
                break;
            }
            i = start + 16;
        }
        return v128_any_true(backslashes) && escaped_key_start(haystack, quoted);
    }
    (0..positions).any(literal) || escaped_key_start(haystack, quoted)
}

/// Whether a `\u` escape in `haystack` spells the next letter of `quoted`
/// right after a quote and a start of its letters (`"\u0073…`, `"s\u0074…`,
/// …, `"strea\u006d…` for `"stream`). The first escape in any spelling of
/// the key is such a one; a `\u` spelling anything else (`"\u00e9…`, text
/// in another script) is none.
fn escaped_key_start(haystack: &[u8], quoted: &[u8]) -> bool {
    let mut from = 0;
    while let Some(p) = haystack.get(from..).and_then(|r| find_byte(r, b'\\')) {
        let i = from + p;
        if let Some(unit) = unicode_escape(haystack, i) {
            let spells_next = |k: usize| match (i.checked_sub(k), quoted.split_at_checked(k)) {
                (Some(at), Some((start, [next, ..]))) => {
                    u16::from(*next) == unit && haystack.get(at..i) == Some(start)
                }
                _ => false,
            };
            if (1..quoted.len()).any(spells_next) {
                return true;
            }
        }
        from = i + 1;
    }
    false
}

/// How many bytes at the start of `rest` spell the JSON string `quoted` (a
/// key with its quotes, ASCII): as written, or with any of its letters
/// spelled as a `\uXXXX` escape (`"im\u0061ge_url"`), which is what a JSON
/// parser reads as that string. None when they spell anything else; an
/// escaped quote (`\"`) is text, never the string's end.
pub fn spelled_at(rest: &[u8], quoted: &[u8]) -> Option<usize> {
    let mut i = 0;
    for &want in quoted {
        match rest.get(i) {
            Some(&b) if b == want => i += 1,
            Some(b'\\') if want != b'"' => {
                let unit = unicode_escape(rest, i)?;
                if unit != u16::from(want) {
                    return None;
                }
                i += 6;
            }
            _ => return None,
        }
    }
    Some(i)
}

/// The code unit of the `\uXXXX` escape whose backslash is at `at`.
fn unicode_escape(bytes: &[u8], at: usize) -> Option<u16> {
    bytes
        .get(at + 1..at + 6)
        .and_then(|e| e.strip_prefix(b"u"))
        .and_then(hex4)
}

/// The code unit four hex digits (either case) stand for.
fn hex4(digits: &[u8]) -> Option<u16> {
    digits.iter().try_fold(0u16, |unit, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return None,
        };
        Some(unit << 4 | u16::from(v))
    })
}

#[cfg(test)]
mod contains_tests {
    use super::{contains, may_hold_key, spelled_at};

    #[test]
    fn a_key_is_read_as_a_parser_reads_it() {
        let key = br#""image_url""#;
        assert_eq!(spelled_at(br#""image_url":{}"#, key), Some(11));
        for spelled in [
            &br#""im\u0061ge_url""#[..],
            br#""\u0069mage_url""#,
            br#""image_ur\u006C""#,
            br#""\u0069\u006d\u0061\u0067\u0065\u005f\u0075\u0072\u006c""#,
        ] {
            let text = String::from_utf8_lossy(spelled);
            assert_eq!(spelled_at(spelled, key), Some(spelled.len()), "{text}");
            // What serde_json reads there is the key.
            let read: String = serde_json::from_slice(spelled).unwrap_or_default();
            assert_eq!(read, "image_url", "{text}");
        }
        for other in [
            &br#""image_urls""#[..],
            br#""image_url\"""#,
            br#""im\u0062ge_url""#,
            br#""im\u061ge_url""#,
            br#""im\x61ge_url""#,
            br#""im\\u0061ge_url""#,
            br#""im\u0061"#,
            br#""image_url\u0022"#,
            b"",
        ] {
            let text = String::from_utf8_lossy(other);
            assert_eq!(spelled_at(other, key), None, "{text}");
        }
    }

    #[test]
    fn a_key_is_found_as_written_or_spelled_with_escapes() {
        let key = br#""stream"#;
        let body = br#"{"model":"m","messages":[{"role":"user","content":"a stream of words"}]}"#;
        assert!(!may_hold_key(body, key));
        assert!(may_hold_key(br#"{"model":"m","stream":true}"#, key));
        assert!(may_hold_key(br#"{"stream_options":{}}"#, key));
        assert!(may_hold_key(key, key));
        assert!(!may_hold_key(br#""strea"#, key));
        for spelled in [
            &br#"{"model":"m","str\u0065am":true}"#[..],
            br#"{"\u0073tream":true}"#,
            br#"{"strea\u006d_options":{}}"#,
            br#"{"\u0073\u0074\u0072\u0065\u0061\u006d":true,"messages":[]}"#,
        ] {
            assert!(
                may_hold_key(spelled, key),
                "{}",
                String::from_utf8_lossy(spelled)
            );
        }
        // A `\u` elsewhere (a message's text, another key) is no such key.
        assert!(!may_hold_key(
            br#"{"model":"m","messages":[{"role":"user","content":"caf\u00e9 str\u0065am"}]}"#,
            key
        ));
        assert!(!may_hold_key(br#"{"s\"t\u0065":1,"x":"a\u0073"}"#, key));
        // A string that starts with an escape of the key's first letter
        // may be such a key (a "may"); one spelling another letter is not.
        assert!(may_hold_key(br#"{"x":"\u0073"}"#, key));
        assert!(!may_hold_key(br#"{"x":"\u0041","y":"\u00e9t\u00e9"}"#, key));
        assert!(!may_hold_key(br#"{"x":"s\u0073","y":"\u4f60\u597d"}"#, key));
        assert!(!may_hold_key(br#"{"x":"\u007"}"#, key));
        assert!(may_hold_key(b"abc", b""));
        assert!(!may_hold_key(b"", b"a"));
        // The key in the last block, overlapping the one before it.
        let mut long = vec![b'x'; 40];
        long.extend_from_slice(key);
        assert!(may_hold_key(&long, key));
        long.truncate(45);
        assert!(!may_hold_key(&long, key));
        // A `\u` in the last bytes, past where the whole key could start.
        let mut long = vec![b'x'; 40];
        long.extend_from_slice(br#""\u0073"#);
        assert!(may_hold_key(&long, key));
        long.truncate(45);
        assert!(!may_hold_key(&long, key), "a cut escape spells nothing");
    }

    #[test]
    fn finds_a_needle_anywhere_and_only_whole() {
        assert!(contains(b"k=sk-1; a=b", b"sk-1"));
        assert!(contains(b"sk-1", b"sk-1"));
        assert!(contains(b"xxsk-1", b"sk-1"));
        assert!(!contains(b"sk-", b"sk-1"));
        assert!(!contains(b"s k-1", b"sk-1"));
        assert!(contains(b"abc", b""));
        assert!(!contains(b"", b"a"));
        assert!(contains(b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab", b"ab"));
    }

    proptest::proptest! {
        // Past 8 and 16 bytes the first-byte search runs a word (and, in the
        // wasm build, a 16-byte block) at a time.
        #[test]
        fn contains_equals_a_window_search(
            haystack in proptest::collection::vec(proptest::prop_oneof![proptest::strategy::Just(b'a'), proptest::strategy::Just(b'b'), proptest::prelude::any::<u8>()], 0..48),
            needle in proptest::collection::vec(proptest::prop_oneof![proptest::strategy::Just(b'a'), proptest::strategy::Just(b'b')], 1..4),
        ) {
            proptest::prop_assert_eq!(
                contains(&haystack, &needle),
                haystack.windows(needle.len()).any(|w| w == needle.as_slice())
            );
        }

        // Short and long keys, haystacks past two blocks of positions (the
        // wasm build's 16-at-a-time search and its overlapping last block).
        #[test]
        fn may_hold_key_equals_a_window_search(
            parts in proptest::collection::vec(proptest::sample::select(vec![
                &b"\""[..], b"s", b"t", b"\\", b"u", b"\\u0073", b"\\u0074",
                b"\\u0054", b"\\u00", b"x"]), 0..40),
            letters in proptest::collection::vec(proptest::prop_oneof![proptest::strategy::Just(b's'), proptest::strategy::Just(b't')], 0..7),
        ) {
            let haystack: Vec<u8> = parts.concat();
            let mut key = vec![b'"'];
            key.extend_from_slice(&letters);
            // The reference decodes the escape with the standard library.
            let unit_at = |i: usize| {
                let digits = haystack.get(i + 2..i + 6)?;
                u16::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
            };
            let escape_after_start = (0..haystack.len()).any(|i| {
                haystack[i..].starts_with(b"\\u")
                    && (1..key.len()).any(|k| {
                        i >= k && haystack[i - k..i] == key[..k] && unit_at(i) == Some(u16::from(key[k]))
                    })
            });
            proptest::prop_assert_eq!(
                may_hold_key(&haystack, &key),
                haystack.windows(key.len()).any(|w| w == key.as_slice()) || escape_after_start
            );
        }
    }
}
