//! A store's place in the flush: its connection, the flush in flight (sent, not yet
//! confirmed, retried as it is) and the next one, and the job that writes a flight on a
//! thread of its own.

use crate::error::Result;
use crate::node::partial_rows::PartialRows;
use crate::store::schema::TableSchema;
use crate::store::{Applied, Claim, FlushWrite, JournalWrite, Mark, Rows, Store, TableWrite};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) struct StoreSlot {
    /// The connection; `None` only while a write runs on a thread of its own
    /// ([`super::Flusher::start_writes`]).
    pub conn: Option<Box<dyn Store>>,
    /// Aggregations written to it.
    pub aggregations: Vec<usize>,
    /// This process as registered in this store (with a shard id when one of the
    /// aggregations is partitioned).
    pub claim: Claim,
    /// The flush that was sent and not confirmed: retried as it is, with its number.
    pub in_flight: Option<InFlight>,
    /// The flush numbered after `in_flight`, prepared while it was being written; sent once
    /// it is confirmed.
    pub next: Option<InFlight>,
    /// Every event collected at or before this generation is committed here.
    pub(super) durable: u64,
}

impl StoreSlot {
    pub(crate) fn new(conn: Box<dyn Store>, aggregations: Vec<usize>, claim: Claim) -> StoreSlot {
        StoreSlot { conn: Some(conn), aggregations, claim, in_flight: None, next: None, durable: 0 }
    }

    /// The connection (between writes it is always here).
    pub(crate) fn store(&mut self) -> &mut dyn Store {
        self.conn.as_deref_mut().expect("a store is only away while its write runs, and that is joined before use")
    }

    /// Its flushes, oldest first.
    pub(super) fn flights(&self) -> impl Iterator<Item = &InFlight> {
        self.in_flight.iter().chain(self.next.iter())
    }
}

/// One numbered flush to one store: `(aggregation, duration, rows)`.
pub(crate) struct InFlight {
    pub seq: i64,
    /// The generation of the last collect whose partials it holds.
    pub generation: u64,
    pub tables: Vec<(usize, usize, PartialRows)>,
    /// Roll-up marks this flush moves.
    pub marks: Vec<Mark>,
    /// Journal records appended and trimmed.
    pub journal: Vec<JournalWrite>,
    /// Partials in the appended records.
    pub journal_rows: usize,
    /// `(producer, highest sequence number)` of the version 2 batches whose events it
    /// holds (docs/delivery.md).
    pub producers: Vec<(String, i64)>,
}

impl InFlight {
    pub(super) fn rows(&self) -> usize {
        self.tables.iter().map(|(_, _, r)| r.len()).sum::<usize>() + self.journal_rows
    }
}

/// A store's write running on a thread of its own (see [`super::Flusher::start_writes`]).
pub(crate) struct Job {
    pub(super) slot: usize,
    pub(super) store: Box<dyn Store>,
    pub(super) flight: InFlight,
    pub(super) claim: Claim,
    pub(super) tables: Arc<Vec<Vec<TableSchema>>>,
}

/// A [`Job`] that ended.
pub(crate) struct Done {
    pub(super) slot: usize,
    pub(super) store: Box<dyn Store>,
    pub(super) flight: InFlight,
    pub(super) applied: Result<Applied>,
    pub(super) took: Duration,
}

impl Job {
    /// The thread's name.
    pub(crate) fn name(&self) -> String {
        format!("tally-store-{}", self.slot)
    }

    pub(crate) fn run(mut self) -> Done {
        #[cfg(test)]
        crate::node::fault::pass(&self.claim.node_id, crate::node::fault::Point::BeforeCommit);
        let sent = Instant::now();
        let applied = self.store.write(&flush_write(&self.claim, &self.flight, &self.tables));
        #[cfg(test)]
        if applied.is_ok() {
            crate::node::fault::pass(&self.claim.node_id, crate::node::fault::Point::AfterCommit);
        }
        Done { slot: self.slot, store: self.store, flight: self.flight, applied, took: sent.elapsed() }
    }
}

/// What a store is asked to apply for `flight`.
fn flush_write<'a>(claim: &'a Claim, flight: &'a InFlight, tables: &'a [Vec<TableSchema>]) -> FlushWrite<'a> {
    FlushWrite {
        claim,
        flush_seq: flight.seq,
        tables: flight.tables.iter().map(|(a, d, r)| TableWrite { table: &tables[*a][*d], rows: r }).collect(),
        marks: &flight.marks,
        journal: &flight.journal,
        producers: &flight.producers,
    }
}
