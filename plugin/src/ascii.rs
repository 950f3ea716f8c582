//! ASCII case-insensitive comparison with an exact fast path.
//!
//! `str::eq_ignore_ascii_case` folds both bytes of every pair: about 40 wasm
//! instructions per byte, 500 to find `authorization` in a header list. Both
//! hosts deliver lowercase header names, so the bytes are compared exactly
//! first, eight at a time, and folded only when that fails.

/// `a` and `b` equal in any ASCII letter case.
#[inline]
pub fn eq_ignore_case(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && (same(a, b) || a.eq_ignore_ascii_case(b))
}

/// `str::trim`, without its Unicode scan when the ends are plainly not
/// whitespace (a printable ASCII byte at each end: the usual header value).
#[inline]
pub fn trim(s: &str) -> &str {
    let printable = |b: Option<&u8>| b.is_some_and(|&b| b > b' ' && b < 0x7f);
    if printable(s.as_bytes().first()) && printable(s.as_bytes().last()) {
        s
    } else {
        s.trim()
    }
}

/// Equal bytes, compared a word at a time.
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    let (mut wa, mut wb) = (a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in (&mut wa).zip(&mut wb) {
        let (mut p, mut q) = ([0u8; 8], [0u8; 8]);
        p.copy_from_slice(x);
        q.copy_from_slice(y);
        if p != q {
            return false;
        }
    }
    wa.remainder()
        .iter()
        .zip(wb.remainder())
        .all(|(x, y)| x == y)
        && wa.remainder().len() == wb.remainder().len()
}

#[cfg(test)]
mod tests {
    use super::eq_ignore_case;

    #[test]
    fn trims_like_str_trim() {
        for s in [
            "",
            " ",
            "a",
            " a",
            "a ",
            "\ta\n",
            "sk-1",
            "\u{a0}sk-1\u{a0}",
            "é",
            "x\u{2003}",
        ] {
            assert_eq!(super::trim(s), s.trim(), "{s:?}");
        }
    }

    #[test]
    fn equal_in_any_case_and_only_then() {
        for (a, b) in [
            ("authorization", "authorization"),
            ("Authorization", "authorization"),
            ("CONTENT-LENGTH", "content-length"),
            ("", ""),
            ("x-aispend-request-id", "X-Aispend-Request-Id"),
        ] {
            assert!(eq_ignore_case(a, b), "{a} {b}");
        }
        for (a, b) in [
            ("authorization", "authorizatioN2"),
            ("authorization", "authorizatiom"),
            ("authorizationx", "authorizationy"),
            ("a", ""),
            ("content-length", "content_length"),
        ] {
            assert!(!eq_ignore_case(a, b), "{a} {b}");
        }
    }
}
