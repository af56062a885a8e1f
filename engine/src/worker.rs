//! Worker threads: each owns the accumulators of every aggregation for its share of the
//! groups, and is fed batches over a bounded channel. No locks: a flush is a message that
//! swaps the worker's state for an empty one.

use crate::accumulator::{Accumulator, Layout, State};
use crate::plan::AppPlan;
use crate::router::{Batch, Msg};
use crate::wire::DecodedRow;
use crossbeam_channel::Receiver;
use std::sync::Arc;

pub struct Worker {
    index: usize,
    plan: Arc<AppPlan>,
    accumulators: Vec<Accumulator>,
    rows: Vec<DecodedRow>,
}

impl Worker {
    pub fn new(index: usize, plan: Arc<AppPlan>, layouts: &[Arc<Layout>]) -> Worker {
        let accumulators = plan.aggregations.iter().zip(layouts).map(|(a, l)| Accumulator::new(a, l.clone())).collect();
        let rows = plan
            .streams
            .iter()
            .map(|s| DecodedRow::new(&s.attributes.iter().map(|a| a.ty).collect::<Vec<_>>()))
            .collect();
        Worker { index, plan, accumulators, rows }
    }

    /// Takes one batch into the accumulators.
    #[inline]
    pub fn process(&mut self, batch: &Batch) {
        let stream = &self.plan.streams[batch.stream];
        let row = &mut self.rows[batch.stream];
        let buf = &batch.data[..];
        let mut pos = 0;
        let mut seq = batch.first_seq;
        while pos < buf.len() {
            // Events were checked where they entered the node; a failure here would be a
            // bug, and dropping the rest of the batch is the only safe thing to do.
            if row.decode(buf, &mut pos).is_err() {
                debug_assert!(false, "undecodable event reached a worker");
                break;
            }
            for &ai in &stream.aggregations {
                self.accumulators[ai].add(row, buf, batch.arrival_ms, seq);
            }
            seq += 1;
        }
    }

    pub fn swap(&mut self, spares: Vec<State>) -> Vec<State> {
        let mut spares = spares.into_iter();
        self.accumulators.iter_mut().map(|a| a.swap(spares.next().unwrap_or_default())).collect()
    }

    pub(crate) fn run(mut self, rx: Receiver<Msg>) {
        while let Ok(msg) = rx.recv() {
            match msg {
                Msg::Batch(b) => self.process(&b),
                Msg::Flush(spares, reply) => {
                    let states = self.swap(spares);
                    // The flusher may have given up (node stopping); nothing to do then.
                    let _ = reply.send((self.index, states));
                }
                Msg::Stop => break,
            }
        }
    }
}
