//! What a worker thread is sent over its bounded channel: batches of events to aggregate,
//! the flush handshake, and the stop.

use crate::aggregate::accumulator::State;
use crossbeam_channel::Sender;

/// A batch of encoded events of one stream, for one worker.
#[derive(Debug)]
pub struct Batch {
    pub stream: usize,
    /// When the node received the batch's first event (for arrival-time aggregations).
    pub arrival_ms: i64,
    /// Arrival sequence number of the first event; the others follow one by one.
    pub first_seq: u64,
    pub events: u32,
    pub data: Vec<u8>,
}

/// What workers are sent.
pub enum Msg {
    Batch(Batch),
    /// Hand over the partials gathered so far (swapping in the given empty states) and
    /// reply on the channel.
    Flush(Vec<State>, Sender<Handover>),
    Stop,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Batch(b) => write!(f, "Batch({} events)", b.events),
            Msg::Flush(..) => f.write_str("Flush"),
            Msg::Stop => f.write_str("Stop"),
        }
    }
}

/// What a worker hands over at a flush.
#[derive(Debug)]
pub struct Handover {
    pub worker: usize,
    /// Per aggregation, the partials gathered since the last flush.
    pub states: Vec<State>,
    /// Batches the worker could not decode since the last flush, if any.
    pub unreadable: Option<Unreadable>,
}

/// Batches a worker could not decode. Every batch is checked where it enters the node, so
/// this is a bug; the node must then not acknowledge anything more, since those events
/// were not counted (see `Node::flush`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub batches: u64,
    pub events: u64,
    /// What was wrong with the first one.
    pub first: String,
}
