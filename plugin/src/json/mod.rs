//! JSON without a document model: word-at-a-time byte scanning (`bytes`),
//! serde-free readers of the few values the filter needs (`fast`), the
//! incremental top-level scanner for bodies that arrive in chunks (`scan`),
//! and the writer the usage record is serialized with (`out`).

pub mod bytes;
pub mod fast;
pub mod out;
pub mod scan;

/// JSON's whitespace (RFC 8259: space, tab, line feed, carriage return).
/// Not `u8::is_ascii_whitespace`, which also takes form feed: a body the
/// chunked scanner refuses must not read as JSON when it comes whole.
#[inline(always)]
pub fn is_ws(b: u8) -> bool {
    // One compare rejects the bytes of a token (all above the space).
    b <= b' ' && matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}
