//! Byte-string interning: equal byte strings get the same dense `u32` id.
//!
//! Speed: the table stores only ids and hashes; the bytes live once, in `list`. Looking up
//! a known key hashes it and compares bytes, with no allocation.

use foldhash::fast::FixedState;
use hashbrown::HashTable;
use std::hash::BuildHasher;

#[derive(Debug, Default, Clone)]
pub struct Interner {
    table: HashTable<u32>,
    list: Vec<Box<[u8]>>,
    hasher: FixedState,
}

impl Interner {
    #[inline]
    pub fn intern(&mut self, bytes: &[u8]) -> u32 {
        let Interner {
            table,
            list,
            hasher,
        } = self;
        let h = hasher.hash_one(bytes);
        if let Some(&id) = table.find(h, |&id| &*list[id as usize] == bytes) {
            return id;
        }
        let id = list.len() as u32;
        list.push(bytes.into());
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
        self.table.clear();
        self.list.clear();
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.list.iter().map(|b| &**b)
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
        i.clear();
        assert!(i.is_empty());
    }
}
