//! The flush: turn the workers' handed-over states into partials, roll them up into every
//! duration, and write them to the stores, one transaction per store.
//!
//! For a partitioned aggregation a duration takes only events older than its roll-up mark;
//! the newer ones reach it when the mark moves ([`crate::node::marks`], docs/rollup.md),
//! which a flush does once a bucket has closed. Events newer than the finest mark go to the
//! shard's journal ([`crate::store::journal`]): one record a flush, not a row per key; the
//! node keeps what its journal holds in memory and writes it into the finest duration when
//! the mark passes it. A coarse duration's roll-up reads the finer rows back.
//!
//! Each store gets its rows as one numbered flush. A flush that fails stays *in flight*
//! with its number and exactly its rows, and is retried as it is before anything newer goes
//! to that store: if the failure hid a commit (the connection dropped after COMMIT was
//! sent), the store sees the number again and skips it, so nothing is counted twice. New
//! partials meanwhile merge into the pending maps (merging is associative), so a store
//! outage delays data but loses none.

use crate::aggregate::accumulator::{Program, State};
use crate::aggregate::by_bucket::ByBucket;
use crate::aggregate::partial::Partial;
use crate::aggregate::rollup::{self, BucketMap};
use crate::buffer::Spares;
use crate::error::{Error, Result};
use crate::ingest::key::KeyBytes;
use crate::lang::plan::{AppPlan, CellKind};
use crate::lang::types::AttrType;
use crate::node::marks::{Advance, Marks};
use crate::node::partial_rows::PartialRows;
use crate::store::schema::TableSchema;
use crate::store::{Applied, Mark, Rows};
use crate::time::clock::now_ms;
use crate::time::granularity::Granularity;
use rayon::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod closing;
mod slot;

use closing::{accrue, read_journal};
pub(crate) use slot::{Done, InFlight, Job, StoreSlot};

/// Finest partials as `(group key, bucket start, partial)`.
type Entries = Vec<(KeyBytes, i64, Partial)>;

/// Rows written, by duration (in [`Granularity::ALL`] order) and kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowCounts {
    /// Rows of buckets newer than any this node had written to that table: inserted.
    pub new: [u64; 6],
    /// Rows of buckets the table may already hold (late events, or an unpartitioned
    /// aggregation, whose rows several nodes write): merged.
    pub merged: [u64; 6],
}

/// Figures of one flush.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlushStats {
    /// Events the flushed partials hold.
    pub events: u64,
    /// Rows written (all durations).
    pub rows: usize,
    /// Flushes a store had applied before (retries after an ambiguous commit), skipped.
    pub already_applied: usize,
    /// Finer rows read back from the stores and rolled up into a coarser duration whose
    /// buckets closed.
    pub rolled_up: usize,
    /// Finest partials appended to the journal (in one record per aggregation), not
    /// counted in `rows`.
    pub journaled: usize,
    /// Journal partials written into the finest duration as its mark moved (in `rows`).
    pub closed: usize,
    /// `rows` by duration and kind.
    pub row_counts: RowCounts,
    /// Where the flusher's time went: merging the workers' partials and rolling them up
    /// (since the last flush), turning partials into rows and journal records, reading
    /// finer rows back for roll-ups, and waiting for the stores' transactions.
    pub rollup_time: Duration,
    pub encode_time: Duration,
    pub read_time: Duration,
    pub store_time: Duration,
    pub elapsed: Duration,
    /// Every event collected at or before this generation is committed in every store
    /// ([`crate::node::Node::flush_at`]).
    pub durable: u64,
}

pub(crate) struct Flusher {
    plan: Arc<AppPlan>,
    programs: Vec<Arc<Program>>,
    kinds: Vec<Vec<CellKind>>,
    tables: Arc<Vec<Vec<TableSchema>>>,
    pub(crate) stores: Vec<StoreSlot>,
    /// `[aggregation][duration]`: rolled up, not yet written. Duration `k` holds only
    /// events before `marks[aggregation].at[k]`; the finest holds every one.
    pending: Vec<Vec<BucketMap>>,
    /// Per aggregation: how far each duration of this node's shard is rolled up.
    marks: Vec<Marks>,
    /// Per aggregation: finest partials at or after the finest mark, for the journal's next
    /// record; as the workers handed them over (a key may be there once per worker: the
    /// record's reader merges them), so that live partials are hashed once a flush, into
    /// `journaled`, not also into a map of their own.
    fresh: Vec<Entries>,
    /// Per aggregation: what this shard's journal holds at or after the finest mark (every
    /// record confirmed or in flight), merged: written into the finest duration, and
    /// trimmed from the journal, when the mark passes it.
    journaled: Vec<ByBucket>,
    /// Per aggregation: finest rows whose seconds closed in the flush being taken, none
    /// also in `pending[a][0]`, but a (key, bucket) possibly more than once (merged when
    /// the rows are sorted): kept as a list, not hashed into `pending[a][0]`, when that
    /// map is empty (see `close_journal`).
    closed: Vec<Entries>,
    /// Buffers of journal records whose flush was confirmed, for the next records. For
    /// speed: a record is tens of MB with many keys, and a new buffer grown by doubling
    /// had the kernel zeroing fresh pages for every flush.
    spare_records: Spares<Vec<u8>>,
    /// Lists of rows whose flush was confirmed (emptied), for the next closed rows: as
    /// `spare_records`, for speed.
    spare_rows: Spares<Entries>,
    /// Per aggregation: where the next flush trims the journal (the finest mark moved).
    trim: Vec<Option<i64>>,
    /// Per aggregation: the second duration's partials of every finest partial that went
    /// (or goes) into the finest duration at or after the second duration's mark, keyed by
    /// the second duration's bucket. The second duration's roll-up takes them from here
    /// instead of reading the finest rows back (for speed, and so that it needs no store
    /// read: an overlapped flush can do it), when they are complete: see `accrued_from`.
    accrued: Vec<BucketMap>,
    /// Per aggregation: `accrued` holds every finest row at or after this bucket (the finest
    /// mark when the node started: every finest row from there on was written by this
    /// process). `i64::MAX` when marks do not move or there is one duration.
    accrued_from: Vec<i64>,
    /// `[aggregation][duration]`: the newest bucket this node wrote (or found stored for
    /// its shard), so that a row can be counted as new or merged.
    newest_written: Vec<Vec<i64>>,
    /// Time spent in `absorb` since the last flush.
    absorb_time: Duration,
    /// `tally.rollup_delay`, in ms.
    rollup_delay_ms: i64,
    pending_events: u64,
    /// The generation of the last collect absorbed.
    generation: u64,
    /// The number of the last flush handed to a store; continues across restarts.
    flush_seq: i64,
    /// `(producer, highest sequence number)` of the version 2 batches absorbed and not yet
    /// in a flush: they go with the next flush of store 0, the one store of a node that
    /// takes version 2 clients (docs/delivery.md).
    producers: Vec<(String, i64)>,
    /// Roll-up threads (named; one per core).
    pool: rayon::ThreadPool,
}

impl Flusher {
    pub(crate) fn new(
        plan: Arc<AppPlan>,
        programs: Vec<Arc<Program>>,
        mut stores: Vec<StoreSlot>,
        flush_seq: i64,
        rollup_delay: Duration,
    ) -> Result<Flusher> {
        let tables = TableSchema::all(&plan);
        let mut marks: Vec<Marks> = plan.aggregations.iter().map(Marks::fixed).collect();
        let mut journaled: Vec<ByBucket> = plan.aggregations.iter().map(|_| ByBucket::default()).collect();
        let mut newest_written: Vec<Vec<i64>> =
            plan.aggregations.iter().map(|a| vec![i64::MIN; a.durations.len()]).collect();
        for slot in &mut stores {
            for a in slot.aggregations.clone() {
                let agg = &plan.aggregations[a];
                if let Some(shard) = &agg.shard_id {
                    let newest: Vec<Option<i64>> =
                        tables[a].iter().map(|t| slot.store().newest_bucket(t, shard)).collect::<Result<_>>()?;
                    newest_written[a] = newest.iter().map(|b| b.unwrap_or(i64::MIN)).collect();
                    marks[a] = Marks::load(slot.store(), agg, &newest, shard)?;
                    let key_types = programs[a].key_types();
                    journaled[a] = read_journal(slot.store(), agg, key_types, shard, marks[a].at[0])?.into();
                    // The journal's events were taken: their buckets close as time goes on,
                    // even if no new event comes.
                    if let Some(newest) = journaled[a].newest() {
                        marks[a].newest = newest;
                    }
                }
            }
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("tally-rollup-{i}"))
            .build()
            .map_err(|e| Error::io("cannot start the roll-up threads", std::io::Error::other(e)))?;
        Ok(Flusher {
            kinds: plan.aggregations.iter().map(|a| a.cells.iter().map(|c| c.kind).collect()).collect(),
            pending: plan
                .aggregations
                .iter()
                .map(|a| a.durations.iter().map(|_| BucketMap::default()).collect())
                .collect(),
            fresh: plan.aggregations.iter().map(|_| Vec::new()).collect(),
            closed: plan.aggregations.iter().map(|_| Vec::new()).collect(),
            trim: vec![None; plan.aggregations.len()],
            spare_records: Spares::default(),
            spare_rows: Spares::default(),
            accrued: plan.aggregations.iter().map(|_| BucketMap::default()).collect(),
            accrued_from: plan
                .aggregations
                .iter()
                .zip(&marks)
                .map(|(agg, m)| if m.moves() && agg.durations.len() > 1 { m.at[0] } else { i64::MAX })
                .collect(),
            journaled,
            newest_written,
            absorb_time: Duration::ZERO,
            plan,
            programs,
            tables: Arc::new(tables),
            stores,
            marks,
            rollup_delay_ms: rollup_delay.as_millis() as i64,
            pending_events: 0,
            generation: 0,
            flush_seq,
            producers: Vec::new(),
            pool,
        })
    }

    pub(crate) fn tables(&self) -> &[Vec<TableSchema>] {
        &self.tables
    }

    /// Takes the states the workers handed over (`[worker][aggregation]`) at collect
    /// `generation`, and merges their partials into the pending ones of every duration.
    pub(crate) fn absorb(&mut self, states: &[Vec<State>], generation: u64, producers: Vec<(String, i64)>) {
        let started = Instant::now();
        for (p, seq) in producers {
            match self.producers.iter_mut().find(|(q, _)| *q == p) {
                Some((_, s)) => *s = (*s).max(seq),
                None => self.producers.push((p, seq)),
            }
        }
        self.generation = self.generation.max(generation);
        self.pending_events += states.iter().flatten().map(|s| s.events).sum::<u64>();
        // Per aggregation, in parallel: decode each worker's slots into owned partials,
        // merge across workers (the same group can be in several when routing was round
        // robin), and roll up what is older than each duration's mark.
        type Absorbed = (i64, Vec<BucketMap>, BucketMap);
        // Each aggregation's fresh list is appended to where it lies (taken out for the
        // parallel part and put back): for speed, a list built anew every collect was a
        // fresh allocation of tens of MB grown by doubling, and the kernel zeroing its
        // pages a large share of the flush thread's time on the sparse stream.
        let fresh: Vec<Entries> = self.fresh.iter_mut().map(std::mem::take).collect();
        let rolled: Vec<(Entries, Option<Absorbed>)> = self.pool.install(|| {
            fresh
                .into_par_iter()
                .enumerate()
                .map(|(a, mut newer)| {
                    if states.iter().all(|w| w[a].is_empty()) {
                        return (newer, None);
                    }
                    let at = &self.marks[a].at;
                    // Partials at or after every mark (live events) go to the journal only:
                    // kept as handed over, without a map of their own (for speed: with many
                    // keys this is most of them).
                    let open =
                        if self.marks[a].moves() { at.iter().copied().max().unwrap_or(i64::MAX) } else { i64::MAX };
                    let mut finest = BucketMap::default();
                    let mut newest = i64::MIN;
                    crate::buffer::room(&mut newer, states.iter().map(|w| w[a].len()).sum());
                    for w in states {
                        let start = newer.len();
                        w[a].append_partials(&self.programs[a], &mut newer);
                        newest = newer[start..].iter().map(|(_, b, _)| *b).fold(newest, i64::max);
                        let older: Vec<(KeyBytes, i64, Partial)> = if open == i64::MAX {
                            newer.drain(start..).collect()
                        } else if newer[start..].iter().any(|(_, b, _)| *b < open) {
                            newer.extract_if(start.., |(_, b, _)| *b < open).collect()
                        } else {
                            continue;
                        };
                        rollup::merge_entries(&mut finest, older, &self.kinds[a]);
                    }
                    let agg = &self.plan.aggregations[a];
                    let mut maps = rollup::roll_up_before(agg, &self.kinds[a], finest, at);
                    // The finest duration keeps what is older than its mark; the journal
                    // takes the rest.
                    let older = rollup::take_before(&mut maps[0], at[0]);
                    let mut accrual = BucketMap::default();
                    if self.accrued_from[a] != i64::MAX {
                        accrue(&mut accrual, agg, at[1], &self.kinds[a], older.iter().map(|((k, b), p)| (k, *b, p)));
                    }
                    newer.extend(std::mem::replace(&mut maps[0], older).into_iter().map(|((k, b), p)| (k, b, p)));
                    (newer, Some((newest, maps, accrual)))
                })
                .collect()
        });
        for (a, (newer, r)) in rolled.into_iter().enumerate() {
            self.fresh[a] = newer;
            let Some((newest, maps, accrual)) = r else { continue };
            rollup::merge_maps(&mut self.accrued[a], accrual, &self.kinds[a]);
            self.marks[a].newest = self.marks[a].newest.max(newest);
            for (d, m) in maps.into_iter().enumerate() {
                if d == 0 && !m.is_empty() {
                    self.settle_closed(a);
                }
                rollup::merge_maps(&mut self.pending[a][d], m, &self.kinds[a]);
            }
        }
        self.absorb_time += started.elapsed();
    }

    /// See [`crate::node::Node::hold_roll_up`].
    pub(crate) fn hold_roll_up(&mut self, floors: &[i64]) {
        for (m, f) in self.marks.iter_mut().zip(floors) {
            m.floor = *f;
        }
    }

    pub(crate) fn pending_rows(&self) -> usize {
        let flights: usize = self.stores.iter().flat_map(StoreSlot::flights).map(InFlight::rows).sum();
        self.pending.iter().flatten().map(|m| m.len()).sum::<usize>()
            + self.fresh.iter().chain(&self.closed).map(|m| m.len()).sum::<usize>()
            + flights
    }

    /// Whether store `i` has nothing to write: no flush unconfirmed or prepared, nothing
    /// pending for its aggregations.
    fn slot_is_clear(&self, i: usize) -> bool {
        let slot = &self.stores[i];
        slot.in_flight.is_none()
            && slot.next.is_none()
            && (i != 0 || self.producers.is_empty())
            && slot.aggregations.iter().all(|&a| {
                self.fresh[a].is_empty() && self.closed[a].is_empty() && self.pending[a].iter().all(|m| m.is_empty())
            })
    }

    /// Every event collected at or before the returned generation is committed in every
    /// store (the acknowledgements up to it may go out).
    pub(crate) fn durable(&mut self) -> u64 {
        for i in 0..self.stores.len() {
            if self.slot_is_clear(i) {
                self.stores[i].durable = self.generation;
            }
        }
        self.stores.iter().map(|s| s.durable).min().unwrap_or(self.generation)
    }

    /// Writes everything pending; one transaction per store and flush. A store's
    /// unconfirmed flushes are sent first, unchanged and in order; what a store refused
    /// stays in flight. Returns the first error after trying every store.
    pub(crate) fn write(&mut self) -> Result<FlushStats> {
        let started = Instant::now();
        let mut stats = FlushStats {
            events: std::mem::take(&mut self.pending_events),
            rollup_time: std::mem::take(&mut self.absorb_time),
            ..FlushStats::default()
        };
        let mut first_error: Option<Error> = None;
        for i in 0..self.stores.len() {
            if let Err(e) = self.write_slot(i, &mut stats) {
                first_error.get_or_insert(e);
            }
        }
        stats.elapsed = started.elapsed();
        match first_error {
            Some(e) => Err(e),
            None => Ok(stats),
        }
    }

    /// Sends store `i`'s unconfirmed flushes, in order; then, when they are confirmed,
    /// numbers and sends what is pending for the store.
    fn write_slot(&mut self, i: usize, stats: &mut FlushStats) -> Result<()> {
        loop {
            if self.stores[i].in_flight.is_none() {
                self.stores[i].in_flight = match self.stores[i].next.take() {
                    Some(f) => Some(f),
                    None => self.take_pending(i, true, stats)?,
                };
            }
            let Some(job) = self.job(i) else { return Ok(()) };
            self.finish(job.run(), stats)?;
        }
    }

    /// Store `i`'s flush in flight with its connection, to be written.
    fn job(&mut self, i: usize) -> Option<Job> {
        let slot = &mut self.stores[i];
        let flight = slot.in_flight.take()?;
        let store = slot.conn.take().expect("one write per store at a time");
        Some(Job { slot: i, store, flight, claim: slot.claim.clone(), tables: self.tables.clone() })
    }

    /// For every store with a flush to send (the unconfirmed one, else the prepared one),
    /// its connection and the flush, to be written on a thread of their own while the
    /// flusher collects and prepares the next flush ([`Flusher::prepare`]). Each must come
    /// back through [`Flusher::finish`] before anything else uses the stores.
    pub(crate) fn start_writes(&mut self) -> Vec<Job> {
        (0..self.stores.len())
            .filter_map(|i| {
                let slot = &mut self.stores[i];
                if slot.in_flight.is_none() {
                    slot.in_flight = slot.next.take();
                }
                self.job(i)
            })
            .collect()
    }

    /// Whether a coarse roll-up is due: it reads the finer rows back, so every flush before
    /// it must have been written ([`Flusher::write`] does that; [`Flusher::prepare`] leaves
    /// roll-ups for it).
    pub(crate) fn roll_up_due(&self) -> bool {
        let now = now_ms();
        self.plan.aggregations.iter().enumerate().any(|(a, agg)| {
            (1..agg.durations.len())
                .any(|k| self.marks[a].due(agg, k, now, self.rollup_delay_ms).is_some_and(|adv| !self.accrues(a, adv)))
        })
    }

    /// Whether `adv` rolls up from `accrued` (no store read): a move of the second
    /// duration's mark over finest rows this process wrote.
    fn accrues(&self, a: usize, adv: Advance) -> bool {
        adv.level == 1 && adv.from >= self.accrued_from[a]
    }

    /// Numbers what is pending for each store whose previous flush is being written (or
    /// has none), as the flush it sends next. With `roll_ups` (only when no write is
    /// running: they read the store) the coarse roll-ups that are due too; without, they
    /// wait.
    pub(crate) fn prepare(&mut self, stats: &mut FlushStats, roll_ups: bool) -> Result<()> {
        stats.rollup_time += std::mem::take(&mut self.absorb_time);
        stats.events += std::mem::take(&mut self.pending_events);
        for i in 0..self.stores.len() {
            if self.stores[i].next.is_none() && self.stores[i].in_flight.is_none() {
                self.stores[i].next = self.take_pending(i, roll_ups, stats)?;
            }
        }
        Ok(())
    }

    /// Takes a write back: the connection returns to its store; a confirmed flush is
    /// counted, one that failed stays in flight, unchanged, to be sent again first.
    pub(crate) fn finish(&mut self, done: Done, stats: &mut FlushStats) -> Result<()> {
        let Done { slot: i, store, flight, applied, took } = done;
        stats.store_time += took;
        self.stores[i].conn = Some(store);
        match applied {
            Ok(Applied::Written) => {
                stats.rows += flight.tables.iter().map(|(_, _, r)| r.len()).sum::<usize>();
                stats.journaled += flight.journal_rows;
                self.count_rows(&flight, stats);
            }
            Ok(Applied::AlreadyApplied) => stats.already_applied += 1,
            Err(e) => {
                self.stores[i].in_flight = Some(flight);
                return Err(e);
            }
        }
        let slot = &mut self.stores[i];
        slot.durable = slot.durable.max(flight.generation);
        for (_, _, rows) in flight.tables {
            let mut entries = rows.into_entries();
            entries.clear();
            self.spare_rows.keep(entries);
        }
        for write in flight.journal {
            if let Some((_, buf)) = write.append {
                self.spare_records.keep(buf);
            }
        }
        Ok(())
    }

    /// Counts a confirmed flush's rows by duration and kind.
    fn count_rows(&mut self, flight: &InFlight, stats: &mut FlushStats) {
        for (a, d, rows) in &flight.tables {
            let g = self.plan.aggregations[*a].durations[*d];
            let at = Granularity::ALL.iter().position(|x| *x == g).unwrap_or(0);
            let newest = &mut self.newest_written[*a][*d];
            let before = *newest;
            let partitioned = self.tables[*a][*d].partitioned;
            for r in 0..rows.len() {
                let bucket = rows.bucket(r);
                if partitioned && bucket > before {
                    stats.row_counts.new[at] += 1;
                } else {
                    stats.row_counts.merged[at] += 1;
                }
                *newest = (*newest).max(bucket);
            }
        }
    }

    /// Store `i`'s pending partials as rows under the next flush number, with the roll-ups
    /// that are due (coarse ones only when `roll_ups`: they read the store). `None` when
    /// there is nothing to write. Called only when the store has no flush unconfirmed or
    /// prepared (or only one being written, without roll-ups), so what it holds is known.
    fn take_pending(&mut self, i: usize, roll_ups: bool, stats: &mut FlushStats) -> Result<Option<InFlight>> {
        let started = Instant::now();
        let read_before = stats.read_time;
        let taken = self.take_pending_rows(i, roll_ups, stats);
        stats.encode_time += started.elapsed().saturating_sub(stats.read_time - read_before);
        taken
    }

    /// [`Flusher::take_pending`]'s work.
    fn take_pending_rows(&mut self, i: usize, roll_ups: bool, stats: &mut FlushStats) -> Result<Option<InFlight>> {
        let mut moved: Vec<Mark> = Vec::new();
        let plan = self.plan.clone();
        for a in self.stores[i].aggregations.clone() {
            let agg = &plan.aggregations[a];
            // Finest first: a duration's move may use the move of the one below it.
            let now = now_ms();
            for k in 0..agg.durations.len() {
                if let Some(adv) = self.marks[a].due(agg, k, now, self.rollup_delay_ms) {
                    // Without `roll_ups` (an overlapped flush) only the moves that read
                    // nothing back: the finest, and the second from `accrued`.
                    if k > 0 && !roll_ups && !self.accrues(a, adv) {
                        break;
                    }
                    if k == 0 {
                        stats.closed += self.close_journal(a, adv);
                    } else {
                        let read = Instant::now();
                        stats.rolled_up += self.roll_up(i, a, adv)?;
                        stats.read_time += read.elapsed();
                    }
                }
            }
            if self.marks[a].unsaved {
                moved.extend(self.marks[a].all(agg));
            }
        }
        let aggs = &self.stores[i].aggregations;
        let producers = if i == 0 { std::mem::take(&mut self.producers) } else { Vec::new() };
        if moved.is_empty()
            && producers.is_empty()
            && aggs.iter().all(|&a| {
                self.pending[a].iter().all(|m| m.is_empty()) && self.fresh[a].is_empty() && self.closed[a].is_empty()
            })
        {
            return Ok(None);
        }
        for &a in aggs {
            self.marks[a].unsaved = false;
        }
        let aggs = self.stores[i].aggregations.clone();
        let mut tables: Vec<(usize, usize, PartialRows)> = Vec::new();
        for &a in &aggs {
            let shard: Option<Arc<str>> = self.plan.aggregations[a].shard_id.as_deref().map(Arc::from);
            let key_types: Arc<[AttrType]> = self.programs[a].key_types().into();
            if !self.pending[a][0].is_empty() {
                self.settle_closed(a);
            }
            let mut closed = std::mem::take(&mut self.closed[a]);
            for (d, map) in self.pending[a].iter_mut().enumerate() {
                if map.is_empty() && (d > 0 || closed.is_empty()) {
                    continue;
                }
                // Rows stay partials: the store reads their fields in place (see
                // PartialRows), so nothing is built per row here.
                let entries: Entries = if d == 0 && !closed.is_empty() {
                    std::mem::take(&mut closed)
                } else {
                    // A spare list only for many rows: the closed seconds need them more.
                    let mut list = if map.len() > 4096 { self.spare_rows.take() } else { None }.unwrap_or_default();
                    crate::buffer::room(&mut list, map.len());
                    list.extend(map.drain().map(|((k, b), p)| (k, b, p)));
                    list
                };
                let (shard, key_types, kinds) = (shard.clone(), key_types.clone(), &self.kinds[a]);
                let rows = self.pool.install(|| PartialRows::sorted(shard, key_types, entries, kinds));
                tables.push((a, d, rows));
            }
        }
        let (journal, journal_rows) = self.journal_writes(i);
        self.flush_seq += 1;
        Ok(Some(InFlight {
            seq: self.flush_seq,
            generation: self.generation,
            tables,
            marks: moved,
            journal,
            journal_rows,
            producers,
        }))
    }

    /// Whether every store has confirmed every flush and nothing is pending (the journal
    /// may still hold open buckets: they are stored).
    pub(crate) fn is_clear(&self) -> bool {
        self.pending_rows() == 0 && self.producers.is_empty()
    }

    /// Marks this process's registrations released (after the last flush).
    pub(crate) fn release(&mut self) -> Result<()> {
        for slot in &mut self.stores {
            let claim = slot.claim.clone();
            slot.store().release(&claim)?;
        }
        Ok(())
    }
}
