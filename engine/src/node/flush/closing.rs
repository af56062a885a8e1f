//! Closing buckets: what a flush writes to a shard's journal (the open buckets' partials,
//! and the trim once the finest mark moves), the finest rows a moving mark writes out of
//! the journal, and the coarser roll-ups it calls for (docs/rollup.md).

use super::Flusher;
use crate::aggregate::partial::Partial;
use crate::aggregate::rollup::{self, BucketMap};
use crate::error::Result;
use crate::ingest::key::{self, KeyBytes};
use crate::lang::plan::CellKind;
use crate::lang::types::Value;
use crate::node::marks::Advance;
use crate::store::{JournalWrite, Store, journal};
use crate::time::bucket::Bucketer;

impl Flusher {
    /// The journal writes of store `i`'s next flush: per aggregation, a record of its
    /// fresh partials (which then count as journaled) and the trim its finest mark's move
    /// calls for. Returns them with the number of partials recorded.
    pub(super) fn journal_writes(&mut self, i: usize) -> (Vec<JournalWrite>, usize) {
        let mut writes = Vec::new();
        let mut recorded = 0;
        for &a in &self.stores[i].aggregations {
            let Some(shard) = self.marks[a].shard.clone() else { continue };
            let mut fresh = std::mem::take(&mut self.fresh[a]);
            let trim_before = self.trim[a].take();
            if fresh.is_empty() && trim_before.is_none() {
                self.fresh[a] = fresh;
                continue;
            }
            let append = (!fresh.is_empty()).then(|| {
                // Into a buffer of an earlier record (tens of MB with many keys: see
                // `spare_records`), straight from the list: no row is built per partial.
                let mut buf = self.spare_records.take().unwrap_or_default();
                journal::encode(fresh.iter().map(|(k, b, p)| (k, *b, p)), self.kinds[a].len(), &mut buf);
                recorded += fresh.len();
                let last = fresh.iter().map(|(_, b, _)| *b).max().unwrap_or(i64::MIN);
                (last, buf)
            });
            // Drained, so that the list keeps its memory for the next collects.
            self.journaled[a].merge_entries(fresh.drain(..), &self.kinds[a]);
            self.fresh[a] = fresh;
            writes.push(JournalWrite {
                aggregation: self.plan.aggregations[a].name.clone(),
                shard,
                trim_before,
                append,
            });
        }
        (writes, recorded)
    }

    /// Hashes aggregation `a`'s closed rows into `pending[a][0]`, where something else
    /// is to be merged with them or read from them.
    pub(super) fn settle_closed(&mut self, a: usize) {
        if !self.closed[a].is_empty() {
            let rows = std::mem::take(&mut self.closed[a]);
            rollup::merge_entries(&mut self.pending[a][0], rows, &self.kinds[a]);
        }
    }

    /// Moves aggregation `a`'s finest mark: what the journal holds in `[from, to)`, and the
    /// fresh partials there (not journaled yet), go into the finest duration's pending
    /// rows; the journal is trimmed with the next flush. Returns the partials moved.
    pub(super) fn close_journal(&mut self, a: usize, adv: Advance) -> usize {
        let kinds = &self.kinds[a];
        let closed = self.journaled[a].take_before(adv.to);
        let list = &mut self.closed[a];
        if list.capacity() == 0
            && let Some(spare) = self.spare_rows.take()
        {
            *list = spare;
        }
        let start = list.len();
        // At most this many: made room for once, not grown by doubling.
        crate::buffer::room(list, closed.values().map(|m| m.len()).sum::<usize>() + self.fresh[a].len());
        for (b, mut m) in closed {
            list.extend(m.drain().map(|(k, p)| (k, b, p)));
            self.journaled[a].recycle(m);
        }
        // The fresh partials of closed seconds (not journaled: they go into the finest
        // table with this flush) join them as they are, taken out of `fresh` in place. A
        // (key, second) may now be there more than once (from the journal and fresh, or
        // from several collects): the rows merge when they are sorted
        // (`PartialRows::sorted`), or when they are hashed into `pending[a][0]`. For speed:
        // hashing them into per-second maps here, only to flatten those again, was the
        // largest part of the flush thread on the sparse stream.
        list.extend(self.fresh[a].extract_if(.., |(_, b, _)| *b < adv.to));
        let n = list.len() - start;
        if self.accrued_from[a] != i64::MAX {
            let agg = &self.plan.aggregations[a];
            let at1 = self.marks[a].at[1];
            accrue(&mut self.accrued[a], agg, at1, kinds, list[start..].iter().map(|(k, b, p)| (k, *b, p)));
        }
        if !self.pending[a][0].is_empty() {
            self.settle_closed(a);
        }
        self.marks[a].at[0] = adv.to;
        self.trim[a] = Some(adv.to);
        // Written with the next flush; until it commits, these rows are pending.
        self.marks[a].unsaved = true;
        n
    }

    /// Moves a mark of aggregation `a` (written to store `i`): the rows of the duration
    /// below in `[from, to)`, as stored, and its pending partials there (not stored yet:
    /// events taken since, and what a move of its own mark just rolled into it) are rolled
    /// into the pending ones of the duration. Returns the rows read.
    pub(super) fn roll_up(&mut self, i: usize, a: usize, adv: Advance) -> Result<usize> {
        let plan = self.plan.clone();
        let agg = &plan.aggregations[a];
        let kinds = &self.kinds[a];
        if adv.level == 1 {
            let (from, to) = (adv.from, adv.to);
            let taken: BucketMap = self.accrued[a].extract_if(|(_, b), _| (from..to).contains(b)).collect();
            if self.accrues(a, adv) {
                // Every finest row in [from, to) went through `accrued`: no read.
                rollup::merge_maps(&mut self.pending[a][1], taken, kinds);
                self.marks[a].at[1] = to;
                self.marks[a].unsaved = true;
                return Ok(0);
            }
            // What it reads back includes the finest pending rows.
            self.settle_closed(a);
        }
        let kinds = &self.kinds[a];
        let below = &self.tables[a][adv.level - 1];
        let shard = self.marks[a].shard.clone().expect("only a shard's marks move");
        let shard_col = below.column("SHARD_ID").expect("a partitioned table has SHARD_ID");
        let rows = self.stores[i].store().scan(below, adv.from, adv.to, &[(shard_col, Value::Str(shard))])?;
        let read = rows.len();
        let mut bucketer = Bucketer::new(agg.zone.clone(), agg.durations[adv.level]);
        let (lower, upper) = self.pending[a].split_at_mut(adv.level);
        let into = &mut upper[0];
        let mut buf = Vec::new();
        let entries: Vec<(KeyBytes, i64, Partial)> = rows
            .into_iter()
            .map(|row| {
                let stored = below.from_row(agg, row);
                key::encode_values(&mut buf, &stored.key);
                (KeyBytes::new(&buf), bucketer.start(stored.bucket), stored.partial)
            })
            .collect();
        rollup::merge_entries(into, entries, kinds);
        for ((k, b), p) in lower[adv.level - 1].iter() {
            if (adv.from..adv.to).contains(b) {
                rollup::roll_into(into, k, bucketer.start(*b), p, kinds);
            }
        }
        self.marks[a].at[adv.level] = adv.to;
        // Written with the next flush; until it commits, the rows rolled up here are pending.
        self.marks[a].unsaved = true;
        Ok(read)
    }

    /// Moves every finest mark past the newest bucket the journal holds or will hold, so
    /// that the next flush writes every open bucket into the finest duration: a node that
    /// stops cleanly leaves complete finest tables (coarse ones follow their own marks).
    pub(crate) fn close_journals(&mut self) {
        for a in 0..self.plan.aggregations.len() {
            if !self.marks[a].moves() {
                continue;
            }
            let newest = self.journaled[a].newest().into_iter().chain(self.fresh[a].iter().map(|(_, b, _)| *b)).max();
            let Some(newest) = newest else { continue };
            let agg = &self.plan.aggregations[a];
            let to = agg.zone.bucket_range(agg.durations[0], newest).1;
            let from = self.marks[a].at[0];
            if to > from {
                self.close_journal(a, Advance { level: 0, from, to });
            }
        }
    }
}

/// What `shard`'s journal of `agg` holds at or after its finest mark `at0`, merged by (key,
/// bucket): the node's memory of its open buckets, read when it starts.
pub(super) fn read_journal(
    store: &mut dyn Store,
    agg: &crate::lang::plan::AggPlan,
    key_types: &[crate::lang::types::AttrType],
    shard: &str,
    at0: i64,
) -> Result<BucketMap> {
    let kinds: Vec<CellKind> = agg.cells.iter().map(|c| c.kind).collect();
    let mut map = BucketMap::default();
    for (s, record) in store.journal(&agg.name, at0)? {
        if s != shard {
            continue;
        }
        let entries: Vec<(KeyBytes, i64, Partial)> = journal::decode(&record, &kinds, key_types)?
            .into_iter()
            .filter(|e| e.bucket >= at0)
            .map(|e| (e.key, e.bucket, e.partial))
            .collect();
        rollup::merge_entries(&mut map, entries, &kinds);
    }
    Ok(map)
}

/// Rolls finest partials at or after `at1` (the second duration's mark) into `into`, keyed
/// by the second duration's bucket.
pub(super) fn accrue<'a>(
    into: &mut BucketMap,
    agg: &crate::lang::plan::AggPlan,
    at1: i64,
    kinds: &[CellKind],
    entries: impl Iterator<Item = (&'a KeyBytes, i64, &'a Partial)>,
) {
    let mut bucketer = Bucketer::new(agg.zone.clone(), agg.durations[1]);
    for (k, b, p) in entries {
        if b >= at1 {
            rollup::roll_into(into, k, bucketer.start(b), p, kinds);
        }
    }
}
