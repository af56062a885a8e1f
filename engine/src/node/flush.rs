//! The flush: turn the workers' handed-over states into partials, roll them up into every
//! duration, and write them to the stores, one transaction per store.
//!
//! For a partitioned aggregation a duration takes only events older than its roll-up mark;
//! the newer ones reach it when the mark moves ([`crate::node::marks`], docs/rollup.md),
//! which a flush does once a coarse bucket has closed, reading the finer rows back.
//!
//! Each store gets its rows as one numbered flush. A flush that fails stays *in flight*
//! with its number and exactly its rows, and is retried as it is before anything newer goes
//! to that store: if the failure hid a commit (the connection dropped after COMMIT was
//! sent), the store sees the number again and skips it, so nothing is counted twice. New
//! partials meanwhile merge into the pending maps (merging is associative), so a store
//! outage delays data but loses none.

use crate::aggregate::accumulator::{Program, State};
use crate::aggregate::partial::Partial;
use crate::aggregate::rollup::{self, BucketMap};
use crate::error::{Error, Result};
use crate::ingest::key::{self, KeyBytes};
use crate::lang::plan::{AppPlan, CellKind};
use crate::lang::types::Value;
use crate::node::marks::{Advance, Marks};
use crate::store::schema::TableSchema;
use crate::store::{Applied, Claim, FlushWrite, Mark, Store, TableWrite};
use crate::time::bucket::Bucketer;
use crate::time::clock::now_ms;
use rayon::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    pub elapsed: Duration,
}

pub(crate) struct StoreSlot {
    pub store: Box<dyn Store>,
    /// Aggregations written to it.
    pub aggregations: Vec<usize>,
    /// This process as registered in this store (with a shard id when one of the
    /// aggregations is partitioned).
    pub claim: Claim,
    /// The flush that was sent and not confirmed: retried as it is, with its number.
    pub in_flight: Option<InFlight>,
}

/// One numbered flush to one store: `(aggregation, duration, rows)`.
pub(crate) struct InFlight {
    pub seq: i64,
    pub tables: Vec<(usize, usize, Vec<Vec<Value>>)>,
    /// Roll-up marks this flush moves.
    pub marks: Vec<Mark>,
}

pub(crate) struct Flusher {
    plan: Arc<AppPlan>,
    programs: Vec<Arc<Program>>,
    kinds: Vec<Vec<CellKind>>,
    tables: Vec<Vec<TableSchema>>,
    pub(crate) stores: Vec<StoreSlot>,
    /// `[aggregation][duration]`: rolled up, not yet written. Duration `k` holds only
    /// events before `marks[aggregation].at[k]`; the finest holds every one.
    pending: Vec<Vec<BucketMap>>,
    /// Per aggregation: how far each duration of this node's shard is rolled up.
    marks: Vec<Marks>,
    /// `tally.rollup_delay`, in ms.
    rollup_delay_ms: i64,
    pending_events: u64,
    /// The number of the last flush handed to a store; continues across restarts.
    flush_seq: i64,
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
        for slot in &mut stores {
            for &a in &slot.aggregations {
                let agg = &plan.aggregations[a];
                if let Some(shard) = &agg.shard_id {
                    marks[a] = Marks::load(slot.store.as_mut(), agg, &tables[a], shard)?;
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
            plan,
            programs,
            tables,
            stores,
            marks,
            rollup_delay_ms: rollup_delay.as_millis() as i64,
            pending_events: 0,
            flush_seq,
            pool,
        })
    }

    pub(crate) fn tables(&self) -> &[Vec<TableSchema>] {
        &self.tables
    }

    /// Takes the states the workers handed over (`[worker][aggregation]`), and merges their
    /// partials into the pending ones of every duration.
    pub(crate) fn absorb(&mut self, states: &[Vec<State>]) {
        let aggs = self.plan.aggregations.len();
        self.pending_events += states.iter().flatten().map(|s| s.events).sum::<u64>();
        // Per aggregation, in parallel: decode each worker's slots into owned partials,
        // merge across workers (the same group can be in several when routing was round
        // robin), and roll up what is older than each duration's mark.
        let rolled: Vec<Option<(i64, Vec<BucketMap>)>> = self.pool.install(|| {
            (0..aggs)
                .into_par_iter()
                .map(|a| {
                    if states.iter().all(|w| w[a].is_empty()) {
                        return None;
                    }
                    let mut finest = BucketMap::default();
                    for w in states {
                        let mut entries: Vec<(KeyBytes, i64, Partial)> = Vec::new();
                        w[a].append_partials(&self.programs[a], &mut entries);
                        rollup::merge_entries(&mut finest, entries, &self.kinds[a]);
                    }
                    let newest = finest.keys().map(|(_, b)| *b).max().unwrap_or(i64::MIN);
                    let agg = &self.plan.aggregations[a];
                    Some((newest, rollup::roll_up_before(agg, &self.kinds[a], finest, &self.marks[a].at)))
                })
                .collect()
        });
        for (a, r) in rolled.into_iter().enumerate() {
            let Some((newest, maps)) = r else { continue };
            self.marks[a].newest = self.marks[a].newest.max(newest);
            for (d, m) in maps.into_iter().enumerate() {
                rollup::merge_maps(&mut self.pending[a][d], m, &self.kinds[a]);
            }
        }
    }

    pub(crate) fn pending_rows(&self) -> usize {
        let in_flight: usize = self
            .stores
            .iter()
            .filter_map(|s| s.in_flight.as_ref())
            .map(|f| f.tables.iter().map(|(_, _, r)| r.len()).sum::<usize>())
            .sum();
        self.pending.iter().flatten().map(|m| m.len()).sum::<usize>() + in_flight
    }

    /// Writes everything pending; one transaction per store. A store's unconfirmed flush is
    /// retried first, unchanged; what a store refused stays in flight. Returns the first
    /// error after trying every store.
    pub(crate) fn write(&mut self) -> Result<FlushStats> {
        let started = Instant::now();
        let mut stats = FlushStats { events: self.pending_events, ..FlushStats::default() };
        let mut first_error: Option<Error> = None;
        for i in 0..self.stores.len() {
            if let Err(e) = self.write_slot(i, &mut stats) {
                first_error.get_or_insert(e);
            }
        }
        stats.elapsed = started.elapsed();
        match first_error {
            Some(e) => Err(e),
            None => {
                self.pending_events = 0;
                Ok(stats)
            }
        }
    }

    /// Retries store `i`'s flush in flight, if any; then, when it is confirmed, numbers and
    /// sends what is pending for the store.
    fn write_slot(&mut self, i: usize, stats: &mut FlushStats) -> Result<()> {
        let retry = self.stores[i].in_flight.is_some();
        if retry || self.take_pending(i, stats)? {
            self.send_in_flight(i, stats)?;
        }
        if retry && self.take_pending(i, stats)? {
            self.send_in_flight(i, stats)?;
        }
        Ok(())
    }

    /// Sends store `i`'s flush in flight; it stays in flight unless the store confirms it.
    fn send_in_flight(&mut self, i: usize, stats: &mut FlushStats) -> Result<()> {
        let slot = &mut self.stores[i];
        let Some(flight) = slot.in_flight.as_ref() else { return Ok(()) };
        let write = FlushWrite {
            claim: &slot.claim,
            flush_seq: flight.seq,
            tables: flight.tables.iter().map(|(a, d, r)| TableWrite { table: &self.tables[*a][*d], rows: r }).collect(),
            marks: &flight.marks,
        };
        match slot.store.write(&write)? {
            Applied::Written => stats.rows += write.rows(),
            Applied::AlreadyApplied => stats.already_applied += 1,
        }
        slot.in_flight = None;
        Ok(())
    }

    /// Turns store `i`'s pending partials into rows under the next flush number, with the
    /// roll-ups that are due. False when there is nothing to write. Called only when the
    /// store has no flush in flight, so what it holds is known.
    fn take_pending(&mut self, i: usize, stats: &mut FlushStats) -> Result<bool> {
        let mut moved: Vec<Mark> = Vec::new();
        let plan = self.plan.clone();
        for a in self.stores[i].aggregations.clone() {
            let agg = &plan.aggregations[a];
            // Finest first: a duration's move may use the move of the one below it.
            let now = now_ms();
            for k in 1..agg.durations.len() {
                if let Some(adv) = self.marks[a].due(agg, k, now, self.rollup_delay_ms) {
                    stats.rolled_up += self.roll_up(i, a, adv)?;
                }
            }
            if self.marks[a].unsaved {
                moved.extend(self.marks[a].all(agg));
            }
        }
        let aggs = &self.stores[i].aggregations;
        if moved.is_empty() && aggs.iter().all(|&a| self.pending[a].iter().all(|m| m.is_empty())) {
            return Ok(false);
        }
        for &a in aggs {
            self.marks[a].unsaved = false;
        }
        let mut tables: Vec<(usize, usize, Vec<Vec<Value>>)> = Vec::new();
        for &a in aggs {
            let agg = &self.plan.aggregations[a];
            let key_types = self.programs[a].key_types();
            for (d, map) in self.pending[a].iter_mut().enumerate() {
                if map.is_empty() {
                    continue;
                }
                let table = &self.tables[a][d];
                let rows: Vec<Vec<Value>> = map
                    .iter()
                    .map(|((k, bucket), p)| {
                        table.to_row(agg.shard_id.as_deref(), &key::decode(k, key_types), *bucket, p)
                    })
                    .collect();
                map.clear();
                tables.push((a, d, rows));
            }
        }
        self.flush_seq += 1;
        self.stores[i].in_flight = Some(InFlight { seq: self.flush_seq, tables, marks: moved });
        Ok(true)
    }

    /// Moves a mark of aggregation `a` (written to store `i`): the rows of the duration
    /// below in `[from, to)`, as stored, and its pending partials there (not stored yet:
    /// events taken since, and what a move of its own mark just rolled into it) are rolled
    /// into the pending ones of the duration. Returns the rows read.
    fn roll_up(&mut self, i: usize, a: usize, adv: Advance) -> Result<usize> {
        let plan = self.plan.clone();
        let agg = &plan.aggregations[a];
        let kinds = &self.kinds[a];
        let below = &self.tables[a][adv.level - 1];
        let shard = self.marks[a].shard.clone().expect("only a shard's marks move");
        let shard_col = below.column("SHARD_ID").expect("a partitioned table has SHARD_ID");
        let rows = self.stores[i].store.scan(below, adv.from, adv.to, &[(shard_col, Value::Str(shard))])?;
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
                (Arc::from(&buf[..]), bucketer.start(stored.bucket), stored.partial)
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

    /// Whether every store has confirmed every flush and nothing is pending.
    pub(crate) fn is_clear(&self) -> bool {
        self.pending_rows() == 0 && self.stores.iter().all(|s| s.in_flight.is_none())
    }

    /// Marks this process's registrations released (after the last flush).
    pub(crate) fn release(&mut self) -> Result<()> {
        for slot in &mut self.stores {
            slot.store.release(&slot.claim)?;
        }
        Ok(())
    }
}
