//! The flush: turn the workers' handed-over states into partials, roll them up into every
//! duration, and write them to the stores, one transaction per store.
//!
//! What could not be written stays pending and is merged with the next flush's partials
//! (merging is associative), so a store outage delays data but loses none.

use crate::accumulator::{Layout, State};
use crate::error::{Error, Result};
use crate::key::{self, KeyBytes};
use crate::partial::Partial;
use crate::plan::{AppPlan, CellKind};
use crate::rollup::{self, BucketMap};
use crate::schema::TableSchema;
use crate::store::{FlushWrite, Store, StoreAddress, TableWrite};
use crate::types::Value;
use rayon::prelude::*;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

/// Figures of one flush.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlushStats {
    /// Events the flushed partials hold.
    pub events: u64,
    /// Rows written (all durations).
    pub rows: usize,
    pub elapsed: StdDuration,
}

pub(crate) struct StoreSlot {
    pub store: Box<dyn Store>,
    /// Aggregations written to it.
    pub aggregations: Vec<usize>,
}

pub(crate) struct Flusher {
    plan: Arc<AppPlan>,
    layouts: Vec<Arc<Layout>>,
    kinds: Vec<Vec<CellKind>>,
    tables: Vec<Vec<TableSchema>>,
    pub(crate) stores: Vec<StoreSlot>,
    /// `[aggregation][duration]`: rolled up, not yet written.
    pending: Vec<Vec<BucketMap>>,
    pending_events: u64,
    node_id: String,
    flush_seq: u64,
    /// Roll-up threads (named; one per core).
    pool: rayon::ThreadPool,
}

impl Flusher {
    pub(crate) fn new(
        plan: Arc<AppPlan>,
        layouts: Vec<Arc<Layout>>,
        stores: Vec<StoreSlot>,
        node_id: String,
    ) -> Result<Flusher> {
        let tables = TableSchema::all(&plan);
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
            layouts,
            tables,
            stores,
            pending_events: 0,
            node_id,
            flush_seq: 0,
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
        // robin), and roll up.
        let rolled: Vec<Option<Vec<BucketMap>>> = self.pool.install(|| {
            (0..aggs)
                .into_par_iter()
                .map(|a| {
                    if states.iter().all(|w| w[a].is_empty()) {
                        return None;
                    }
                    let mut finest = BucketMap::default();
                    for w in states {
                        let mut entries: Vec<(KeyBytes, i64, Partial)> = Vec::new();
                        w[a].drain_into(&self.layouts[a], &mut entries);
                        rollup::merge_entries(&mut finest, entries, &self.kinds[a]);
                    }
                    Some(rollup::roll_up(&self.plan.aggregations[a], &self.kinds[a], finest))
                })
                .collect()
        });
        for (a, r) in rolled.into_iter().enumerate() {
            let Some(maps) = r else { continue };
            for (d, m) in maps.into_iter().enumerate() {
                rollup::merge_maps(&mut self.pending[a][d], m, &self.kinds[a]);
            }
        }
    }

    pub(crate) fn pending_rows(&self) -> usize {
        self.pending.iter().flatten().map(|m| m.len()).sum()
    }

    /// Writes everything pending; one transaction per store. What a store refused stays
    /// pending. Returns the first error after trying every store.
    pub(crate) fn write(&mut self) -> Result<FlushStats> {
        let started = Instant::now();
        let mut stats = FlushStats { events: self.pending_events, ..FlushStats::default() };
        let mut first_error: Option<Error> = None;
        self.flush_seq += 1;
        for slot in &mut self.stores {
            if slot.aggregations.iter().all(|&a| self.pending[a].iter().all(|m| m.is_empty())) {
                continue;
            }
            let mut rows: Vec<(usize, usize, Vec<Vec<Value>>)> = Vec::new();
            for &a in &slot.aggregations {
                let agg = &self.plan.aggregations[a];
                let key_types = self.layouts[a].key_types();
                for (d, map) in self.pending[a].iter().enumerate() {
                    if map.is_empty() {
                        continue;
                    }
                    let table = &self.tables[a][d];
                    let r: Vec<Vec<Value>> = map
                        .iter()
                        .map(|((k, bucket), p)| {
                            table.to_row(agg.shard_id.as_deref(), &key::decode(k, key_types), *bucket, p)
                        })
                        .collect();
                    rows.push((a, d, r));
                }
            }
            let write = FlushWrite {
                node_id: &self.node_id,
                flush_seq: self.flush_seq,
                tables: rows.iter().map(|(a, d, r)| TableWrite { table: &self.tables[*a][*d], rows: r }).collect(),
            };
            match slot.store.write(&write) {
                Ok(()) => {
                    stats.rows += write.rows();
                    for &a in &slot.aggregations {
                        for m in &mut self.pending[a] {
                            m.clear();
                        }
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
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
}

/// Opens every distinct store the app's aggregations use. `override_url` (the `--store`
/// option) replaces them all; otherwise each aggregation's `@store`, else `default_url`.
pub(crate) fn open_stores(plan: &AppPlan, override_url: Option<&str>, default_url: &str) -> Result<Vec<StoreSlot>> {
    let mut slots: Vec<(StoreAddress, Vec<usize>)> = Vec::new();
    for (i, agg) in plan.aggregations.iter().enumerate() {
        let address = resolve_address(agg, override_url, default_url)?;
        match slots.iter_mut().find(|(a, _)| *a == address) {
            Some((_, aggs)) => aggs.push(i),
            None => slots.push((address, vec![i])),
        }
    }
    slots
        .into_iter()
        .map(|(address, aggregations)| Ok(StoreSlot { store: crate::store::open(&address)?, aggregations }))
        .collect()
}

/// The store address of one aggregation.
pub fn resolve_address(
    agg: &crate::plan::AggPlan,
    override_url: Option<&str>,
    default_url: &str,
) -> Result<StoreAddress> {
    match (override_url, &agg.store) {
        (Some(url), _) => StoreAddress::parse(url, None, None),
        (None, Some(spec)) => StoreAddress::parse(&spec.url, spec.username.as_deref(), spec.password.as_deref())
            .map_err(|e| Error::Schema(format!("aggregation `{}` ({}): {e}", agg.name, spec.origin))),
        (None, None) => StoreAddress::parse(default_url, None, None),
    }
}
