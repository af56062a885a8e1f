//! Worker threads: each owns the accumulators of every aggregation for its share of the
//! groups, and is fed batches over a bounded channel. No locks: a flush is a message that
//! swaps the worker's state for an empty one.

use crate::aggregate::accumulator::{Accumulator, Program, State};
use crate::aggregate::message::{Batch, Msg};
use crate::ingest::wire::BatchView;
use crate::lang::plan::AppPlan;
use crossbeam_channel::Receiver;
use std::sync::Arc;

pub struct Worker {
    index: usize,
    plan: Arc<AppPlan>,
    accumulators: Vec<Accumulator>,
}

impl Worker {
    pub fn new(index: usize, plan: Arc<AppPlan>, programs: &[Arc<Program>]) -> Worker {
        let accumulators =
            plan.aggregations.iter().zip(programs).map(|(a, l)| Accumulator::new(a, l.clone())).collect();
        Worker { index, plan, accumulators }
    }

    /// Takes one batch into the accumulators.
    #[inline]
    pub fn process(&mut self, batch: &Batch) {
        let stream = &self.plan.streams[batch.stream];
        // Batches were checked where they entered the node; a failure here would be a bug,
        // and dropping the batch is the only safe thing to do.
        let Ok(view) = BatchView::parse_trusted(&batch.data, &stream.types) else {
            debug_assert!(false, "an unreadable batch reached a worker");
            return;
        };
        for i in 0..view.len() {
            let row = view.event(i);
            let seq = batch.first_seq + i as u64;
            for &ai in &stream.aggregations {
                self.accumulators[ai].add(&row, batch.arrival_ms, seq);
            }
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
