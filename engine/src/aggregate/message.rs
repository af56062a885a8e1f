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
    Flush(Vec<State>, Sender<(usize, Vec<State>)>),
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
