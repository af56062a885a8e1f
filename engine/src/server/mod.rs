//! The node server behind `tally serve`: binary ingest over TCP with acknowledgements after
//! commit, a flush tick, retention on schedule.
//!
//! Threads: `tally-accept` (takes connections), per connection `tally-conn-N` (reads frames,
//! checks and routes batches) and `tally-ack-N` (writes acknowledgements once the flush that
//! holds a batch has committed), `tally-flush` (owns the node: the tick, the flush, the last
//! flush), and the node's own (`tally-worker-N`, `tally-rollup-N`, `tally-heartbeat`,
//! `tally-purge`).
//!
//! **Acknowledged after commit.** Batches belong to a *generation*: a connection routes a
//! batch to the workers, then reads the open generation `g` and queues the batch's ack
//! for `g`. A flush first moves the open generation from `k` to `k + 1`, then asks the
//! workers for their partials: every batch queued for `k` reached the workers' queues
//! before that request (it was sent before the generation was read), so the flush holds
//! it. When the flush has committed everything (nothing pending or in flight), generation
//! `k` is committed and its acks go out. A failed flush commits nothing; the next tick
//! retries (its rows stay in flight), and the acks wait.
//!
//! **Shutdown order** ([`Server::shutdown`]): stop accepting; stop reading (each
//! connection's read side is shut, a frame in progress is answered "shutting down"); the
//! readers hand what they routed to the workers; the last flush (retried for
//! `tally.store_wait`); acks, or "not committed" errors if the store never took it; join.

pub mod client;
mod connection;
mod http;
mod idempotency;
mod producers;

pub use http::Listening;
pub mod metrics;
pub mod protocol;
mod watermark;

#[cfg(test)]
mod tests;

use crate::config::NodeConfig;
use crate::error::{Error, Result};
use crate::lang::plan::AppPlan;
use crate::node::background::join;
use crate::node::retention::{PurgeNotice, Purger, Retention};
use crate::node::{Node, Routers};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Says once when the heartbeat has failed for [`BEAT_TROUBLE_AFTER_MS`] (with the lease it
/// puts at risk), and once when it lands again; returns whether trouble stands reported.
fn report_heartbeat(node: &Node, report: &Report, reported: bool) -> bool {
    use crate::store::registry::LEASE_MS;
    match node.heartbeat_trouble() {
        Some(t) if !reported && crate::time::clock::now_ms() - t.since_ms >= BEAT_TROUBLE_AFTER_MS => {
            report(Notice::Heartbeat(format!(
                "heartbeat: failing for {} s ({}); after {} s without one, other nodes may take this node's \
                 producers and shard, and it stops at its next flush",
                (crate::time::clock::now_ms() - t.since_ms) / 1000,
                t.error,
                LEASE_MS / 1000
            )));
            true
        }
        None if reported => {
            report(Notice::Heartbeat("heartbeat: the store takes it again".into()));
            false
        }
        _ => reported,
    }
}

/// How long the heartbeat may fail before the server says so (a third of the lease).
const BEAT_TROUBLE_AFTER_MS: i64 = crate::store::registry::LEASE_MS / 3;

/// What a running server reports (the binary logs it).
#[derive(Debug)]
pub enum Notice {
    /// A flush failed; its rows are kept and retried at the next tick.
    FlushFailed(Error),
    /// The last flush failed and is retried after `retry_in`.
    LastFlushWaiting { message: String, retry_in: Duration },
    /// Retention.
    Purge(PurgeNotice),
    /// A connection ended with an error (bad frames, a client that went away).
    Connection { peer: SocketAddr, message: String },
    /// Accepting a connection failed (the listener goes on).
    Accept(String),
    /// An HTTP request could not be taken or answered (the client went away).
    Http(String),
    /// A background thread (the purge schedule) failed when it was stopped.
    Thread(Error),
    /// A version 2 producer could not be released (docs/delivery.md).
    Producer(String),
    /// The heartbeat has kept failing for a while (said once), or lands again after that.
    Heartbeat(String),
    /// The node lost its registration or a producer while cut off from the store: it
    /// commits and acknowledges nothing more, and the process should exit (and be
    /// restarted). What it had not acknowledged is counted where its clients resent it.
    Fenced(Error),
}

type Report = Arc<dyn Fn(Notice) + Send + Sync>;

/// How far flushes have got.
#[derive(Debug, Default, Clone, Copy)]
struct Commit {
    /// Every generation up to this one is in the store.
    generation: u64,
    /// The last flush failed for good: what was not committed never will be.
    given_up: bool,
}

/// What the server's threads share.
struct Shared {
    plan: Arc<AppPlan>,
    routers: Routers,
    config: NodeConfig,
    /// The generation new batches join.
    open: AtomicU64,
    /// How far flushes have got, for threads (the binary acks) …
    commit: Mutex<Commit>,
    committed: Condvar,
    /// … and for async tasks (HTTP requests waiting for their commit).
    commits: tokio::sync::watch::Sender<Commit>,
    /// Wakes the flush thread: an acknowledgement waits (group commit), or the node stops.
    flush_now: crossbeam_channel::Sender<()>,
    /// Whether the flush thread takes wake-ups for waiting acknowledgements: false while
    /// the node is saturated and the interval decides, so that a batch does not wake a
    /// thread that would only go back to sleep (measured: a wake-up per batch cost a few
    /// percent of a node held to a tenth of a CPU).
    eager: AtomicBool,
    stopping: AtomicBool,
    /// Rows rolled up and not yet written (updated by the flush thread).
    pending_rows: AtomicUsize,
    connections: AtomicUsize,
    /// Sockets of live connections, to shut their read side at shutdown.
    sockets: Mutex<Vec<(u64, TcpStream)>>,
    /// HTTP requests between their stop check and the end of their routing: the last
    /// flush waits for them.
    routing: AtomicUsize,
    /// The `--store` option (queries use it too).
    store_override: Option<String>,
    /// How far each binary connection's stream has got in event time (the roll-up waits
    /// for the slowest active one).
    watermarks: watermark::Watermarks,
    metrics: metrics::Metrics,
    report: Report,
    /// Version 2 batch ids, noted with the collect that holds their events.
    ledger: Arc<crate::node::ledger::Ledger>,
    /// Where producers are taken: the node's one store, or why there is none.
    producer_store: std::result::Result<(crate::store::StoreAddress, crate::store::Claim), String>,
    /// A connection of its own for taking and releasing producers (opened when first needed),
    /// so that a HELLO never waits for a flush's transaction on the flusher's connection.
    producer_conn: Mutex<Option<Box<dyn crate::store::Store>>>,
    /// Producers held for HTTP requests with an idempotency key.
    http_producers: idempotency::HttpProducers,
    /// Per producer held by this node: its takes and the batches they took (see [`producers::Held`]).
    producer_takes: Mutex<HashMap<Arc<str>, producers::Held>>,
}

impl Shared {
    fn publish(&self, generation: u64, given_up: bool) {
        let mut c = self.commit.lock().expect("commit lock");
        c.generation = c.generation.max(generation);
        c.given_up |= given_up;
        let now = *c;
        self.committed.notify_all();
        drop(c);
        self.commits.send_replace(now);
    }

    /// Asks for a flush soon: something waits for its acknowledgement. A wake-up already
    /// pending covers this one (the channel holds one); a saturated node flushes on the
    /// interval anyway.
    fn wake_flush(&self) {
        if self.eager.load(Ordering::Relaxed) {
            self.flush_now.try_send(()).ok();
        }
    }
}

/// A running node server.
pub struct Server {
    ingest_addr: SocketAddr,
    http: Option<http::Http>,
    /// What HTTP listens on (the first is `tally.http`).
    listening: Vec<Listening>,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
    flush: Option<JoinHandle<Result<()>>>,
    connections: Arc<Mutex<Vec<connection::Handles>>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("ingest", &self.ingest_addr).finish()
    }
}

impl Server {
    /// Starts a node (stores prepared, node registered) and its listeners on `ingest` and
    /// `http` (`tally.ingest`, `tally.http` when `None`). `on_wait` hears a store that is
    /// down at start.
    pub fn start(
        plan: Arc<AppPlan>,
        config: &NodeConfig,
        store_override: Option<&str>,
        ingest: Option<&str>,
        http_addr: Option<&str>,
        on_wait: &mut dyn FnMut(&Error, Duration),
        report: Report,
    ) -> Result<Server> {
        let addr = ingest.unwrap_or(&config.settings.ingest);
        let listener = TcpListener::bind(addr).map_err(|e| {
            Error::io(format!("cannot listen on {addr} (tally.ingest, or --ingest): is the port in use?"), e)
        })?;
        let ingest_addr = listener.local_addr().map_err(|e| Error::io("cannot read the listening address", e))?;
        let mut node = Node::start(plan, config, store_override, on_wait)?;
        // The node's plan: it knows what each store can key on (`Node::start`).
        let plan = node.plan().clone();
        let producer_store = node.producer_store().map_err(|e| e.to_string());
        let ledger = node.ledger();
        let retention = Retention::new(&plan, config, store_override)?;
        let purger = if retention.is_empty() {
            None
        } else {
            let r = report.clone();
            Some(Purger::spawn(retention, Box::new(move |e| r(Notice::Purge(e))))?)
        };
        let (flush_now, flush_rx) = crossbeam_channel::bounded::<()>(1);
        let watermarks = watermark::Watermarks::new(plan.aggregations.len());
        let shared = Arc::new(Shared {
            watermarks,
            routers: node.routers(),
            plan,
            config: config.clone(),
            open: AtomicU64::new(1),
            commit: Mutex::new(Commit::default()),
            committed: Condvar::new(),
            commits: tokio::sync::watch::Sender::new(Commit::default()),
            flush_now,
            eager: AtomicBool::new(true),
            stopping: AtomicBool::new(false),
            pending_rows: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            sockets: Mutex::new(Vec::new()),
            routing: AtomicUsize::new(0),
            store_override: store_override.map(str::to_string),
            metrics: metrics::Metrics::default(),
            report,
            ledger,
            producer_store,
            producer_conn: Mutex::new(None),
            producer_takes: Mutex::new(HashMap::new()),
            http_producers: idempotency::HttpProducers::default(),
        });
        let http = http::Http::start(http_addr.unwrap_or(&config.settings.http), shared.clone())?;
        let listening = http.listening().to_vec();
        let flush = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("tally-flush".into())
                .spawn(move || flush_loop(node, purger, shared, flush_rx))
                .map_err(|e| Error::io("cannot start the flush thread", e))?
        };
        let connections = Arc::new(Mutex::new(Vec::new()));
        listener.set_nonblocking(true).map_err(|e| Error::io("cannot set up the listener", e))?;
        let accept = {
            let (shared, connections) = (shared.clone(), connections.clone());
            std::thread::Builder::new()
                .name("tally-accept".into())
                .spawn(move || accept_loop(listener, shared, connections))
                .map_err(|e| Error::io("cannot start the accept thread", e))?
        };
        Ok(Server {
            ingest_addr,
            http: Some(http),
            listening,
            shared,
            accept: Some(accept),
            flush: Some(flush),
            connections,
        })
    }

    /// The address binary ingest listens on (the port chosen when 0 was asked for).
    pub fn ingest_addr(&self) -> SocketAddr {
        self.ingest_addr
    }

    /// The address `tally.http` (or `--http`) listens on.
    pub fn http_addr(&self) -> SocketAddr {
        self.listening[0].addr
    }

    /// Every HTTP listener and what it serves: `tally.http`, SI's store query API, the
    /// app's http sources.
    pub fn listening(&self) -> &[Listening] {
        &self.listening
    }

    /// Stops in the documented order and returns when every thread has ended: the last
    /// flush's error, if it could not be committed.
    pub fn shutdown(mut self) -> Result<()> {
        let mut panicked = Vec::new();
        // 1. Stop accepting.
        self.shared.stopping.store(true, Ordering::SeqCst);
        if let Some(a) = self.accept.take() {
            join(a, &mut panicked);
        }
        // 2. Stop reading: each reader sees the end of its stream, hands what it routed to
        //    the workers, and ends. (A socket its client closed already has nothing to shut.)
        for (_, s) in self.shared.sockets.lock().expect("sockets lock").iter() {
            s.shutdown(std::net::Shutdown::Read).ok();
        }
        let handles: Vec<connection::Handles> = std::mem::take(&mut *self.connections.lock().expect("connections"));
        let mut writers = Vec::new();
        for h in handles {
            join(h.reader, &mut panicked);
            writers.push(h.writer);
        }
        // 3. The last flush (the flush thread sees `stopping` and nothing can be routed
        //    any more; a wake-up already queued wakes it as well), then 4. the acks, and join.
        // A wake-up already pending does as well.
        self.shared.flush_now.try_send(()).ok();
        let flushed = self.flush.take().and_then(|f| join(f, &mut panicked)).unwrap_or(Ok(()));
        for w in writers {
            join(w, &mut panicked);
        }
        if let Some(h) = self.http.take() {
            h.stop(&mut panicked);
        }
        flushed?;
        match panicked.is_empty() {
            true => Ok(()),
            false => Err(Error::Internal(format!("the threads {} panicked", panicked.join(", ")))),
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>, connections: Arc<Mutex<Vec<connection::Handles>>>) {
    let mut next_id = 0u64;
    while !shared.stopping.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer)) => {
                next_id += 1;
                match connection::spawn(next_id, stream, peer, shared.clone()) {
                    Ok(h) => connections.lock().expect("connections").push(h),
                    Err(e) => (shared.report)(Notice::Connection { peer, message: e.to_string() }),
                }
            }
            // Non-blocking, so that a stop is seen within a few milliseconds.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
            // A connection that failed before it was accepted (reset, out of descriptors):
            // say so, and keep taking the others.
            Err(e) => {
                (shared.report)(Notice::Accept(e.to_string()));
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// The flush thread. Group commit: a flush starts as soon as an acknowledgement waits (at
/// least `tally.min_flush_gap` after the last one started, which bounds commits per
/// second), unless the node is saturated: then, as always without waiting acks, every
/// `tally.flush_interval`, so that a saturated node writes no more rows per event than
/// with timed flushes. What arrives while a flush runs goes into the next one. One flush
/// at a time. The last flush at shutdown.
///
/// Saturated means: the last flush took at least `tally.eager_flush_events` events, or as
/// many have come since it started. The last flush's size decides, not only what came
/// since: a pipelining client whose window was full sends nothing until its acks arrive,
/// so right after a commit few events have come even at full load (measured: deciding on
/// those alone flushed 1.7 times as often at saturation, writing 1.7 times the rows per
/// event, at 13% less throughput).
fn flush_loop(
    mut node: Node,
    purger: Option<Purger>,
    shared: Arc<Shared>,
    wake: crossbeam_channel::Receiver<()>,
) -> Result<()> {
    let interval = shared.config.flush_interval;
    let min_gap = shared.config.min_flush_gap;
    let eager_max = shared.config.settings.eager_flush_events;
    let m = &shared.metrics;
    let mut last_start = Instant::now();
    let mut taken_at_last = 0u64;
    let mut last_flush_events = 0u64;
    let mut last_took = Duration::ZERO;
    let mut overlapping = false;
    let mut beat_reported = false;
    loop {
        let deadline = last_start + interval;
        let woken = wake.recv_deadline(deadline).is_ok();
        beat_reported = report_heartbeat(&node, &shared.report, beat_reported);
        if shared.stopping.load(Ordering::SeqCst) && shared.connections.load(Ordering::SeqCst) == 0 {
            break;
        }
        if woken && !shared.stopping.load(Ordering::SeqCst) {
            let taken = m.events_in.load(Ordering::Relaxed).saturating_sub(taken_at_last);
            let earliest = if taken >= eager_max || last_flush_events >= eager_max {
                // Saturated: the interval decides, so rows per event stay as with timed flushes.
                deadline
            } else {
                (last_start + min_gap).min(deadline)
            };
            // Wait until then; a stop cuts the wait short.
            while Instant::now() < earliest && !shared.stopping.load(Ordering::SeqCst) {
                wake.recv_deadline(earliest).ok();
            }
            // Hold briefly for the clients the last flush acknowledged: until as many events
            // wait as it carried, for at most half its duration. Closed-loop clients come
            // back within a round trip, so under load every client's request rides one
            // commit instead of two alternating halves each riding its own (a flush costs
            // a row per key it touches: measured with 16 HTTP clients x 100 events and
            // 1,000 keys on PostgreSQL, ~550 rows for 840 events a flush before). One
            // client, or a lull: the count is reached at once, or the hold is short.
            let hold = Instant::now() + (last_took / 2).min(interval);
            while m.events_in.load(Ordering::Relaxed).saturating_sub(taken_at_last) < last_flush_events
                && Instant::now() < hold
                && !shared.stopping.load(Ordering::SeqCst)
            {
                wake.recv_deadline(hold).ok();
            }
        }
        last_start = Instant::now();
        // Flush-bound (saturated, and the flushes themselves take the interval), the store's
        // transaction runs beside the next collect (Node::flush_when): the flusher's work and
        // the store's no longer add up (measured with 100 K keys: roll-up and encode 5.2 s,
        // store 3.0 s of an 8.7 s run, one after the other). Otherwise each flush is written
        // at once, so an ack waits for one flush, not two: a saturated node whose flushes
        // are short waits for the interval anyway, and overlapping there only doubled the
        // ack latency, which halves what window-limited clients send (1,000 dense keys:
        // 9.8 M -> 4.8 M events/s). Once overlapped, a flush takes about the longer of its
        // two halves, not their sum, so it stays overlapped down to half the interval
        // rather than switching back and forth.
        let since = m.events_in.load(Ordering::Relaxed).saturating_sub(taken_at_last);
        let bound = if overlapping { interval / 2 } else { interval };
        overlapping = (last_flush_events >= eager_max || since >= eager_max) && last_took >= bound;
        let carried = last_flush_events;
        let delay = shared.config.rollup_delay.as_millis() as i64;
        let flush = node.flush_when(overlapping, || {
            if overlapping {
                // The previous flush's write is running. Its predecessor's acks went out
                // just now, and the clients they freed answer within a round trip: wait for
                // as many events as the last collect took, at most half a flush, so that
                // they ride this collect, not the next one. Without this wait (measured on
                // the sparse stream, 1,000 keys, 2 x 256 batches in flight) every collect
                // right after an ack found ~0 events, and the write pipeline stalled one
                // flush in three.
                let hold = Instant::now() + (last_took / 2).min(interval);
                while m.events_in.load(Ordering::Relaxed).saturating_sub(taken_at_last) < carried
                    && Instant::now() < hold
                    && !shared.stopping.load(Ordering::SeqCst)
                {
                    wake.recv_deadline(hold.min(Instant::now() + Duration::from_millis(5))).ok();
                }
            }
            let taken_now = m.events_in.load(Ordering::Relaxed);
            last_flush_events = taken_now.saturating_sub(taken_at_last);
            taken_at_last = taken_now;
            shared.eager.store(last_flush_events < eager_max, Ordering::Relaxed);
            // Every batch routed so far is in this collect (it is queued ahead of the
            // workers' handover), so the floors may count it (see node::Opened).
            let floors = shared.watermarks.floors(crate::time::clock::now_ms(), delay);
            // Batches that read the generation before this swap are in this flush.
            crate::node::Opened { generation: shared.open.fetch_add(1, Ordering::SeqCst), floors: Some(floors) }
        });
        last_took = last_start.elapsed();
        match flush {
            Ok(stats) => {
                m.add_flush(&stats);
                shared.publish(stats.durable, false);
                shared.http_producers.reap(&shared, stats.durable, false);
            }
            Err(e @ Error::Shard(_)) => {
                // Fenced: another process took this node's registration or one of its
                // producers, and may count what this node holds. Nothing more is committed
                // or acknowledged; the waiting acks get "not committed".
                metrics::Metrics::add(&m.store_errors, 1);
                shared.stopping.store(true, Ordering::SeqCst);
                shared.publish(0, true);
                (shared.report)(Notice::Fenced(e));
                return Err(Error::Shard("this node was fenced off; see the log".into()));
            }
            Err(e) => {
                metrics::Metrics::add(&m.store_errors, 1);
                (shared.report)(Notice::FlushFailed(e));
            }
        }
        shared.pending_rows.store(node.pending_rows(), Ordering::SeqCst);
    }
    if let Some(Err(e)) = purger.map(Purger::stop) {
        (shared.report)(Notice::Thread(e));
    }
    // The last flush: every reader has ended, and HTTP requests that passed their stop
    // check finish routing first, so everything taken is in the workers.
    while shared.routing.load(Ordering::SeqCst) > 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let generation = shared.open.fetch_add(1, Ordering::SeqCst);
    let mut on_retry =
        |e: &Error, retry_in: Duration| (shared.report)(Notice::LastFlushWaiting { message: e.to_string(), retry_in });
    let last = node.stop_workers().and_then(|_| {
        crate::node::backoff::retry(shared.config.store_wait, &mut on_retry, || node.write_pending())
            .and_then(|_| crate::node::backoff::retry(shared.config.store_wait, &mut on_retry, || node.release()))
    });
    match last {
        Ok(()) => {
            shared.publish(generation, false);
            shared.http_producers.reap(&shared, generation, true);
            Ok(())
        }
        Err(e) => {
            // Whatever failed (the store, or a broken node), the acks still waiting get
            // "not committed" rather than waiting for ever.
            shared.publish(0, true);
            Err(e)
        }
    }
}
