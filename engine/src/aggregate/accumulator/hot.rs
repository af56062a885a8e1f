//! Groups found by their packed key: an open-addressing table whose place for a key is
//! known from the key's hash alone, so the worker can ask for that cache line several
//! events before it needs it.
//!
//! Why not `hashbrown`: with 10^5 group keys a worker's table no longer fits in the cache,
//! and each event's lookup was a cache miss the core waited for; then the partial's words
//! were a second one. Together they were three quarters of a worker's samples at 10^5 keys
//! (perf, `results/issue12-prefetch/`). hashbrown does not say where a key's group lies,
//! so it cannot be fetched ahead; this table can (`prefetch`), and the accumulator takes
//! events in rounds: hash and prefetch a round's keys, look them up and prefetch their
//! words, then update (`Accumulator::add_batch`).
//!
//! Linear probing, at most half full, entries of one half cache line (so an entry never
//! straddles two lines). An empty entry holds a key no event packs to.

use foldhash::fast::FixedState;
use std::hash::BuildHasher;

/// A key no packed key equals: its top nibble is set (packed strings keep it clear), and
/// it is not `NULL_KEY` (all ones).
const EMPTY: u128 = u128::MAX - 1;

/// The smallest table allocated, in entries.
const MIN_CAPACITY: usize = 1024;

/// One group: its packed key, its id, and the slot of the bucket it touched last.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(32))]
pub(super) struct Hot {
    pub(super) key: u128,
    pub(super) bucket: i64,
    pub(super) id: u32,
    pub(super) slot: u32,
}

const VACANT: Hot = Hot { key: EMPTY, bucket: 0, id: 0, slot: 0 };

#[derive(Debug, Default)]
pub(super) struct HotMap {
    entries: Vec<Hot>,
    len: usize,
    hasher: FixedState,
}

impl HotMap {
    #[inline(always)]
    pub(super) fn hash(&self, key: u128) -> u64 {
        self.hasher.hash_one(key)
    }

    #[inline(always)]
    fn home(&self, hash: u64) -> usize {
        // The capacity is a power of two.
        hash as usize & (self.entries.len().wrapping_sub(1))
    }

    /// Asks for the cache line where the key of `hash` starts its probe.
    #[inline(always)]
    pub(super) fn prefetch(&self, hash: u64) {
        if let Some(e) = self.entries.get(self.home(hash)) {
            prefetch(e);
        }
    }

    /// The index of `key`'s entry, if it is in the table.
    #[inline]
    fn find(&self, key: u128, hash: u64) -> Option<usize> {
        if self.entries.is_empty() {
            return None;
        }
        let mask = self.entries.len() - 1;
        let mut i = self.home(hash);
        loop {
            match self.entries[i].key {
                k if k == key => return Some(i),
                EMPTY => return None,
                _ => i = (i + 1) & mask,
            }
        }
    }

    #[inline]
    pub(super) fn get_mut(&mut self, key: u128, hash: u64) -> Option<&mut Hot> {
        self.find(key, hash).map(|i| &mut self.entries[i])
    }

    #[inline]
    pub(super) fn get(&self, key: u128, hash: u64) -> Option<&Hot> {
        self.find(key, hash).map(|i| &self.entries[i])
    }

    /// Adds a key that is not in the table.
    #[inline]
    pub(super) fn insert_new(&mut self, hash: u64, hot: Hot) {
        debug_assert!(hot.key != EMPTY && self.get(hot.key, hash).is_none());
        if (self.len + 1) * 2 > self.entries.len() {
            self.grow();
        }
        self.place(hash, hot);
        self.len += 1;
    }

    fn place(&mut self, hash: u64, hot: Hot) {
        let mask = self.entries.len() - 1;
        let mut i = self.home(hash);
        while self.entries[i].key != EMPTY {
            i = (i + 1) & mask;
        }
        self.entries[i] = hot;
    }

    #[cold]
    fn grow(&mut self) {
        let capacity = (self.entries.len() * 2).max(MIN_CAPACITY);
        let old = std::mem::replace(&mut self.entries, vec![VACANT; capacity]);
        for e in old.into_iter().filter(|e| e.key != EMPTY) {
            self.place(self.hash(e.key), e);
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Empties the table and keeps its memory (the next flush's groups are most likely
    /// as many).
    pub(super) fn clear(&mut self) {
        if self.len > 0 {
            self.entries.fill(VACANT);
            self.len = 0;
        }
    }
}

/// Asks the core to bring `at`'s cache line in, without waiting for it.
///
/// Speed: this is the one `unsafe` of the engine. A prefetch is a hint: it reads nothing
/// the program sees and never faults, whatever the address, so no memory rule is at stake;
/// it is `unsafe` in Rust only because the intrinsic is declared with a target feature
/// (SSE, which every x86-64 has). Elsewhere it does nothing.
#[inline(always)]
pub(super) fn prefetch<T>(at: &T) {
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    // SAFETY: `_mm_prefetch` only hints the cache; `at` is a valid reference anyway.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>((at as *const T).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn an_entry_is_half_a_cache_line() {
        assert_eq!(std::mem::size_of::<Hot>(), 32);
        assert_eq!(std::mem::align_of::<Hot>(), 32);
    }

    proptest! {
        /// The table agrees with std's map on any sequence of inserts and updates,
        /// through growth and clears, with keys crowded into few homes.
        #[test]
        fn agrees_with_a_plain_map(ops in proptest::collection::vec((0u128..3000, any::<bool>()), 1..4000)) {
            let mut table = HotMap::default();
            let mut model: HashMap<u128, u32> = HashMap::new();
            for (n, (key, clear)) in ops.into_iter().enumerate() {
                // Keys that differ only above bit 64 and near NULL_KEY too.
                let key = if key % 7 == 0 { key << 100 } else if key == 1 { u128::MAX } else { key };
                if clear && n % 97 == 0 {
                    table.clear();
                    model.clear();
                }
                let hash = table.hash(key);
                match table.get_mut(key, hash) {
                    Some(h) => {
                        prop_assert_eq!(model.get(&key), Some(&h.slot));
                        h.slot += 1;
                        *model.get_mut(&key).unwrap() += 1;
                    }
                    None => {
                        prop_assert!(!model.contains_key(&key));
                        table.insert_new(hash, Hot { key, bucket: 0, id: n as u32, slot: n as u32 });
                        model.insert(key, n as u32);
                    }
                }
                prop_assert_eq!(table.len(), model.len());
            }
            for (k, slot) in &model {
                prop_assert_eq!(table.get(*k, table.hash(*k)).map(|h| h.slot), Some(*slot));
            }
        }
    }
}
