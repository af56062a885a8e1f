//! Partials of one duration kept bucket by bucket: a map of group keys per bucket start.
//!
//! The node holds its open finest buckets this way (what its journal holds after the
//! finest mark): every flush merges the keys it touched into them, and every closed second
//! leaves them whole. In one map keyed by (key, bucket), as before, taking the closed
//! buckets out left a tombstone per entry, and the next merge rehashed the whole table,
//! into freshly zeroed pages: measured with 100 K keys, the flush thread (which sets the
//! pace there) spent a third of its time in that rehash, the page clearing and the
//! extraction. Here a closed bucket is split off the tree in one step, and a bucket's map
//! is sized from the one before it, so it grows once.

use crate::aggregate::partial::Partial;
use crate::aggregate::rollup::BucketMap;
use crate::ingest::key::KeyBytes;
use crate::lang::plan::CellKind;
use foldhash::fast::FixedState;
use hashbrown::HashMap;
use std::collections::BTreeMap;

/// The partials of one bucket, by group key.
pub type KeyMap = HashMap<KeyBytes, Partial, FixedState>;

/// Partials by bucket start, then group key.
#[derive(Debug, Default)]
pub struct ByBucket {
    buckets: BTreeMap<i64, KeyMap>,
    /// Emptied maps of closed buckets (see [`ByBucket::recycle`]), for the next new ones.
    spare: crate::buffer::Spares<KeyMap>,
}

impl ByBucket {
    /// Merges `entries` in (a drain, say, so that the caller's list keeps its memory).
    pub fn merge_entries(&mut self, entries: impl IntoIterator<Item = (KeyBytes, i64, Partial)>, kinds: &[CellKind]) {
        // Entries come mostly in runs of one bucket: look the bucket up once per run.
        let mut iter = entries.into_iter().peekable();
        while let Some((_, bucket, _)) = iter.peek() {
            let bucket = *bucket;
            let hint = self.buckets.range(..bucket).next_back().map_or(0, |(_, m)| m.len());
            let spare = &mut self.spare;
            let map = self.buckets.entry(bucket).or_insert_with(|| match spare.take() {
                Some(mut m) => {
                    m.reserve(hint);
                    m
                }
                None => KeyMap::with_capacity_and_hasher(hint, FixedState::default()),
            });
            while let Some((key, _, p)) = iter.next_if(|(_, b, _)| *b == bucket) {
                match map.entry(key) {
                    hashbrown::hash_map::Entry::Occupied(mut e) => e.get_mut().merge_owned(p, kinds),
                    hashbrown::hash_map::Entry::Vacant(e) => {
                        e.insert(p);
                    }
                }
            }
        }
    }

    /// Takes the buckets that start before `before` out.
    pub fn take_before(&mut self, before: i64) -> BTreeMap<i64, KeyMap> {
        let newer = self.buckets.split_off(&before);
        std::mem::replace(&mut self.buckets, newer)
    }

    /// Keeps the memory of a closed bucket's map (emptied) for a bucket to come. For speed:
    /// with many keys a map is megabytes, and a new one was pages the kernel had to zero
    /// while the flush thread waited (profiled at 100 K keys: page zeroing was 13% of that
    /// thread, new maps of seconds a part of it).
    /// At most [`Spares::KEEP`](crate::buffer::Spares::KEEP) are kept: the buckets open at
    /// once are few.
    pub fn recycle(&mut self, mut map: KeyMap) {
        if map.capacity() > 0 {
            map.clear();
            self.spare.keep(map);
        }
    }

    /// The newest bucket start held.
    pub fn newest(&self) -> Option<i64> {
        self.buckets.keys().next_back().copied()
    }

    /// Partials held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.buckets.values().map(HashMap::len).sum()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.buckets.values().all(HashMap::is_empty)
    }
}

impl From<BucketMap> for ByBucket {
    fn from(map: BucketMap) -> ByBucket {
        let mut out = ByBucket::default();
        for ((key, bucket), p) in map {
            out.buckets.entry(bucket).or_default().insert(key, p);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::partial::{CellValue, Num};

    fn p(n: i64) -> Partial {
        Partial { cells: vec![CellValue::Num(Num::Int(n))], latest: None }
    }

    fn total(m: &KeyMap, key: &KeyBytes) -> Option<i64> {
        m.get(key).map(|p| match p.cells[0] {
            CellValue::Num(Num::Int(n)) => n,
            _ => panic!("an integer sum"),
        })
    }

    #[test]
    fn merges_by_bucket_and_key_and_splits_off_closed_buckets_whole() {
        let kinds = [CellKind::Sum];
        let (a, b): (KeyBytes, KeyBytes) = (KeyBytes::new(b"a"), KeyBytes::new(b"b"));
        let mut m = ByBucket::default();
        m.merge_entries(vec![(a.clone(), 1000, p(1)), (b.clone(), 1000, p(2)), (a.clone(), 2000, p(3))], &kinds);
        m.merge_entries(vec![(a.clone(), 2000, p(4)), (a.clone(), 1000, p(5)), (b.clone(), 3000, p(6))], &kinds);
        assert_eq!((m.len(), m.newest()), (4, Some(3000)));
        let closed = m.take_before(2000);
        assert_eq!(closed.keys().copied().collect::<Vec<_>>(), vec![1000]);
        assert_eq!((total(&closed[&1000], &a), total(&closed[&1000], &b)), (Some(6), Some(2)));
        assert_eq!(closed.values().map(HashMap::len).sum::<usize>(), 2);
        assert_eq!((m.len(), m.newest()), (2, Some(3000)));
        let rest = m.take_before(i64::MAX);
        assert_eq!(total(&rest[&2000], &a), Some(7));
        assert!(m.is_empty());
        assert_eq!(m.newest(), None);
        // A closed bucket's map comes back empty for the next bucket, with its memory.
        for (_, map) in closed.into_iter().chain(rest) {
            m.recycle(map);
        }
        assert_eq!(m.spare.len(), 2);
        let room = m.spare.iter().map(HashMap::capacity).max().unwrap();
        m.merge_entries(vec![(b.clone(), 4000, p(8)), (b.clone(), 4000, p(1))], &kinds);
        assert_eq!((m.len(), m.spare.len()), (1, 1));
        assert!(m.buckets[&4000].capacity() >= room.min(3));
        assert_eq!(total(&m.buckets[&4000], &b), Some(9));
        assert_eq!(total(&m.buckets[&4000], &a), None);
    }
}
