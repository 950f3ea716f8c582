//! Signed tags: `x-aispend-signature`, so a service behind the gateway can
//! check that the tags, key id and request id it reads were set by this
//! filter (README "Signed tags"; plugin/CONFIG.md `signing`).
//!
//! Header: `t=<unix seconds>,kid=<key id>,v1=<64 lowercase hex>`, where `v1`
//! is HMAC-SHA256(secret, canonical) and `canonical` is, byte for byte:
//!
//! ```text
//! v1\n<t>\n<kid>\n
//! <name>:<value>\n     one line per x-aispend-* header the filter sets (the
//!                      tags, x-aispend-key-id, x-aispend-request-id), not
//!                      x-aispend-signature nor x-aispend-label-*, nor one
//!                      with an empty value (Kong blanks a client's stripped
//!                      header in place); <name> is the header name, lowercase,
//!                      without its `x-aispend-` prefix (`team`, `key-id`);
//!                      lines sorted by name (bytewise)
//! ```
//!
//! Every value is of the tag charset `[A-Za-z0-9._:/-]` (config and
//! registry validation), so no line can forge another.
//!
//! The secret's padded blocks are hashed once per config (`Signer::new`);
//! a call clones the two midstates and hashes only its own bytes.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::config::SigningConfig;
use crate::request::tags;

pub const SIGNATURE_HEADER: &str = "x-aispend-signature";
const LABEL_PREFIX: &str = "x-aispend-label-";
const BLOCK: usize = 64;

/// HMAC-SHA256 with a fixed key, its inner and outer pads pre-hashed.
#[derive(Clone)]
pub struct Hmac {
    inner: Sha256,
    outer: Sha256,
}

impl Hmac {
    pub fn new(secret: &[u8]) -> Self {
        let mut block = [0u8; BLOCK];
        if secret.len() > BLOCK {
            let digest = Sha256::digest(secret);
            for (b, d) in block.iter_mut().zip(digest.iter()) {
                *b = *d;
            }
        } else {
            for (b, s) in block.iter_mut().zip(secret) {
                *b = *s;
            }
        }
        let pad = |x: u8| {
            let mut p = block;
            p.iter_mut().for_each(|b| *b ^= x);
            let mut h = Sha256::new();
            h.update(p);
            h
        };
        Hmac {
            inner: pad(0x36),
            outer: pad(0x5c),
        }
    }

    /// The MAC of the parts, concatenated.
    pub fn mac<'a>(&self, parts: impl IntoIterator<Item = &'a [u8]>) -> [u8; 32] {
        let mut inner = self.inner.clone();
        for p in parts {
            inner.update(p);
        }
        let mut outer = self.outer.clone();
        outer.update(inner.finalize());
        outer.finalize().into()
    }
}

impl fmt::Debug for Hmac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hmac(<key>)")
    }
}

/// The signing key of this config (the first of `signing.keys`).
#[derive(Debug, Clone)]
pub struct Signer {
    kid: String,
    hmac: Hmac,
}

impl Signer {
    pub fn new(config: Option<&SigningConfig>) -> Option<Self> {
        let key = config?.keys.first()?;
        Some(Signer {
            kid: key.id.clone(),
            hmac: Hmac::new(key.secret.expose()),
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The header value for the headers the filter sets toward the
    /// upstream (`set`: name, value; any order; non-aispend names, such as
    /// the provider credential, are left out here).
    pub fn sign<'a>(
        &self,
        unix_secs: u64,
        set: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> String {
        let mut lines: Vec<(&str, &str)> = set
            .filter(|(n, v)| signed_name(n) && !v.is_empty())
            .collect();
        lines.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let t = unix_secs.to_string();
        // One buffer, one update: the hasher's per-call cost is larger than
        // copying these few hundred bytes.
        // Each line names the header without its `x-aispend-` prefix: 70
        // bytes less for a typical call, one SHA-256 block fewer.
        let lines = lines
            .iter()
            .map(|(n, v)| (n.get(tags::PREFIX.len()..).unwrap_or(n), *v));
        let len = lines
            .clone()
            .map(|(n, v)| n.len() + v.len() + 2)
            .sum::<usize>();
        let mut msg = Vec::with_capacity(t.len() + self.kid.len() + 5 + len);
        msg.extend_from_slice(b"v1\n");
        msg.extend_from_slice(t.as_bytes());
        msg.push(b'\n');
        msg.extend_from_slice(self.kid.as_bytes());
        msg.push(b'\n');
        for (n, v) in lines {
            msg.extend_from_slice(n.as_bytes());
            msg.push(b':');
            msg.extend_from_slice(v.as_bytes());
            msg.push(b'\n');
        }
        let mac = self.hmac.mac([msg.as_slice()]);
        let mut out = String::with_capacity(t.len() + self.kid.len() + 80);
        out.push_str("t=");
        out.push_str(&t);
        out.push_str(",kid=");
        out.push_str(&self.kid);
        out.push_str(",v1=");
        push_hex(&mut out, &mac);
        out
    }
}

/// An `x-aispend-` header the signature covers.
fn signed_name(name: &str) -> bool {
    name.starts_with(tags::PREFIX) && !name.starts_with(LABEL_PREFIX) && name != SIGNATURE_HEADER
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 64];
    for (pair, b) in buf.chunks_exact_mut(2).zip(bytes) {
        for (slot, nibble) in pair.iter_mut().zip([b >> 4, b & 0xf]) {
            *slot = HEX.get(usize::from(nibble)).copied().unwrap_or(b'0');
        }
    }
    let n = (bytes.len() * 2).min(buf.len());
    if let Some(Ok(hex)) = buf.get(..n).map(std::str::from_utf8) {
        out.push_str(hex);
    }
}

#[cfg(test)]
mod tests;
