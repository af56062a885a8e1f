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
use crossbeam_channel::{Receiver, Sender, unbounded};
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tally::server::client::Client;
use tally::server::protocol::Reply;

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
    /// ACK latency, microseconds.
    pub latency_us: Histogram<u64>,
}

struct Shared {
    acked_batches: AtomicUsize,
    acked_events: AtomicU64,
    resent: AtomicU64,
    started: Instant,
}

/// Publishes every batch; fails when a batch is refused for good or no node is left.
pub fn publish(plan: &Plan, batches: &[Batch], progress: &ProgressBar) -> anyhow::Result<Published> {
    let conns = plan.targets.len() * plan.connections_per_node.max(1);
    let (retry_tx, retry_rx) = unbounded::<usize>();
    let shared = Arc::new(Shared {
        acked_batches: AtomicUsize::new(0),
        acked_events: AtomicU64::new(0),
        resent: AtomicU64::new(0),
        started: Instant::now(),
    });
    let results: Vec<anyhow::Result<(u64, Histogram<u64>)>> = std::thread::scope(|s| {
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
            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a publishing thread panicked"))))
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
        let why = first_error.map(|e| format!(": {e:#}")).unwrap_or_default();
        anyhow::bail!(
            "{} of {} batches were never acknowledged{why}",
            batches.len() as u64 - acked_batches,
            batches.len()
        );
    }
    Ok(Published {
        elapsed: shared.started.elapsed(),
        acked_events: shared.acked_events.load(Ordering::SeqCst),
        acked_batches,
        per_target,
        resent: shared.resent.load(Ordering::SeqCst),
        latency_us: latency,
    })
}

/// One connection: its own share of the batches, then whatever others could not place.
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
) -> anyhow::Result<(u64, Histogram<u64>)> {
    let mut latency = Histogram::<u64>::new(3).expect("a histogram");
    let mut mine = own.into_iter();
    let mut events = 0u64;
    let hand_over = |ids: &mut dyn Iterator<Item = usize>| {
        for i in ids {
            shared.resent.fetch_add(1, Ordering::Relaxed);
            let _ = retry_tx.send(i);
        }
    };
    let mut client = match Client::connect(target, plan.token.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            hand_over(&mut mine);
            return Err(anyhow::anyhow!("cannot connect to {target}: {e}"));
        }
    };
    // batch id → (batch index, sent at)
    let mut outstanding: HashMap<u64, (usize, Instant)> = HashMap::new();
    let per_conn_rate = plan.rate.map(|r| r / conns as f64);
    let mut sent_events = 0u64;
    let started = Instant::now();
    loop {
        if shared.acked_batches.load(Ordering::SeqCst) == batches.len() {
            return Ok((events, latency));
        }
        let next =
            if outstanding.len() < plan.window { mine.next().or_else(|| retry_rx.try_recv().ok()) } else { None };
        if let Some(i) = next {
            if let Some(rate) = per_conn_rate {
                let due = started + Duration::from_secs_f64(sent_events as f64 / rate);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    let _ = client.flush();
                    std::thread::sleep(wait);
                }
            }
            match client.send("TradeStream", &batches[i].bytes) {
                Ok(id) => {
                    outstanding.insert(id, (i, Instant::now()));
                    sent_events += batches[i].events as u64;
                    continue;
                }
                Err(e) => {
                    let _ = retry_tx.send(i);
                    hand_over(&mut outstanding.into_values().map(|(i, _)| i).chain(&mut mine));
                    return Err(anyhow::anyhow!("{target}: {e}"));
                }
            }
        }
        if outstanding.is_empty() {
            // Nothing of ours in flight: wait for batches others hand over, or the end.
            match retry_rx.recv_timeout(Duration::from_millis(5)) {
                Ok(i) => {
                    let _ = retry_tx.send(i);
                }
                Err(_) => continue,
            }
            continue;
        }
        if client.flush().is_err() {
            hand_over(&mut outstanding.into_values().map(|(i, _)| i).chain(&mut mine));
            return Err(anyhow::anyhow!("{target}: the connection broke"));
        }
        match client.recv() {
            Ok(Reply::Ack { batch_id, events: n }) => {
                if let Some((_, at)) = outstanding.remove(&batch_id) {
                    let _ = latency.record(at.elapsed().as_micros() as u64);
                    events += n as u64;
                    shared.acked_events.fetch_add(n as u64, Ordering::SeqCst);
                    shared.acked_batches.fetch_add(1, Ordering::SeqCst);
                    progress.inc(n as u64);
                }
            }
            Ok(Reply::Error { batch_id, retryable: true, .. }) => {
                if let Some((i, _)) = outstanding.remove(&batch_id) {
                    shared.resent.fetch_add(1, Ordering::Relaxed);
                    let _ = retry_tx.send(i);
                    // Give the node a moment before this connection sends more.
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            Ok(Reply::Error { batch_id, code, message, .. }) => {
                anyhow::bail!("{target} refused batch {batch_id} for good (code {code}): {message}");
            }
            Ok(Reply::Ready { .. }) => {}
            Err(e) => {
                hand_over(&mut outstanding.into_values().map(|(i, _)| i).chain(&mut mine));
                return Err(anyhow::anyhow!("{target}: {e}"));
            }
        }
    }
}
