//! Byte-string interning: equal byte strings get the same dense `u32` id.
//!
//! Speed: interning runs once per event for the group key, and was the largest cost of the
//! per-event path. Strings of up to 15 bytes (most group keys: a symbol, an id) are packed
//! into a `u128` and looked up in an integer map (one multiply to hash, one compare).
//! Longer ones go to a table that stores only ids; their bytes live once, in `list`.
//! The entries are [`KeyBytes`]: a group's key is handed to the flush as a copy of its
//! entry (no allocation for short keys, and its hash already made).
//! Packing with zero padding is unambiguous because group-key encodings are prefix-free
//! (they carry their own lengths), and plain strings are told apart by their length,
//! which is packed too.

use crate::ingest::key::KeyBytes;
use foldhash::fast::FixedState;
use hashbrown::{HashMap, HashTable};
use std::hash::BuildHasher;

#[derive(Debug, Default, Clone)]
pub struct Interner {
    short: HashMap<u128, u32, FixedState>,
    table: HashTable<u32>,
    list: Vec<KeyBytes>,
    hasher: FixedState,
    /// Where a new entry's bytes are written before they become a [`KeyBytes`].
    scratch: Vec<u8>,
}

/// Up to 15 bytes and their length in one integer, with no byte-wise copy: the bytes are
/// read as (possibly overlapping) little-endian words and the overlap shifted away. (A
/// copy into a stack buffer followed by a word load stalls on store forwarding, which
/// cost more than the hash lookup itself.)
#[inline]
pub fn pack(b: &[u8]) -> Option<u128> {
    let n = b.len();
    let word = |c: &[u8; 8]| u64::from_le_bytes(*c);
    let half = |c: &[u8; 4]| u32::from_le_bytes(*c) as u64;
    let (lo, hi) = match (b.first_chunk::<8>(), b.last_chunk::<8>(), b.first_chunk::<4>(), b.last_chunk::<4>()) {
        _ if n > 15 => return None,
        (Some(f), Some(l), _, _) if n > 8 => (word(f), word(l) >> ((16 - n) * 8)),
        (Some(f), _, _, _) => (word(f), 0),
        (_, _, Some(f), Some(l)) => (half(f) | (half(l) >> ((8 - n) * 8)) << 32, 0),
        _ if n > 0 => (b[0] as u64 | (b[n / 2] as u64) << 8 | (b[n - 1] as u64) << 16, 0),
        _ => (0, 0),
    };
    Some(lo as u128 | (hi as u128) << 64 | (n as u128) << 120)
}

/// A packed key that no string packs to (its top nibble is set), for a null key.
pub const NULL_KEY: u128 = u128::MAX;

impl Interner {
    /// The id of `bytes` (any length).
    #[inline]
    pub fn intern(&mut self, bytes: &[u8]) -> u32 {
        match pack(bytes) {
            Some(packed) => self.intern_packed(packed, |out| out.extend_from_slice(bytes)),
            None => self.intern_long(bytes),
        }
    }

    /// The id of a key already packed (by [`pack`], or any other injective packing the
    /// caller uses consistently); `bytes` writes the key's stored form, called only when
    /// the key is new.
    #[inline]
    pub fn intern_packed(&mut self, packed: u128, bytes: impl FnOnce(&mut Vec<u8>)) -> u32 {
        if let Some(&id) = self.short.get(&packed) {
            return id;
        }
        let id = self.push_with(bytes);
        self.short.insert(packed, id);
        id
    }

    /// Adds an entry the caller knows is new (it keeps its own index of these), with the
    /// bytes `write` puts down; it is not found by [`Interner::intern`].
    pub fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> u32 {
        self.scratch.clear();
        write(&mut self.scratch);
        self.list.push(KeyBytes::new(&self.scratch));
        (self.list.len() - 1) as u32
    }

    /// The id of a key too long to pack; looked up by its bytes.
    #[inline]
    pub fn intern_long(&mut self, bytes: &[u8]) -> u32 {
        let Interner { table, list, hasher, .. } = self;
        let h = hasher.hash_one(bytes);
        if let Some(&id) = table.find(h, |&id| &*list[id as usize] == bytes) {
            return id;
        }
        let id = list.len() as u32;
        list.push(KeyBytes::new(bytes));
        table.insert_unique(h, id, |&id| hasher.hash_one(&*list[id as usize]));
        id
    }

    pub fn get(&self, id: u32) -> &[u8] {
        &self.list[id as usize]
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Forgets every entry but keeps the memory for reuse.
    pub fn clear(&mut self) {
        self.short.clear();
        self.table.clear();
        self.list.clear();
    }

    /// The entries, by id.
    pub fn keys(&self) -> &[KeyBytes] {
        &self.list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_bytes_equal_ids() {
        let mut i = Interner::default();
        let a = i.intern(b"IBM");
        let b = i.intern(b"WSO2");
        assert_eq!(i.intern(b"IBM"), a);
        assert_ne!(a, b);
        assert_eq!(i.get(b), b"WSO2");
        assert_eq!(i.intern(b""), 2);
        for n in 0..10_000u32 {
            i.intern(&n.to_le_bytes());
        }
        assert_eq!(i.intern(b"WSO2"), b);
        assert_eq!(i.len(), 10_003);
        // Short and long, with zero bytes and lengths that would collide without the length.
        let long = b"a string of more than fifteen bytes";
        let l = i.intern(long);
        assert_eq!(i.intern(long), l);
        assert_ne!(i.intern(b"ab"), i.intern(b"ab\0"));
        assert_ne!(i.intern(b"\0"), i.intern(b""));
        assert_eq!(i.get(l), long);
        i.clear();
        assert!(i.is_empty());
    }

    #[test]
    fn packing_is_injective_on_short_strings() {
        let mut seen = std::collections::HashMap::new();
        let alphabet = [0u8, 1, b'a', 0xff];
        // Every string of length 0..=6 over a small alphabet, plus longer variations.
        let mut all: Vec<Vec<u8>> = vec![vec![]];
        let mut level: Vec<Vec<u8>> = vec![vec![]];
        for _ in 0..6 {
            level = level.iter().flat_map(|s| alphabet.iter().map(move |c| [s.clone(), vec![*c]].concat())).collect();
            all.extend(level.iter().cloned());
        }
        for base in [b"SYM0001xx".to_vec(), vec![0xff; 9], vec![0; 9]] {
            for n in 0..=15usize {
                for c in alphabet {
                    let mut s = base.clone();
                    s.resize(n, c);
                    all.push(s);
                }
            }
        }
        for s in &all {
            let p = pack(s).unwrap();
            assert_ne!(p, NULL_KEY);
            if let Some(other) = seen.insert(p, s.clone()) {
                assert_eq!(&other, s, "{other:?} and {s:?} pack alike");
            }
        }
        assert!(seen.len() > 5000);
        assert_eq!(pack(&[7u8; 16]), None);
    }
}
