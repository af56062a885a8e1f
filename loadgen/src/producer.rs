//! Publishing with protocol version 2 (docs/delivery.md): one producer per connection,
//! each batch numbered, exactly once across fail-over.
//!
//! A producer owns its share of the batches. It sends them in sequence-number order, keeps
//! each until its reply, and when its connection breaks (a node killed, cut off, stalled
//! past the read timeout) it connects to the next node and resends every unanswered batch
//! under its own number, in order; the node answers DUPLICATE for those it had committed.
//! A batch refused with a retryable error is sent again under a new number. Unlike the
//! version 1 driver, batches never move between producers: a batch's number belongs to its
//! producer.

use crate::Batch;
use crate::drive::{Plan, Published};
use crate::error::{Error, Result};
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tally::server::client::Client;
use tally::server::protocol::Reply;

/// How long a producer may go without any reply before it gives up.
const STALL: Duration = Duration::from_secs(120);

/// A node that answers nothing this long is taken for stalled: the producer reconnects.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Counts {
    acked_events: AtomicU64,
    acked_batches: AtomicU64,
    duplicates: AtomicU64,
    resent: AtomicU64,
    reconnects: AtomicU64,
}

/// Publishes every batch exactly once; fails when a batch is refused for good or a
/// producer gets no reply for [`STALL`].
pub fn publish(plan: &Plan, batches: &[Batch], progress: &ProgressBar, run_id: &str) -> Result<Published> {
    let producers = plan.targets.len() * plan.connections_per_node.max(1);
    let counts = Counts::default();
    let started = Instant::now();
    let results: Vec<Result<(Vec<u64>, Histogram<u64>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..producers)
            .map(|p| {
                let own: VecDeque<usize> = (p..batches.len()).step_by(producers).collect();
                let name = format!("loadgen-{run_id}-{p}");
                let counts = &counts;
                let rate = plan.rate.map(|r| r / producers as f64);
                s.spawn(move || Producer { plan, batches, name, counts, progress, first: p, rate }.run(own))
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
    for r in results {
        let (by_target, h) = r?;
        per_target.iter_mut().zip(by_target).for_each(|(t, n)| *t += n);
        latency.add(&h).expect("same histogram bounds");
    }
    Ok(Published {
        elapsed: started.elapsed(),
        acked_events: counts.acked_events.load(Ordering::SeqCst),
        acked_batches: counts.acked_batches.load(Ordering::SeqCst),
        per_target,
        resent: counts.resent.load(Ordering::SeqCst),
        duplicates: counts.duplicates.load(Ordering::SeqCst),
        reconnects: counts.reconnects.load(Ordering::SeqCst),
        latency_us: latency,
    })
}

struct Producer<'a> {
    plan: &'a Plan,
    batches: &'a [Batch],
    name: String,
    counts: &'a Counts,
    progress: &'a ProgressBar,
    /// The target it starts with.
    first: usize,
    /// Events per second for this producer (`None`: as fast as possible).
    rate: Option<f64>,
}

impl Producer<'_> {
    /// Sends `queue`; returns the events acknowledged by each target and the latencies.
    fn run(&self, mut queue: VecDeque<usize>) -> Result<(Vec<u64>, Histogram<u64>)> {
        let targets = &self.plan.targets;
        let mut latency = Histogram::<u64>::new(3).expect("a histogram");
        let mut by_target = vec![0u64; targets.len()];
        // sequence number -> (batch, sent at)
        let mut unanswered: BTreeMap<u64, (usize, Instant)> = BTreeMap::new();
        let mut next_seq = 1u64;
        let mut t = self.first % targets.len();
        let mut last_progress = Instant::now();
        let mut connected_before = false;
        let started = Instant::now();
        let mut sent_events = 0u64;
        while !queue.is_empty() || !unanswered.is_empty() {
            if last_progress.elapsed() > STALL {
                return Err(Error::Publish {
                    message: format!("producer {} got no reply for {} s", self.name, STALL.as_secs()),
                    retryable: true,
                });
            }
            let mut c = match Client::connect_producer(&targets[t], self.plan.token.as_deref(), &self.name) {
                Ok(c) => c,
                Err(tally::Error::ProducerHeld(_)) => {
                    // The node it left still holds it: wait, then ask the next node. The
                    // holder itself takes it back at once; a holder that could not release
                    // it (its store was down) keeps it while it lives, so asking only the
                    // node that refused would wait for ever.
                    t = (t + 1) % targets.len();
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
                Err(e) if e.is_retryable() || matches!(e, tally::Error::Io { .. }) => {
                    // A node killed or restarting: the next one.
                    t = (t + 1) % targets.len();
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                Err(e) => return Err(Error::Publish { message: format!("{}: {e}", targets[t]), retryable: false }),
            };
            if connected_before {
                self.counts.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            connected_before = true;
            c.set_read_timeout(Some(READ_TIMEOUT)).ok();
            // Every batch without a reply again, under its own number, in order.
            let mut broken = false;
            for (seq, (b, at)) in unanswered.iter_mut() {
                self.counts.resent.fetch_add(1, Ordering::Relaxed);
                *at = Instant::now();
                if c.send_numbered(*seq, "TradeStream", &self.batches[*b].bytes).is_err() {
                    broken = true;
                    break;
                }
            }
            while !broken {
                while unanswered.len() < self.plan.window
                    && let Some(b) = queue.pop_front()
                {
                    if let Some(rate) = self.rate {
                        let due = started + Duration::from_secs_f64(sent_events as f64 / rate);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            if !unanswered.is_empty() {
                                // Not due yet: read replies meanwhile (an ACK read late
                                // would count the wait as latency).
                                queue.push_front(b);
                                break;
                            }
                            c.flush().ok();
                            std::thread::sleep(wait);
                        }
                    }
                    sent_events += self.batches[b].events as u64;
                    let seq = next_seq;
                    next_seq += 1;
                    unanswered.insert(seq, (b, Instant::now()));
                    if c.send_numbered(seq, "TradeStream", &self.batches[b].bytes).is_err() {
                        broken = true;
                        break;
                    }
                }
                if broken || c.flush().is_err() {
                    break;
                }
                if unanswered.is_empty() {
                    return Ok((by_target, latency));
                }
                match c.recv() {
                    Ok(reply @ (Reply::Ack { batch_id, events } | Reply::Duplicate { batch_id, events })) => {
                        if let Some((_, at)) = unanswered.remove(&batch_id) {
                            if matches!(reply, Reply::Duplicate { .. }) {
                                // Committed before (the node we left did it): not counted again.
                                self.counts.duplicates.fetch_add(1, Ordering::Relaxed);
                            }
                            latency.record(at.elapsed().as_micros() as u64).ok();
                            by_target[t] += events as u64;
                            self.counts.acked_events.fetch_add(events as u64, Ordering::SeqCst);
                            self.counts.acked_batches.fetch_add(1, Ordering::SeqCst);
                            self.progress.inc(events as u64);
                            last_progress = Instant::now();
                        }
                    }
                    Ok(Reply::Error { batch_id, retryable: true, .. }) if batch_id != 0 => {
                        // Not taken, and its number is spent: again under a new one.
                        if let Some((b, _)) = unanswered.remove(&batch_id) {
                            self.counts.resent.fetch_add(1, Ordering::Relaxed);
                            queue.push_front(b);
                        }
                    }
                    Ok(Reply::Error { batch_id, retryable: false, code, message }) if batch_id != 0 => {
                        return Err(Error::Publish {
                            message: format!(
                                "{} refused batch {batch_id} for good (code {code}): {message}",
                                targets[t]
                            ),
                            retryable: false,
                        });
                    }
                    // About the connection (the node stopping), or the connection broke or
                    // stalled: the next node.
                    Ok(_) | Err(_) => broken = true,
                }
            }
            t = (t + 1) % targets.len();
        }
        Ok((by_target, latency))
    }
}
