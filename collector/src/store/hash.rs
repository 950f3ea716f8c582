//! The one fast hasher both stores use, for per-batch maps and series ids.
//!
//! SipHash (the std default) costs more than the rest of a record's
//! Rust-side work when fed the ~14 short strings of a series. `FastHasher`
//! mixes 8 bytes per step. It is not collision-resistant against chosen
//! input, but its inputs come from authenticated gateways and every lookup
//! compares the full key, so a collision only costs time, never correctness.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

/// A map that lives for one batch (e.g. rollup deltas).
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// A map keyed by values that are already hash codes (`FastHasher` output).
pub(crate) type PrehashedMap<V> = HashMap<u64, V, BuildPrehashed>;

#[derive(Default)]
pub(crate) struct FastHasher(u64);

impl FastHasher {
    const MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15; // odd, 2^64 / golden ratio

    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(26) ^ word).wrapping_mul(Self::MULTIPLIER);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut buf = [0u8; 8];
            buf.copy_from_slice(word);
            self.mix(u64::from_le_bytes(buf));
        }
        let mut tail = [0u8; 8];
        let rest = words.remainder();
        tail[..rest.len()].copy_from_slice(rest);
        // The length keeps "ab" + "" and "a" + "b" apart.
        self.mix(u64::from_le_bytes(tail) ^ ((bytes.len() as u64) << 56));
    }

    fn finish(&self) -> u64 {
        // Spread the high bits down too: the table picks buckets with the
        // low bits and filters with the top 7.
        let h = self.0;
        (h ^ (h >> 29)).wrapping_mul(Self::MULTIPLIER) ^ (h >> 32)
    }
}

/// Identity hasher for keys that are already hash codes.
#[derive(Default)]
pub(crate) struct Prehashed(u64);

impl Hasher for Prehashed {
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed here; fold anything else in anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[derive(Default, Clone, Copy)]
pub(crate) struct BuildPrehashed;

impl BuildHasher for BuildPrehashed {
    type Hasher = Prehashed;
    fn build_hasher(&self) -> Prehashed {
        Prehashed::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_hasher_separates_nearby_inputs() {
        let hash = |parts: &[&[u8]]| {
            let mut h = FastHasher::default();
            for part in parts {
                h.write(part);
            }
            h.finish()
        };
        let inputs: [&[&[u8]]; 6] = [
            &[b"ab", b""],
            &[b"a", b"b"],
            &[b"key-1"],
            &[b"key-2"],
            &[b"0123456789abcdef"],
            &[b"0123456789abcdeg"],
        ];
        let hashes: Vec<u64> = inputs.iter().map(|parts| hash(parts)).collect();
        for (i, a) in hashes.iter().enumerate() {
            for b in hashes.iter().skip(i + 1) {
                assert_ne!(a, b);
            }
        }
        assert_eq!(hash(&[b"key-1"]), hash(&[b"key-1"]), "deterministic");
    }
}
