//! A node: the worker threads, the router that feeds them, and the flusher that writes
//! their partials to the store.
//!
//! Shutdown order: stop accepting (the caller stops routing and sends what it holds),
//! drain (workers finish their queues), flush (the last partials reach the store), join.

use crate::accumulator::{Layout, State};
use crate::config::NodeConfig;
use crate::error::{Error, Result};
use crate::flush::{self, FlushStats, Flusher};
use crate::plan::AppPlan;
use crate::router::{Msg, Router};
use crate::schema::TableSchema;
use crate::worker::Worker;
use crossbeam_channel::{Sender, bounded};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::thread::JoinHandle;

pub struct Node {
    plan: Arc<AppPlan>,
    senders: Vec<Sender<Msg>>,
    threads: Vec<JoinHandle<()>>,
    flusher: Flusher,
    spares: Vec<Vec<State>>,
    seq: Arc<AtomicU64>,
    batch_events: usize,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("app", &self.plan.name).field("workers", &self.senders.len()).finish()
    }
}

impl Node {
    /// Opens the stores (creating missing tables and checking existing ones), then starts
    /// the workers. `store_override` is the `--store` option.
    pub fn start(plan: Arc<AppPlan>, config: &NodeConfig, store_override: Option<&str>) -> Result<Node> {
        let mut stores = flush::open_stores(&plan, store_override, &config.settings.store)?;
        let tables = TableSchema::all(&plan);
        for slot in &mut stores {
            let mine: Vec<TableSchema> = slot.aggregations.iter().flat_map(|&a| tables[a].iter().cloned()).collect();
            slot.store.prepare(&mine)?;
        }
        let layouts: Vec<Arc<Layout>> =
            plan.aggregations.iter().map(|a| Arc::new(Layout::new(a, &plan.streams[a.stream]))).collect();
        let workers = config.workers();
        let mut senders = Vec::with_capacity(workers);
        let mut threads = Vec::with_capacity(workers);
        for i in 0..workers {
            let (tx, rx) = bounded::<Msg>(config.settings.queue_batches);
            let worker = Worker::new(i, plan.clone(), &layouts);
            let handle = std::thread::Builder::new()
                .name(format!("tally-worker-{i}"))
                .spawn(move || worker.run(rx))
                .map_err(|e| Error::io("cannot start a worker thread", e))?;
            senders.push(tx);
            threads.push(handle);
        }
        let node_id = config.node_id.clone().unwrap_or_else(|| "node".to_string());
        let flusher = Flusher::new(plan.clone(), layouts, stores, node_id)?;
        Ok(Node {
            spares: (0..workers).map(|_| Vec::new()).collect(),
            plan,
            senders,
            threads,
            flusher,
            seq: Arc::new(AtomicU64::new(0)),
            batch_events: config.settings.batch_events,
        })
    }

    pub fn plan(&self) -> &Arc<AppPlan> {
        &self.plan
    }

    /// A router that feeds this node's workers. Several may exist (one per input thread).
    pub fn router(&self) -> Router {
        Router::new(self.plan.clone(), self.senders.clone(), self.batch_events, self.seq.clone())
    }

    /// Collects every worker's partials (each worker swaps in an empty state: no lock, no
    /// pause beyond the swap) and writes them, with anything still pending, to the stores.
    /// Batches sent before this call are included.
    pub fn flush(&mut self) -> Result<FlushStats> {
        self.collect()?;
        self.flusher.write()
    }

    /// Writes what is pending without collecting from the workers (to retry a flush that
    /// failed, e.g. while the store was down).
    pub fn write_pending(&mut self) -> Result<FlushStats> {
        self.flusher.write()
    }

    /// Rows rolled up and not yet written.
    pub fn pending_rows(&self) -> usize {
        self.flusher.pending_rows()
    }

    fn collect(&mut self) -> Result<()> {
        let (tx, rx) = bounded(self.senders.len());
        for (i, s) in self.senders.iter().enumerate() {
            let spares = std::mem::take(&mut self.spares[i]);
            s.send(Msg::Flush(spares, tx.clone())).map_err(|_| Error::Closed)?;
        }
        drop(tx);
        let mut states: Vec<Vec<State>> = (0..self.senders.len()).map(|_| Vec::new()).collect();
        for _ in 0..self.senders.len() {
            let (i, s) = rx.recv().map_err(|_| Error::Closed)?;
            states[i] = s;
        }
        self.flusher.absorb(&states);
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
        self.flusher.write()
    }

    /// Drains the workers into the pending partials and stops them, but keeps the node (and
    /// its pending partials) so the caller can retry writing with [`Node::write_pending`].
    pub fn stop_workers(&mut self) -> Result<()> {
        let collected = self.collect();
        for s in &self.senders {
            let _ = s.send(Msg::Stop);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        collected
    }

    /// The tables of each aggregation, per duration.
    pub fn tables(&self) -> &[Vec<TableSchema>] {
        self.flusher.tables()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        for s in &self.senders {
            let _ = s.send(Msg::Stop);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
