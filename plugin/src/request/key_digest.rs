//! The sha256 of presented virtual keys, remembered for registered keys seen
//! recently. Hashing a key costs about 5k wasm instructions on every call; a
//! client sends the same key call after call, so a hit costs a comparison.
//!
//! Only keys found in the registry are remembered (a client spraying random
//! keys fills nothing), in a small direct-mapped table: a colliding key
//! replaces the older one. The registry lookup still follows every digest, so
//! a key revoked by a new config is refused as before. The raw keys kept here
//! are already in this VM's memory while their requests pass; the config holds
//! only hashes, as before.

use std::cell::RefCell;

use sha2::{Digest, Sha256};

const SLOTS: usize = 64;

#[derive(Debug, Default)]
struct Slot {
    key: Box<[u8]>,
    digest: [u8; 32],
}

#[derive(Debug, Default)]
pub struct DigestCache {
    slots: RefCell<Vec<Slot>>,
}

impl Clone for DigestCache {
    /// A copy starts empty: it is a cache.
    fn clone(&self) -> Self {
        DigestCache::default()
    }
}

/// The key's bytes eight at a time (the last word zero-padded).
fn words(key: &[u8]) -> impl Iterator<Item = u64> + '_ {
    key.chunks(8).map(|c| {
        let mut w = [0u8; 8];
        if let Some(dst) = w.get_mut(..c.len()) {
            dst.copy_from_slice(c);
        }
        u64::from_le_bytes(w)
    })
}

fn slot_of(key: &[u8]) -> usize {
    // FNV-1a over words: keys are random text, any spread will do.
    let h = words(key).fold(0xcbf2_9ce4_8422_2325u64, |h, w| {
        (h ^ w).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(29)
    });
    (h >> 32) as usize % SLOTS
}

/// Equal contents, in time that depends only on the length (the key is a
/// secret; how much of it matched must not show in the timing).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && words(a)
            .zip(words(b))
            .fold(0u64, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl DigestCache {
    /// The digest of `key` and whether it came from the table.
    pub fn digest(&self, key: &[u8]) -> ([u8; 32], bool) {
        if let Ok(slots) = self.slots.try_borrow() {
            if let Some(slot) = slots.get(slot_of(key)) {
                if !slot.key.is_empty() && same(&slot.key, key) {
                    return (slot.digest, true);
                }
            }
        }
        (Sha256::digest(key).into(), false)
    }

    /// Keep `key` → `digest` (a registered key).
    pub fn remember(&self, key: &[u8], digest: [u8; 32]) {
        let Ok(mut slots) = self.slots.try_borrow_mut() else {
            return;
        };
        if slots.is_empty() {
            slots.resize_with(SLOTS, Slot::default);
        }
        if let Some(slot) = slots.get_mut(slot_of(key)) {
            *slot = Slot {
                key: key.into(),
                digest,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(key: &[u8]) -> [u8; 32] {
        Sha256::digest(key).into()
    }

    #[test]
    fn remembered_keys_hit_and_others_are_hashed() {
        let cache = DigestCache::default();
        let key = b"sk-aispend-demo-search";
        assert_eq!(cache.digest(key), (sha(key), false));
        cache.remember(key, sha(key));
        assert_eq!(cache.digest(key), (sha(key), true));
        // Same slot or not, another key is never answered from the table.
        for other in [
            &b"sk-aispend-demo-searcH"[..],
            b"sk-aispend-demo-searc",
            b"",
        ] {
            assert_eq!(cache.digest(other), (sha(other), false));
        }
    }

    #[test]
    fn a_colliding_key_replaces_the_older_one() {
        let cache = DigestCache::default();
        let a = b"key-0".to_vec();
        let b = (1..10_000)
            .map(|i| format!("key-{i}").into_bytes())
            .find(|k| slot_of(k) == slot_of(&a))
            .unwrap();
        cache.remember(&a, sha(&a));
        cache.remember(&b, sha(&b));
        assert_eq!(cache.digest(&b), (sha(&b), true));
        assert_eq!(cache.digest(&a), (sha(&a), false));
    }
}
