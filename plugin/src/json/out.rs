//! JSON values for the records the filter ships: strings escaped per RFC
//! 8259, integers without formatting machinery. `Record::write_json` lays
//! out the object itself; this runs once per call on the request path.

/// A JSON string: quote, backslash and control characters escaped; the
/// rest (valid UTF-8 already) copied in runs.
pub fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    // Ids, tags and model names never need escaping: copy them in one go.
    if !crate::json::bytes::needs_json_escape(bytes) {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(bytes.get(run..i).unwrap_or_default());
        run = i + 1;
        if escape.is_empty() {
            let hex = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(if b >= 0x10 { b'1' } else { b'0' });
            out.push(hex.get(usize::from(b & 15)).copied().unwrap_or(b'0'));
        } else {
            out.extend_from_slice(escape);
        }
    }
    out.extend_from_slice(bytes.get(run..).unwrap_or_default());
    out.push(b'"');
}

/// Decimal digits of `v`.
pub fn unsigned(out: &mut Vec<u8>, mut v: u64) {
    // One digit (a zero count, a short duration) is the common case.
    if v < 10 {
        out.push(b'0' + v as u8);
        return;
    }
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    loop {
        at -= 1;
        if let Some(slot) = buf.get_mut(at) {
            *slot = b'0' + (v % 10) as u8;
        }
        v /= 10;
        if v == 0 || at == 0 {
            break;
        }
    }
    out.extend_from_slice(buf.get(at..).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> String {
        let mut out = Vec::new();
        string(&mut out, v);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_escape_like_serde_json_and_parse_back() {
        for v in [
            "plain",
            "",
            "quo\"te",
            "back\\slash",
            "tab\tnl\ncr\r",
            "\u{1}\u{1f}",
            "é ü 🙂",
        ] {
            let written = s(v);
            assert_eq!(written, serde_json::to_string(v).unwrap(), "{v:?}");
            assert_eq!(serde_json::from_str::<String>(&written).unwrap(), v);
        }
    }

    #[test]
    fn numbers() {
        for n in [0, 7, 10, 1_234_567, u64::MAX] {
            let mut out = Vec::new();
            unsigned(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }
}
