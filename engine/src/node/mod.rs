//! A node: the worker threads, the router that feeds them, and the flusher that writes
//! their partials to the store.
//!
//! Shutdown order: stop accepting (the caller stops routing and sends what it holds),
//! drain (workers finish their queues), flush (the last partials reach the store), join.

pub(crate) mod background;
pub(crate) mod backoff;

/// `plan` with [`AggPlan::mysql_columns`](crate::lang::plan::AggPlan::mysql_columns) set on the
/// aggregations kept in a MySQL/MariaDB store, so that their events are checked for what
/// such a store can key on when they arrive.
fn mysql_columns(plan: Arc<AppPlan>, by_store: &[(crate::store::StoreAddress, Vec<usize>)]) -> Arc<AppPlan> {
    let narrow: Vec<usize> = by_store
        .iter()
        .filter(|(a, _)| matches!(a, crate::store::StoreAddress::Mysql(_)))
        .flat_map(|(_, aggs)| aggs.iter().copied())
        .collect();
    if narrow.is_empty() {
        return plan;
    }
    let mut p = (*plan).clone();
    for a in narrow {
        p.aggregations[a].mysql_columns = true;
    }
    Arc::new(p)
}
#[cfg(test)]
pub(crate) mod fault;
pub mod feed;
pub(crate) mod flush;
pub(crate) mod heartbeat;
pub mod ledger;
pub(crate) mod marks;
pub mod migrate;
pub(crate) mod partial_rows;
pub mod retention;
pub(crate) mod router;

pub use flush::{FlushStats, RowCounts};
pub use router::Router;

/// What the caller of [`Node::flush_when`] opens the collect with.
#[derive(Debug, Clone, PartialEq)]
pub struct Opened {
    /// The collect's generation.
    pub generation: u64,
    /// Roll-up floors ([`Node::hold_roll_up`]) read as the collect opens, or `None` to keep
    /// the ones held. Read then, not before the caller waited for events: every batch the
    /// floors count is in the collect, and the seconds the collect fills close in the flush
    /// that takes it. Read before the wait, they lagged a whole collect behind, and on the
    /// sparse stream a third of the partials went through the journal and the node's memory
    /// of it instead of straight into the finest table.
    pub floors: Option<Vec<i64>>,
}

use crate::aggregate::accumulator::{Program, State};
use crate::aggregate::message::{Handover, Msg};
use crate::aggregate::worker::Worker;
use crate::config::NodeConfig;
use crate::error::{Error, Result};
use crate::lang::plan::AppPlan;
use crate::node::flush::{Flusher, Job, StoreSlot};
use crate::node::heartbeat::Heartbeat;
use crate::node::ledger::Ledger;
use crate::store::schema::TableSchema;
use crate::store::{Claim, StoreAddress};
use crossbeam_channel::{Sender, bounded};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub struct Node {
    plan: Arc<AppPlan>,
    senders: Vec<Sender<Msg>>,
    threads: Vec<JoinHandle<()>>,
    flusher: Flusher,
    spares: Vec<Vec<State>>,
    seq: Arc<AtomicU64>,
    batch_events: usize,
    heartbeat: Option<Heartbeat>,
    /// The generation of the last collect (see [`Node::flush_at`]).
    generation: u64,
    /// Version 2 batch ids, taken with each collect ([`ledger`]).
    ledger: Arc<Ledger>,
    /// Set when a worker could not decode a batch (a bug): from then on every flush fails
    /// with it, so nothing more is committed or acknowledged.
    broken: Option<String>,
}

/// Makes [`Router`]s for a node (see [`Node::routers`]).
#[derive(Debug, Clone)]
pub struct Routers {
    plan: Arc<AppPlan>,
    senders: Vec<Sender<Msg>>,
    batch_events: usize,
    seq: Arc<AtomicU64>,
}

impl Routers {
    pub fn router(&self) -> Router {
        Router::new(self.plan.clone(), self.senders.clone(), self.batch_events, self.seq.clone())
    }

    /// Batches waiting in each worker's queue.
    pub fn queue_depths(&self) -> Vec<usize> {
        self.senders.iter().map(|s| s.len()).collect()
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("app", &self.plan.name).field("workers", &self.senders.len()).finish()
    }
}

impl Node {
    /// Opens the stores (creating missing tables and checking existing ones), registers the
    /// node in each store's shard registry, then starts the workers. `store_override` is the
    /// `--store` option. A store that is down is retried for `tally.store_wait`, telling
    /// `on_wait` before each wait.
    pub fn start(
        plan: Arc<AppPlan>,
        config: &NodeConfig,
        store_override: Option<&str>,
        on_wait: &mut dyn FnMut(&Error, Duration),
    ) -> Result<Node> {
        let by_store = crate::store::address::by_store(&plan, store_override, &config.settings.store)?;
        let plan = mysql_columns(plan, &by_store);
        let tables = TableSchema::all(&plan);
        let me = Claim::new(config.node_id.as_deref(), config.effective_shard_id());
        let mut stores = Vec::new();
        let mut flush_seq = 0;
        for (address, aggregations) in by_store {
            let mine: Vec<TableSchema> = aggregations.iter().flat_map(|&a| tables[a].iter().cloned()).collect();
            let shard = aggregations.iter().find_map(|&a| plan.aggregations[a].shard_id.as_deref());
            let claim = me.with_shard(shard);
            let (slot, last_seq) = crate::node::backoff::retry(config.store_wait, on_wait, || {
                open_slot(&address, &mine, aggregations.clone(), claim.clone())
            })?;
            flush_seq = flush_seq.max(last_seq);
            stores.push(slot);
        }
        let programs: Vec<Arc<Program>> =
            plan.aggregations.iter().map(|a| Arc::new(Program::new(a, &plan.streams[a.stream]))).collect();
        let workers = config.workers();
        let mut senders = Vec::with_capacity(workers);
        let mut threads = Vec::with_capacity(workers);
        for i in 0..workers {
            let (tx, rx) = bounded::<Msg>(config.settings.queue_batches);
            let worker = Worker::new(i, plan.clone(), &programs);
            let handle = std::thread::Builder::new()
                .name(format!("tally-worker-{i}"))
                .spawn(move || worker.run(rx))
                .map_err(|e| Error::io("cannot start a worker thread", e))?;
            senders.push(tx);
            threads.push(handle);
        }
        let beats = stores.iter_mut().map(|s| (s.store().address().clone(), s.claim.clone())).collect();
        // A failed beat is retried by the thread; a registration that was taken over is
        // refused at the next flush, with the reason. The server reports beats that keep
        // failing (Node::heartbeat_trouble).
        let heartbeat = Heartbeat::spawn(beats)?;
        let flusher = Flusher::new(plan.clone(), programs, stores, flush_seq, config.rollup_delay)?;
        Ok(Node {
            spares: (0..workers).map(|_| Vec::new()).collect(),
            plan,
            senders,
            threads,
            flusher,
            seq: Arc::new(AtomicU64::new(0)),
            batch_events: config.settings.batch_events,
            heartbeat: Some(heartbeat),
            generation: 0,
            ledger: Arc::new(Ledger::default()),
            broken: None,
        })
    }

    /// Where version 2 batch ids are noted for the collect that holds their events.
    pub fn ledger(&self) -> Arc<Ledger> {
        self.ledger.clone()
    }

    /// The store and registration that hold this node's producers (docs/delivery.md): its
    /// one store. A node whose aggregations are written to several stores cannot record a
    /// batch in one transaction with all of its events, and takes no version 2 client.
    pub fn producer_store(&mut self) -> Result<(StoreAddress, Claim)> {
        match self.flusher.stores.as_mut_slice() {
            [one] => Ok((one.store().address().clone(), one.claim.clone())),
            many => Err(Error::Unsupported(format!(
                "this node writes its aggregations to {} stores, and exactly-once delivery (protocol version 2) \
                 records a batch in the one transaction that holds its events; use protocol version 1, or give \
                 every aggregation the same store",
                many.len()
            ))),
        }
    }

    pub fn plan(&self) -> &Arc<AppPlan> {
        &self.plan
    }

    /// A router that feeds this node's workers. Several may exist (one per input thread).
    pub fn router(&self) -> Router {
        self.routers().router()
    }

    /// Makes routers for input threads that start after the node has moved to its flush
    /// thread (a server's connections).
    pub fn routers(&self) -> Routers {
        Routers {
            plan: self.plan.clone(),
            senders: self.senders.clone(),
            batch_events: self.batch_events,
            seq: self.seq.clone(),
        }
    }

    /// Collects every worker's partials (each worker swaps in an empty state: no lock, no
    /// pause beyond the swap) and writes them, with anything still pending, to the stores.
    /// Batches sent before this call are included.
    pub fn flush(&mut self) -> Result<FlushStats> {
        self.flush_at(self.generation + 1, false)
    }

    /// A flush at collect `generation` (increasing from call to call); the returned
    /// [`FlushStats::durable`] says up to which generation every collected event is
    /// committed. Without `overlap` it is [`Node::flush`]: everything is written before it
    /// returns. With `overlap` (for a saturated node), what the previous call prepared is
    /// written on a thread of its own while this one collects and prepares the next flush,
    /// so that the stores' transactions and the flusher's own work run side by side; the
    /// flush prepared here is written by the next call. A coarse roll-up that is due (it
    /// reads finer rows back) is prepared after that write is confirmed, and written by the
    /// next call like any other prepared flush.
    pub fn flush_at(&mut self, generation: u64, overlap: bool) -> Result<FlushStats> {
        self.flush_when(overlap, || Opened { generation, floors: None })
    }

    /// [`Node::flush_at`], with the collect's generation (and the roll-up floors, see
    /// [`Opened`]) given by `open`, which is called right before the collect. With `overlap`, that is after the previous flush's write
    /// has started on its own thread: `open` may wait (for clients to answer the acks the
    /// last flush published, say) without leaving the store idle meanwhile.
    pub fn flush_when(&mut self, overlap: bool, open: impl FnOnce() -> Opened) -> Result<FlushStats> {
        if !overlap {
            let Opened { generation, floors } = open();
            if let Some(floors) = floors {
                self.hold_roll_up(&floors);
            }
            self.generation = self.generation.max(generation);
            let generation = self.generation;
            self.collect(generation)?;
            let mut stats = self.flusher.write()?;
            stats.durable = self.flusher.durable();
            return Ok(stats);
        }
        let started = Instant::now();
        let mut stats = FlushStats::default();
        // In cells, so that a job whose thread could not start is still here to run.
        let cells: Vec<Mutex<Option<Job>>> =
            self.flusher.start_writes().into_iter().map(|j| Mutex::new(Some(j))).collect();
        let (prepared, done, lost) = std::thread::scope(|s| {
            let threads: Vec<_> = cells
                .iter()
                .map(|cell| {
                    let name = cell.lock().ok().and_then(|j| j.as_ref().map(Job::name)).unwrap_or_default();
                    let run = move || {
                        let job = cell.lock().ok().and_then(|mut j| j.take());
                        job.map(Job::run)
                    };
                    std::thread::Builder::new().name(name).spawn_scoped(s, run).ok()
                })
                .collect();
            let Opened { generation, floors } = open();
            if let Some(floors) = floors {
                self.hold_roll_up(&floors);
            }
            self.generation = self.generation.max(generation);
            let generation = self.generation;
            // A roll-up that reads the store waits for the write (below); the collect does not.
            let roll_up = self.flusher.roll_up_due();
            let collected = self.collect(generation);
            let prepared =
                if roll_up { collected } else { collected.and_then(|_| self.flusher.prepare(&mut stats, false)) };
            let mut done = Vec::new();
            let mut lost = Vec::new();
            for (thread, cell) in threads.into_iter().zip(&cells) {
                match thread.map(|t| t.join()) {
                    Some(Ok(Some(d))) => done.push(d),
                    Some(Err(_)) => lost.push("a store's write thread panicked; the flush it held was not confirmed"),
                    // Not started: write it here.
                    Some(Ok(None)) | None => {
                        if let Some(job) = cell.lock().ok().and_then(|mut j| j.take()) {
                            done.push(job.run());
                        }
                    }
                }
            }
            (prepared, done, lost)
        });
        let mut first_error = prepared.err();
        for d in done {
            if let Err(e) = self.flusher.finish(d, &mut stats) {
                first_error.get_or_insert(e);
            }
        }
        // Every flush before it is confirmed now (a store whose write failed keeps it in
        // flight and is skipped): the due roll-up reads what it needs and waits, prepared,
        // for the next call. Written here at once instead, it made this call two writes
        // long and left the next call's store idle (measured on the sparse stream: ~3.7 s
        // flushes followed by one that wrote nothing, at each hour's roll-up).
        if first_error.is_none()
            && self.flusher.roll_up_due()
            && let Err(e) = self.flusher.prepare(&mut stats, true)
        {
            first_error = Some(e);
        }
        if let Some(why) = lost.first() {
            let why = format!("{why}: this node commits and acknowledges nothing more; restart it");
            self.broken.get_or_insert(why.clone());
            first_error = Some(Error::Internal(why));
        }
        stats.elapsed = started.elapsed();
        match first_error {
            Some(e) => Err(e),
            None => {
                stats.durable = self.flusher.durable();
                Ok(stats)
            }
        }
    }

    /// Holds each aggregation's roll-up back to `floors[a]` of event time (`i64::MAX`: no
    /// hold): what the node's active clients have all reached (`server::watermark`). An
    /// event older than the finest mark is merged into a stored row; one that waits in the
    /// journal costs nothing extra. Applies from the next flush on.
    pub fn hold_roll_up(&mut self, floors: &[i64]) {
        self.flusher.hold_roll_up(floors);
    }

    /// Writes what is pending without collecting from the workers (to retry a flush that
    /// failed, e.g. while the store was down).
    pub fn write_pending(&mut self) -> Result<FlushStats> {
        self.flusher.write()
    }

    /// Marks the node's registrations released, after its last flush, so that it can be
    /// restarted at once (on any host). Refused while anything is unwritten.
    pub fn release(&mut self) -> Result<()> {
        if !self.flusher.is_clear() {
            return Err(Error::Schema(format!(
                "the node still holds {} unwritten rows; write them before releasing its registration",
                self.flusher.pending_rows()
            )));
        }
        if let Some(h) = self.heartbeat.take() {
            h.stop()?;
        }
        self.flusher.release()
    }

    /// Since when the heartbeat has been failing, and why; `None` while it lands.
    pub(crate) fn heartbeat_trouble(&self) -> Option<crate::node::heartbeat::Trouble> {
        self.heartbeat.as_ref().and_then(Heartbeat::trouble)
    }

    /// Rows rolled up and not yet written (pending, and in flushes not yet confirmed).
    pub fn pending_rows(&self) -> usize {
        self.flusher.pending_rows()
    }

    /// Asks every worker for its partials and merges them into the pending ones. Fails,
    /// absorbing nothing, when a worker could not decode a batch: those events were not
    /// counted, so the flush that would acknowledge them must not commit; the node stays
    /// broken.
    fn collect(&mut self, generation: u64) -> Result<()> {
        if let Some(why) = &self.broken {
            return Err(Error::Internal(why.clone()));
        }
        let (tx, rx) = bounded::<Handover>(self.senders.len());
        let (senders, spares) = (&self.senders, &mut self.spares);
        let producers = self.ledger.request_and_take(|| {
            for (i, s) in senders.iter().enumerate() {
                let spare = std::mem::take(&mut spares[i]);
                s.send(Msg::Flush(spare, tx.clone())).map_err(|_| Error::Closed)?;
            }
            Ok::<(), Error>(())
        })?;
        drop(tx);
        let mut states: Vec<Vec<State>> = (0..self.senders.len()).map(|_| Vec::new()).collect();
        let mut unreadable = Vec::new();
        for _ in 0..self.senders.len() {
            let h = rx.recv().map_err(|_| Error::Closed)?;
            if let Some(u) = h.unreadable {
                unreadable.push(format!(
                    "worker {} could not decode {} batch(es) of {} event(s) ({})",
                    h.worker, u.batches, u.events, u.first
                ));
            }
            states[h.worker] = h.states;
        }
        if !unreadable.is_empty() {
            let why = format!(
                "{}; they were not counted, so this node commits and acknowledges nothing more: restart it",
                unreadable.join("; ")
            );
            self.broken = Some(why.clone());
            return Err(Error::Internal(why));
        }
        let producers = producers.into_iter().map(|(p, seq)| (p.to_string(), seq)).collect();
        self.flusher.absorb(&states, generation, producers);
        for (i, mut s) in states.into_iter().enumerate() {
            s.iter_mut().for_each(State::clear);
            self.spares[i] = s;
        }
        Ok(())
    }

    /// Drains the workers, stops and joins them, and writes everything to the stores.
    /// Routers must have sent what they hold (`Router::send_all`) before. When the final
    /// write fails the partials stay pending: use [`Node::stop_workers`] and
    /// [`Node::write_pending`] instead to retry.
    pub fn shutdown(mut self) -> Result<FlushStats> {
        self.stop_workers()?;
        let stats = self.flusher.write()?;
        self.release()?;
        Ok(stats)
    }

    /// Drains the workers into the pending partials and stops them, but keeps the node (and
    /// its pending partials) so the caller can retry writing with [`Node::write_pending`].
    /// The journal's open buckets become pending rows of the finest durations, so a clean
    /// stop leaves them in the tables.
    pub fn stop_workers(&mut self) -> Result<()> {
        self.generation += 1;
        let collected = self.collect(self.generation);
        let joined = self.join_workers();
        if collected.is_ok() && joined.is_ok() {
            self.flusher.close_journals();
        }
        collected.and(joined)
    }

    /// Tells every worker to stop after its queue and joins them. A worker that panicked
    /// is an internal error (what it held is lost, so nothing more may be acknowledged).
    fn join_workers(&mut self) -> Result<()> {
        for s in &self.senders {
            // A worker that already ended has dropped its receiver: nothing to tell it.
            s.send(Msg::Stop).ok();
        }
        let mut panicked = Vec::new();
        for t in self.threads.drain(..) {
            background::join(t, &mut panicked);
        }
        if panicked.is_empty() {
            return Ok(());
        }
        let why = format!("{} panicked; what it held was not written", panicked.join(", "));
        self.broken.get_or_insert(why.clone());
        Err(Error::Internal(why))
    }

    /// The tables of each aggregation, per duration.
    pub fn tables(&self) -> &[Vec<TableSchema>] {
        self.flusher.tables()
    }
}

/// Opens one store, prepares its tables and registers this process; returns the slot and
/// the last flush number the node applied there.
fn open_slot(
    address: &StoreAddress,
    tables: &[TableSchema],
    aggregations: Vec<usize>,
    claim: Claim,
) -> Result<(StoreSlot, i64)> {
    let mut store = crate::store::open(address)?;
    store.prepare(tables)?;
    let last_seq = store.register(&claim)?;
    Ok((StoreSlot::new(store, aggregations, claim), last_seq))
}

#[cfg(test)]
impl Node {
    /// Stops as a killed process would: nothing more is written (the journal keeps its open
    /// buckets), and the registration is freed as an expired lease frees it, so that the
    /// node can start again at once in this process.
    pub(crate) fn crash(mut self) {
        self.join_workers().ok();
        if let Some(h) = self.heartbeat.take() {
            h.stop().ok();
        }
        self.flusher.release().expect("free the registration");
    }
}

impl Drop for Node {
    /// A node dropped without [`Node::shutdown`] still stops its workers; what they held
    /// is not written (and was never acknowledged), and a panic among them has no caller
    /// left to hear of it.
    fn drop(&mut self) {
        self.join_workers().ok();
    }
}

#[cfg(test)]
mod tests;
