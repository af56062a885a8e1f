//! Publishing: pre-encoded batches round robin over connections to every node, pipelined,
//! each batch counted when its node acknowledges it (after its flush committed).
//!
//! Fail-over: a batch a node refuses with a retryable error ("busy", "shutting down", "not
//! committed"), and every unacknowledged batch of a connection that breaks, goes to a shared
//! queue that every live connection takes from. A batch refused for good (bad input) fails
//! the run. A batch whose node committed it but whose ACK was lost with the connection is
//! sent again and counted twice: the protocol is at-least-once for that window, and the
//! verification would show it.

use crate::Batch;
use crate::error::{Error, Result};
use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tally::server::client::Client;
use tally::server::protocol::Reply;

/// How long a run may go without any ACK before it gives up.
const STALL: Duration = Duration::from_secs(60);

/// How a run publishes.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Binary ingest addresses of the nodes.
    pub targets: Vec<String>,
    pub connections_per_node: usize,
    /// Batches a connection keeps unanswered.
    pub window: usize,
    /// Events per second to aim at over all connections (`None`: as fast as possible).
    pub rate: Option<f64>,
    pub token: Option<String>,
}

/// What publishing did.
#[derive(Debug)]
pub struct Published {
    pub elapsed: Duration,
    pub acked_events: u64,
    pub acked_batches: u64,
    /// Events acknowledged by each target.
    pub per_target: Vec<u64>,
    /// Batches sent again after a refusal or a broken connection.
    pub resent: u64,
    /// Protocol version 2: resent batches the nodes had committed, answered DUPLICATE.
    pub duplicates: u64,
    /// Protocol version 2: connections made again after one broke.
    pub reconnects: u64,
    /// ACK latency, microseconds.
    pub latency_us: Histogram<u64>,
}

struct Shared {
    /// Milliseconds since `started` of the last ACK (a stalled run fails instead of
    /// waiting for ever).
    last_ack_ms: AtomicU64,
    acked_batches: AtomicUsize,
    acked_events: AtomicU64,
    resent: AtomicU64,
    started: Instant,
}

/// Publishes every batch; fails when a batch is refused for good or no node is left.
pub fn publish(plan: &Plan, batches: &[Batch], progress: &ProgressBar) -> Result<Published> {
    let conns = plan.targets.len() * plan.connections_per_node.max(1);
    let (retry_tx, retry_rx) = unbounded::<usize>();
    let shared = Arc::new(Shared {
        last_ack_ms: AtomicU64::new(0),
        acked_batches: AtomicUsize::new(0),
        acked_events: AtomicU64::new(0),
        resent: AtomicU64::new(0),
        started: Instant::now(),
    });
    let results: Vec<Result<(u64, Histogram<u64>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..conns)
            .map(|c| {
                let own: Vec<usize> = (c..batches.len()).step_by(conns).collect();
                let target = &plan.targets[c % plan.targets.len()];
                let (retry_tx, retry_rx, shared) = (retry_tx.clone(), retry_rx.clone(), shared.clone());
                s.spawn(move || connection(plan, target, batches, own, &retry_tx, &retry_rx, &shared, progress, conns))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::Publish { message: "a publishing thread panicked".into(), retryable: false })
                })
            })
            .collect()
    });
    let mut latency = Histogram::<u64>::new(3).expect("a histogram");
    let mut per_target = vec![0u64; plan.targets.len()];
    let mut first_error = None;
    for (c, r) in results.into_iter().enumerate() {
        match r {
            Ok((events, h)) => {
                per_target[c % plan.targets.len()] += events;
                latency.add(&h).expect("same histogram bounds");
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let acked_batches = shared.acked_batches.load(Ordering::SeqCst) as u64;
    if acked_batches < batches.len() as u64 {
        // Retryable unless what stopped it was (a refusal for good, say).
        let retryable = first_error.as_ref().is_none_or(Error::is_retryable);
        let why = first_error.map(|e| format!(": {e}")).unwrap_or_default();
        return Err(Error::Publish {
            message: format!(
                "{} of {} batches were never acknowledged{why}",
                batches.len() as u64 - acked_batches,
                batches.len()
            ),
            retryable,
        });
    }
    Ok(Published {
        elapsed: shared.started.elapsed(),
        acked_events: shared.acked_events.load(Ordering::SeqCst),
        acked_batches,
        per_target,
        resent: shared.resent.load(Ordering::SeqCst),
        duplicates: 0,
        reconnects: 0,
        latency_us: latency,
    })
}

/// One connection: its own share of the batches, then whatever others could not place.
/// A sending loop here and a receiving thread, so that each ACK is seen (and its latency
/// measured) when it arrives, even while the sender waits to keep to a rate.
#[allow(clippy::too_many_arguments)]
fn connection(
    plan: &Plan,
    target: &str,
    batches: &[Batch],
    own: Vec<usize>,
    retry_tx: &Sender<usize>,
    retry_rx: &Receiver<usize>,
    shared: &Shared,
    progress: &ProgressBar,
    conns: usize,
) -> Result<(u64, Histogram<u64>)> {
    let mut mine = own.into_iter();
    let (slot_tx, slot_rx) = bounded::<()>(plan.window.max(1));
    let c = Connection {
        target,
        batches,
        retry_tx,
        retry_rx,
        shared,
        progress,
        rate: plan.rate.map(|r| r / conns as f64),
        outstanding: Mutex::new(HashMap::new()),
        slot_tx,
        slot_rx,
        broken: AtomicBool::new(false),
    };
    let client = match Client::connect(target, plan.token.as_deref()) {
        Ok(client) => client,
        Err(e) => {
            c.hand_over(&mut mine);
            return Err(Error::Publish {
                message: format!("cannot connect to {target}: {e}"),
                retryable: e.is_retryable(),
            });
        }
    };
    let (mut tx, rx) = client.into_split()?;
    std::thread::scope(|s| {
        let receiver = s.spawn(|| c.receive(rx));
        let send_error = c.send(&mut tx, &mut mine);
        // Best effort: the connection may be broken already, and its batches handed over.
        tx.flush().ok();
        c.hand_over(&mut mine);
        // Wait for the replies still to come, then end the receiver.
        while !c.outstanding.lock().expect("outstanding").is_empty() && !c.broken.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(2));
        }
        tx.stop_receiving();
        let (events, latency, fatal) = receiver.join().expect("the receiving thread");
        // A batch sent just as the connection broke may have gone in after the receiver
        // handed the unanswered ones over: it has no answer either, so it goes too.
        c.hand_over_outstanding();
        match fatal.or(send_error) {
            Some(e) => Err(e),
            None => Ok((events, latency)),
        }
    })
}

/// What one connection's sending loop and receiving thread share.
struct Connection<'a> {
    target: &'a str,
    batches: &'a [Batch],
    retry_tx: &'a Sender<usize>,
    retry_rx: &'a Receiver<usize>,
    shared: &'a Shared,
    progress: &'a ProgressBar,
    /// Events per second for this connection (`None`: as fast as possible).
    rate: Option<f64>,
    /// batch id → (batch index, sent at).
    outstanding: Mutex<HashMap<u64, (usize, Instant)>>,
    /// A slot is taken per batch in flight (the window) and freed per reply.
    slot_tx: Sender<()>,
    slot_rx: Receiver<()>,
    /// The connection broke or a batch was refused for good: stop sending.
    broken: AtomicBool,
}

impl Connection<'_> {
    /// Gives batches to the other connections (the shared queue).
    fn hand_over(&self, ids: &mut dyn Iterator<Item = usize>) {
        for i in ids {
            self.resend(i);
        }
    }

    fn resend(&self, i: usize) {
        self.shared.resent.fetch_add(1, Ordering::Relaxed);
        // The queue's receiving end lives as long as the run (`publish` holds it).
        self.retry_tx.send(i).ok();
    }

    /// Hands over every batch still unanswered.
    fn hand_over_outstanding(&self) {
        let left: Vec<usize> = self.outstanding.lock().expect("outstanding").drain().map(|(_, (i, _))| i).collect();
        self.hand_over(&mut left.into_iter());
    }

    /// The receiving thread: counts each ACK, hands retryable refusals over, and stops at
    /// a refusal for good or the end of the stream. Returns the events acknowledged, their
    /// latencies and the refusal for good, if any.
    fn receive(&self, mut rx: tally::server::client::Receiver) -> (u64, Histogram<u64>, Option<Error>) {
        let mut latency = Histogram::<u64>::new(3).expect("a histogram");
        let mut events = 0u64;
        let mut fatal = None;
        loop {
            let reply = rx.recv();
            // Free a window slot (an empty window has none to free).
            self.slot_rx.try_recv().ok();
            match reply {
                // A duplicate was counted before: it is as good as an ACK.
                Ok(Reply::Ack { batch_id, events: n } | Reply::Duplicate { batch_id, events: n }) => {
                    if let Some((_, at)) = self.outstanding.lock().expect("outstanding").remove(&batch_id) {
                        // A latency beyond the histogram's range is left out of it.
                        latency.record(at.elapsed().as_micros() as u64).ok();
                        events += n as u64;
                        let shared = self.shared;
                        shared.acked_events.fetch_add(n as u64, Ordering::SeqCst);
                        shared.acked_batches.fetch_add(1, Ordering::SeqCst);
                        shared.last_ack_ms.store(shared.started.elapsed().as_millis() as u64, Ordering::SeqCst);
                        self.progress.inc(n as u64);
                    }
                }
                Ok(Reply::Error { batch_id, retryable: true, .. }) => {
                    if let Some((i, _)) = self.outstanding.lock().expect("outstanding").remove(&batch_id) {
                        self.resend(i);
                    }
                }
                Ok(Reply::Error { batch_id, code, message, .. }) => {
                    fatal = Some(Error::Publish {
                        message: format!("{} refused batch {batch_id} for good (code {code}): {message}", self.target),
                        retryable: false,
                    });
                    self.broken.store(true, Ordering::SeqCst);
                    break;
                }
                Ok(Reply::Ready { .. }) => {}
                // The end of the stream: the sender stopped us, or the node went away.
                Err(_) => {
                    self.broken.store(true, Ordering::SeqCst);
                    break;
                }
            }
        }
        // Whatever is still unanswered goes to the other connections.
        self.hand_over_outstanding();
        (events, latency, fatal)
    }

    /// The sending loop: this connection's batches, then the shared queue's, each once a
    /// window slot is free and (with a rate) when it is due. Returns why it stopped early.
    fn send(&self, tx: &mut tally::server::client::Sender, mine: &mut dyn Iterator<Item = usize>) -> Option<Error> {
        let started = Instant::now();
        let mut sent_events = 0u64;
        let total = self.batches.len();
        while self.shared.acked_batches.load(Ordering::SeqCst) < total && !self.broken.load(Ordering::SeqCst) {
            let Some(i) = mine.next().or_else(|| self.retry_rx.recv_timeout(Duration::from_millis(5)).ok()) else {
                tx.flush().ok();
                if let Some(e) = self.stalled() {
                    return Some(e);
                }
                continue;
            };
            if !self.wait_for_slot(tx) {
                self.retry_tx.send(i).ok();
                return None;
            }
            if let Some(rate) = self.rate {
                let due = started + Duration::from_secs_f64(sent_events as f64 / rate);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    tx.flush().ok();
                    std::thread::sleep(wait);
                }
            }
            let batch = &self.batches[i];
            let mut out = self.outstanding.lock().expect("outstanding");
            match tx.send("TradeStream", &batch.bytes) {
                Ok(id) => {
                    out.insert(id, (i, Instant::now()));
                    sent_events += batch.events as u64;
                }
                Err(e) => {
                    drop(out);
                    self.retry_tx.send(i).ok();
                    return Some(Error::Publish {
                        message: format!("{}: {e}", self.target),
                        retryable: e.is_retryable(),
                    });
                }
            }
            drop(out);
            // Without a rate, flush every few batches (and when the queue runs dry, above).
            if self.rate.is_some() || sent_events % (16 * crate::BATCH_EVENTS as u64) < batch.events as u64 {
                tx.flush().ok();
            }
        }
        None
    }

    /// Takes a window slot, waiting for a reply to free one. False when the connection
    /// broke meanwhile.
    fn wait_for_slot(&self, tx: &mut tally::server::client::Sender) -> bool {
        if self.slot_tx.try_send(()).is_err() {
            // Push what is queued, so the replies that free slots can come.
            tx.flush().ok();
            while self.slot_tx.send_timeout((), Duration::from_millis(50)).is_err() {
                if self.broken.load(Ordering::SeqCst) {
                    break;
                }
            }
        }
        !self.broken.load(Ordering::SeqCst)
    }

    /// With nothing to send: if nothing has been acknowledged anywhere for a long while,
    /// batches were lost on the way; say so rather than wait for ever.
    fn stalled(&self) -> Option<Error> {
        let idle = self.shared.started.elapsed().as_millis() as u64 - self.shared.last_ack_ms.load(Ordering::SeqCst);
        (self.outstanding.lock().expect("outstanding").is_empty() && idle > STALL.as_millis() as u64).then(|| {
            Error::Publish {
                message: format!(
                    "no batch acknowledged for {} s and none left to send: the run stalled",
                    STALL.as_secs()
                ),
                retryable: true,
            }
        })
    }
}
