//! Worker threads: each owns the accumulators of every aggregation for its share of the
//! groups, and is fed batches over a bounded channel. No locks: a flush is a message that
//! swaps the worker's state for an empty one.

use crate::aggregate::accumulator::{Accumulator, Program, State};
use crate::aggregate::message::{Batch, Handover, Msg, Unreadable};
use crate::ingest::wire::BatchView;
use crate::lang::plan::AppPlan;
use crossbeam_channel::Receiver;
use std::sync::Arc;

pub struct Worker {
    index: usize,
    plan: Arc<AppPlan>,
    accumulators: Vec<Accumulator>,
    /// Batches that could not be decoded since the last handover.
    unreadable: Option<Unreadable>,
}

impl Worker {
    pub fn new(index: usize, plan: Arc<AppPlan>, programs: &[Arc<Program>]) -> Worker {
        let accumulators =
            plan.aggregations.iter().zip(programs).map(|(a, l)| Accumulator::new(a, l.clone())).collect();
        Worker { index, plan, accumulators, unreadable: None }
    }

    /// Takes one batch into the accumulators.
    ///
    /// Batches were checked where they entered the node, so one that cannot be decoded
    /// here is a bug. It is not counted, and it is reported at the next handover, so that
    /// the node refuses to commit (and so to acknowledge) anything from then on.
    #[inline]
    pub fn process(&mut self, batch: &Batch) {
        let stream = &self.plan.streams[batch.stream];
        let view = match BatchView::parse_trusted(&batch.data, &stream.types) {
            Ok(view) => view,
            Err(e) => {
                let names: Vec<&str> = stream.attributes.iter().map(|a| a.name.as_str()).collect();
                let u = self.unreadable.get_or_insert_with(|| Unreadable {
                    batches: 0,
                    events: 0,
                    first: format!("stream `{}`: {}", stream.name, e.describe(&names)),
                });
                u.batches += 1;
                u.events += u64::from(batch.events);
                return;
            }
        };
        // Aggregation by aggregation: each owns its own state, so the order between them
        // does not matter, and a whole batch lets one prefetch events ahead.
        for &ai in &stream.aggregations {
            self.accumulators[ai].add_batch(&view, batch.arrival_ms, batch.first_seq);
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
                    let handover = Handover { worker: self.index, states, unreadable: self.unreadable.take() };
                    if reply.send(handover).is_err() {
                        // The node stopped waiting for the handover (it is being dropped),
                        // so there is no flush left to hand the partials to.
                        break;
                    }
                }
                Msg::Stop => break,
            }
        }
    }
}
