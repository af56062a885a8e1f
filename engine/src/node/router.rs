//! The router: checks each incoming event, then appends it to the batch of the worker that
//! owns its group, and sends full batches over bounded channels.
//!
//! Events are routed by the stream's route key (the group-by attributes every aggregation
//! of the stream shares), so one group's events always reach the same worker, in order.
//! A stream without such a key spreads whole batches round robin; the workers' partials
//! are merged at the flush.

use crate::aggregate::message::{Batch, Msg};
use crate::error::{BadEvent, Error, Result};
use crate::ingest::check::check_event;
use crate::ingest::key;
use crate::ingest::wire::{BatchBuilder, BatchView};
use crate::lang::plan::AppPlan;
use crate::lang::types::Value;
use crate::time::clock::now_ms;
use crossbeam_channel::Sender;
use foldhash::fast::FixedState;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug)]
struct Pending {
    builder: BatchBuilder,
    arrival_ms: i64,
}

#[derive(Debug)]
pub struct Router {
    plan: Arc<AppPlan>,
    senders: Vec<Sender<Msg>>,
    /// `[stream][worker]`
    pending: Vec<Vec<Pending>>,
    batch_events: u32,
    seq: Arc<AtomicU64>,
    round_robin: Vec<usize>,
    scratch: Vec<u8>,
    hasher: FixedState,
}

impl Router {
    pub(crate) fn new(
        plan: Arc<AppPlan>,
        senders: Vec<Sender<Msg>>,
        batch_events: usize,
        seq: Arc<AtomicU64>,
    ) -> Router {
        let workers = senders.len();
        Router {
            pending: plan
                .streams
                .iter()
                .map(|s| {
                    (0..workers).map(|_| Pending { builder: BatchBuilder::new(&s.types), arrival_ms: 0 }).collect()
                })
                .collect(),
            round_robin: vec![0; plan.streams.len()],
            plan,
            senders,
            batch_events: batch_events.max(1) as u32,
            seq,
            scratch: Vec::new(),
            hasher: FixedState::with_seed(0x7a11),
        }
    }

    pub fn plan(&self) -> &Arc<AppPlan> {
        &self.plan
    }

    /// Checks an event (values already of the attribute types, in attribute order) and
    /// routes it. An event with a bad time stamp is refused with a message that quotes it.
    pub fn push(&mut self, stream: usize, values: &[Value]) -> Result<()> {
        let s = &self.plan.streams[stream];
        // The encoding trusts these; a caller of the library may not have converted.
        if values.len() != s.attributes.len() {
            return Err(BadEvent::new(format!(
                "stream `{}` has {} attributes, the event has {} values",
                s.name,
                s.attributes.len(),
                values.len()
            ))
            .into());
        }
        if let Some((a, v)) = s.attributes.iter().zip(values).find(|(a, v)| v.attr_type().is_some_and(|t| t != a.ty)) {
            return Err(BadEvent::new(format!("attribute `{}` is {} and cannot take {v:?}", a.name, a.ty)).into());
        }
        check_event(&self.plan, stream, values)?;
        if s.aggregations.is_empty() {
            return Ok(()); // accepted and dropped, as the app check warned
        }
        let round_robin = s.route_key.is_empty() || self.senders.len() == 1;
        let worker = if round_robin {
            self.round_robin[stream]
        } else {
            key::encode_values_at(&mut self.scratch, values, &s.route_key);
            self.worker_of_key()
        };
        let sent = self.append(stream, worker, now_ms(), |b| b.push_values(values))?;
        if sent && round_robin {
            self.round_robin[stream] = (self.round_robin[stream] + 1) % self.senders.len();
        }
        Ok(())
    }

    /// Routes a whole batch of `stream` that arrived encoded (a binary frame), already
    /// checked by [`BatchView::parse`]. All or nothing: every event's time stamp is checked
    /// first, and a bad one refuses the batch, naming the event. Returns the events taken.
    ///
    /// Speed: no allocation or formatting per event. With one worker, or a stream without a
    /// route key, the batch goes to one worker as it is (one copy of its bytes); otherwise
    /// each event is appended to its worker's batch.
    pub fn push_batch(&mut self, stream: usize, bytes: &[u8], view: &BatchView<'_>) -> Result<usize> {
        let events = view.len();
        for i in 0..events {
            check_event(&self.plan, stream, &view.event(i)).map_err(|e| e.at(i))?;
        }
        let s = &self.plan.streams[stream];
        if s.aggregations.is_empty() || events == 0 {
            return Ok(events);
        }
        let workers = self.senders.len();
        if s.route_key.is_empty() || workers == 1 {
            // Whole: keep the order of what this router already holds for that worker.
            let worker = self.round_robin[stream];
            self.round_robin[stream] = (worker + 1) % workers;
            self.send(stream, worker)?;
            let first_seq = self.seq.fetch_add(events as u64, Ordering::Relaxed);
            let batch = Batch { stream, arrival_ms: now_ms(), first_seq, events: events as u32, data: bytes.to_vec() };
            self.senders[worker].send(Msg::Batch(batch)).map_err(|_| Error::Closed)?;
            return Ok(events);
        }
        let now = now_ms();
        for i in 0..events {
            let event = view.event(i);
            key::encode(&mut self.scratch, &event, &self.plan.streams[stream].route_key);
            let worker = self.worker_of_key();
            self.append(stream, worker, now, |b| b.push_event(&event))?;
        }
        Ok(events)
    }

    /// The worker that owns the route key encoded in `scratch`.
    #[inline]
    fn worker_of_key(&self) -> usize {
        (self.hasher.hash_one(&self.scratch[..]) % self.senders.len() as u64) as usize
    }

    /// Appends one event to `worker`'s batch of `stream` (`push` writes it), and sends the
    /// batch when it is full. True when it was sent. Generic over `push` so that the call
    /// inlines: this runs once per event.
    #[inline]
    fn append(&mut self, stream: usize, worker: usize, now: i64, push: impl FnOnce(&mut BatchBuilder)) -> Result<bool> {
        let p = &mut self.pending[stream][worker];
        if p.builder.is_empty() {
            p.arrival_ms = now;
        }
        push(&mut p.builder);
        if p.builder.len() as u32 >= self.batch_events {
            self.send(stream, worker)?;
            return Ok(true);
        }
        Ok(false)
    }

    fn send(&mut self, stream: usize, worker: usize) -> Result<()> {
        let p = &mut self.pending[stream][worker];
        if p.builder.is_empty() {
            return Ok(());
        }
        let events = p.builder.len() as u32;
        let first_seq = self.seq.fetch_add(events as u64, Ordering::Relaxed);
        let batch = Batch { stream, arrival_ms: p.arrival_ms, first_seq, events, data: p.builder.finish() };
        self.senders[worker].send(Msg::Batch(batch)).map_err(|_| Error::Closed)
    }

    /// Sends every partly filled batch (before a flush, so the flush sees every event).
    pub fn send_all(&mut self) -> Result<()> {
        for stream in 0..self.pending.len() {
            for worker in 0..self.senders.len() {
                self.send(stream, worker)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeConfig;
    use crate::lang::plan::check;

    #[test]
    fn events_of_the_wrong_shape_are_refused_not_encoded() {
        let plan = Arc::new(
            check(
                "define stream S (a int, ts long); define aggregation A from S select sum(a) as t aggregate by ts every sec;",
                "a",
                &NodeConfig::default(),
            )
            .unwrap(),
        );
        let (tx, rx) = crossbeam_channel::bounded(4);
        let mut r = Router::new(plan, vec![tx], 1, Arc::new(AtomicU64::new(0)));
        let e = r.push(0, &[Value::Int(1)]).unwrap_err().to_string();
        assert!(e.contains("has 2 attributes, the event has 1"), "{e}");
        let e = r.push(0, &[Value::Long(1), Value::Long(5)]).unwrap_err().to_string();
        assert!(e.contains("attribute `a` is int"), "{e}");
        let e = r.push(0, &[Value::Int(1), Value::Null]).unwrap_err().to_string();
        assert!(e.contains("the time stamp `ts` is null"), "{e}");
        assert!(rx.try_recv().is_err(), "nothing was sent");
        r.push(0, &[Value::Null, Value::Long(5)]).unwrap();
        assert!(matches!(rx.try_recv(), Ok(Msg::Batch(b)) if b.events == 1 && b.first_seq == 0));
    }
}
