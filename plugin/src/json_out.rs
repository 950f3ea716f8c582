//! A minimal JSON object writer for the records the filter ships: strings
//! escaped per RFC 8259, integers without formatting machinery. Small on
//! purpose: it runs once per call on the gateway's request path.

/// Writes `{"k":v,…}` into a byte buffer; `close` ends the object.
pub struct JsonObject<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> JsonObject<'a> {
    pub fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        JsonObject { out, first: true }
    }

    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        string(self.out, key);
        self.out.push(b':');
    }

    pub fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        string(self.out, value);
    }

    pub fn opt_str(&mut self, key: &str, value: Option<&str>) {
        match value {
            Some(v) => self.str(key, v),
            None => self.null(key),
        }
    }

    pub fn u64(&mut self, key: &str, value: u64) {
        self.key(key);
        unsigned(self.out, value);
    }

    pub fn opt_u64(&mut self, key: &str, value: Option<u64>) {
        match value {
            Some(v) => self.u64(key, v),
            None => self.null(key),
        }
    }

    pub fn bool(&mut self, key: &str, value: bool) {
        self.key(key);
        self.out
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    pub fn null(&mut self, key: &str) {
        self.key(key);
        self.out.extend_from_slice(b"null");
    }

    /// A nested object of string values.
    pub fn map<'v>(&mut self, key: &str, entries: impl Iterator<Item = (&'v str, &'v str)>) {
        self.key(key);
        let mut inner = JsonObject::open(self.out);
        for (k, v) in entries {
            inner.str(k, v);
        }
        inner.close();
    }

    pub fn close(self) {
        self.out.push(b'}');
    }
}

/// A JSON string: quote, backslash and control characters escaped; the
/// rest (valid UTF-8 already) copied in runs.
pub fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    // Ids, tags and model names never need escaping: copy them in one go.
    if bytes.iter().all(|&b| b >= 0x20 && b != b'"' && b != b'\\') {
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
    fn numbers_and_objects() {
        for n in [0, 7, 10, 1_234_567, u64::MAX] {
            let mut out = Vec::new();
            unsigned(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
        let mut out = Vec::new();
        let mut o = JsonObject::open(&mut out);
        o.str("a", "x");
        o.opt_u64("b", None);
        o.bool("c", true);
        o.map("d", [("k", "v")].into_iter());
        o.map("e", std::iter::empty());
        o.close();
        assert_eq!(out, br#"{"a":"x","b":null,"c":true,"d":{"k":"v"},"e":{}}"#);
    }
}
