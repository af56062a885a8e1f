//! One binary ingest connection: a reader thread that checks and routes batches, and a
//! writer thread that sends each acknowledgement once its generation has committed.
//!
//! A bad batch (unknown stream, an encoding that does not match the stream, a bad time stamp)
//! is refused with an ERROR frame naming what was wrong, and the connection goes on; only a
//! frame that breaks the framing (over the size limit, or a cut-off stream) ends it.
//! Nothing of a refused batch is counted.

use super::metrics::Metrics;
use super::protocol::{self, Body, Code};
use super::watermark::ConnClock;
use super::{Notice, Shared};
use crate::error::{Error, Result};
use crate::ingest::wire::BatchView;
use crate::node::router::Router;
use crossbeam_channel::{Receiver, Sender, unbounded};
use std::collections::VecDeque;
use std::io::{BufReader, BufWriter, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

pub(super) struct Handles {
    pub reader: JoinHandle<()>,
    pub writer: JoinHandle<()>,
}

/// What the writer sends, in order.
enum Out {
    /// Sent once `generation` has committed; as DUPLICATE when the batch was committed
    /// before (generation 0).
    Ack { batch_id: u64, events: u32, generation: u64, duplicate: bool },
    /// Sent at once.
    Frame(Vec<u8>),
}

pub(super) fn spawn(id: u64, stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) -> Result<Handles> {
    let io = |e| Error::io(format!("connection from {peer}"), e);
    stream.set_nonblocking(false).map_err(io)?;
    stream.set_nodelay(true).map_err(io)?;
    let (tx, rx) = unbounded::<Out>();
    let write_half = stream.try_clone().map_err(io)?;
    let too_many = shared.connections.fetch_add(1, Ordering::SeqCst) >= shared.config.settings.max_connections;
    shared.sockets.lock().expect("sockets").push((id, stream.try_clone().map_err(io)?));
    let clock = shared.watermarks.open(crate::time::clock::now_ms());
    let writer = {
        let (shared, clock) = (shared.clone(), clock.clone());
        std::thread::Builder::new()
            .name(format!("tally-ack-{id}"))
            .spawn(move || write_loop(write_half, rx, shared, &clock))
            .map_err(|e| Error::io("cannot start a connection thread", e))?
    };
    let reader = std::thread::Builder::new()
        .name(format!("tally-conn-{id}"))
        .spawn(move || {
            let outcome = if too_many {
                // The writer sends this and ends when `tx` is dropped below.
                tx.send(Out::Frame(protocol::error(
                    0,
                    Code::TooManyConnections,
                    "the node serves as many connections as tally.max_connections allows; retry later or use another node",
                )))
                .ok();
                Ok(None)
            } else {
                read_loop(&stream, &tx, &shared, &clock)
            };
            shared.watermarks.close(&clock);
            let (outcome, producer) = match outcome {
                Ok(p) => (Ok(()), p),
                Err((e, p)) => (Err(e), p),
            };
            if let Err(e) = outcome {
                (shared.report)(Notice::Connection { peer, message: e.to_string() });
            }
            shared.sockets.lock().expect("sockets").retain(|(i, _)| *i != id);
            shared.connections.fetch_sub(1, Ordering::SeqCst);
            // Dropping `tx` lets the writer finish once its acks are out.
            drop(tx);
            if let Some(p) = producer {
                release_when_answered(&shared, &p);
            }
        })
        .map_err(|e| Error::io("cannot start a connection thread", e))?;
    Ok(Handles { reader, writer })
}

/// A version 2 connection's producer (docs/delivery.md).
struct Producer {
    name: Arc<str>,
    /// Its highest sequence number committed when this connection took it: a batch at or
    /// below is a duplicate.
    committed: i64,
    /// The last sequence number this connection took (0: none yet).
    last: i64,
    /// The generation of the last batch taken: once it has committed, the producer is
    /// released.
    generation: u64,
    /// Passed by each batch from the check of its number until it is noted taken, one
    /// connection at a time (see server::producers::Held).
    gate: Arc<std::sync::Mutex<()>>,
}

/// Once every batch the connection took is committed (or the node gave up on them),
/// releases its producer, so that the next HELLO for it is granted at once on any node.
/// A node that gave up keeps it: a flush whose answer was lost may still have landed, and
/// the holder's registration decides when another node may take it.
fn release_when_answered(shared: &Shared, p: &Producer) {
    let mut c = shared.commit.lock().expect("commit lock");
    while c.generation < p.generation && !c.given_up {
        c = shared.committed.wait_timeout(c, std::time::Duration::from_millis(100)).expect("commit lock").0;
    }
    let given_up = c.given_up;
    drop(c);
    if !given_up && let Err(e) = shared.release_producer(&p.name) {
        (shared.report)(Notice::Producer(format!(
            "cannot release producer `{}` ({e}); another node takes it once this one is stopped or its lease ran out",
            p.name
        )));
    }
}

/// Reads frames until the client closes, the framing breaks, or the node stops. An error
/// is what ended the connection (the client already has an ERROR frame saying so). Either
/// way, the producer of a version 2 connection that took one.
type Ended = std::result::Result<Option<Producer>, (Error, Option<Producer>)>;

fn read_loop(stream: &TcpStream, out: &Sender<Out>, shared: &Shared, clock: &Arc<ConnClock>) -> Ended {
    let mut reader = Reader { shared, out, router: shared.routers.router(), clock, producer: None };
    let read = read_frames(stream, &mut reader);
    // Everything routed was handed to the workers batch by batch; this only makes sure.
    let sent = reader.router.send_all();
    match read.and(sent) {
        Ok(()) => Ok(reader.producer),
        Err(e) => Err((e, reader.producer)),
    }
}

fn read_frames(stream: &TcpStream, reader: &mut Reader<'_>) -> Result<()> {
    let shared = reader.shared;
    let max_frame = shared.config.settings.max_frame_bytes;
    let mut input = BufReader::with_capacity(1 << 16, stream);
    let mut buf = Vec::new();
    let mut greeted = false;
    loop {
        let kind = match protocol::read_frame(&mut input, &mut buf, max_frame) {
            Ok(Some(kind)) => kind,
            Ok(None) => break,
            Err(e) if e.get_ref().is_some_and(|i| i.is::<protocol::FrameTooLarge>()) => {
                let m =
                    format!("{e}: longer than tally.max_frame_bytes ({max_frame}) or empty; the connection is closed");
                reader.refuse(0, Code::TooLarge, &m);
                return Err(Error::Protocol(m));
            }
            // The node shut the read side to stop: the end of this connection, not a fault.
            Err(_) if shared.stopping.load(Ordering::SeqCst) => break,
            Err(e) => return Err(Error::io("reading a frame", e)),
        };
        if !greeted {
            reader.hello(kind, &buf)?;
            greeted = true;
        } else if kind != protocol::BATCH {
            reader.refuse(
                0,
                Code::Malformed,
                &format!("unknown frame kind 0x{kind:02x}; a client sends HELLO (0x01) and BATCH (0x02)"),
            );
        } else if reader.batch(&buf) == Flow::Stop {
            break;
        }
    }
    Ok(())
}

/// Whether the reader goes on after a frame.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

/// The reading side of one connection.
struct Reader<'a> {
    shared: &'a Shared,
    out: &'a Sender<Out>,
    router: Router,
    clock: &'a Arc<ConnClock>,
    producer: Option<Producer>,
}

impl Reader<'_> {
    /// Sends an ERROR frame for `batch_id` (0: the connection).
    fn refuse(&self, batch_id: u64, code: Code, message: &str) {
        Metrics::add(&self.shared.metrics.batches_refused, 1);
        self.send(Out::Frame(protocol::error(batch_id, code, message)));
    }

    /// Queues a frame for the writer. The writer ends only when the client went away, and
    /// then the next read ends this side too: nothing is lost by not waiting for it.
    fn send(&self, out: Out) {
        let wake = matches!(out, Out::Frame(_));
        self.out.send(out).ok();
        if wake {
            // A writer waiting for a commit takes the frame at once (under the lock, so the
            // wake-up cannot fall between its check and its wait).
            let _commit = self.shared.commit.lock().expect("commit lock");
            self.shared.committed.notify_all();
        }
    }

    /// The first frame: HELLO with a protocol version this node speaks and its token, and
    /// for version 2 a producer, which this process takes in the store. Anything else ends
    /// the connection.
    fn hello(&mut self, kind: u8, buf: &[u8]) -> Result<()> {
        let mut b = Body::new(buf);
        let hello =
            (kind == protocol::HELLO).then(|| Some((b.u16()?, b.u16().and_then(|n| b.str(n as usize))?))).flatten();
        let token_ok = |token: &str| self.shared.config.settings.token.as_deref().is_none_or(|t| t == token);
        let (code, message, log) = match hello {
            Some((v @ (protocol::VERSION | protocol::VERSION_2), token)) if !token_ok(token) => (
                Code::Unauthorized,
                "wrong token (tally.token of the node)".to_string(),
                format!("a client gave a wrong token (protocol version {v})"),
            ),
            Some((protocol::VERSION, _)) => {
                self.send(Out::Frame(protocol::ready(protocol::VERSION)));
                return Ok(());
            }
            Some((protocol::VERSION_2, _)) => {
                let producer = b.u16().and_then(|n| b.str(n as usize));
                match producer {
                    Some(p) if !p.is_empty() && p.len() <= protocol::MAX_PRODUCER_BYTES => {
                        match self.shared.take_producer(p) {
                            Ok((committed, gate)) => {
                                let name = Arc::from(p);
                                self.producer =
                                    Some(Producer { name, committed, last: committed, generation: 0, gate });
                                self.send(Out::Frame(protocol::ready(protocol::VERSION_2)));
                                return Ok(());
                            }
                            Err(Error::ProducerHeld(m)) => (Code::ProducerHeld, m.clone(), m),
                            Err(e @ Error::Unsupported(_)) => (Code::NotSupported, e.to_string(), e.to_string()),
                            Err(e) => (
                                Code::Busy,
                                format!(
                                    "cannot take producer `{p}` in the store ({e}); retry later or use another node"
                                ),
                                format!("cannot take producer `{p}`: {e}"),
                            ),
                        }
                    }
                    _ => (
                        Code::Malformed,
                        format!(
                            "HELLO version 2 must end with a producer id of 1 to {} bytes of UTF-8 \
                             (producer_len: u16, producer)",
                            protocol::MAX_PRODUCER_BYTES
                        ),
                        "a client sent HELLO version 2 without a usable producer id".to_string(),
                    ),
                }
            }
            Some((v, _)) => (
                Code::Unauthorized,
                format!("protocol version {v}; this node speaks {} and {}", protocol::VERSION, protocol::VERSION_2),
                format!("a client spoke protocol version {v}"),
            ),
            None => (
                Code::Unauthorized,
                "the first frame must be HELLO (kind 0x01: version, token)".to_string(),
                "a client did not start with HELLO".to_string(),
            ),
        };
        self.refuse(0, code, &message);
        Err(Error::Protocol(log))
    }

    /// A BATCH frame: checked, then routed and acknowledged once its generation commits,
    /// or refused with an ERROR frame that says why (nothing of it counted).
    fn batch(&mut self, buf: &[u8]) -> Flow {
        let shared = self.shared;
        let settings = &shared.config.settings;
        let mut b = Body::new(buf);
        let Some((batch_id, name)) = (|| Some((b.u64()?, b.u16().and_then(|n| b.str(n as usize))?)))() else {
            self.refuse(0, Code::Malformed, "a BATCH frame ends before its stream name, or the name is not UTF-8");
            return Flow::Continue;
        };
        if shared.stopping.load(Ordering::SeqCst) {
            self.refuse(batch_id, Code::ShuttingDown, "the node is stopping; send this batch to another node");
            return Flow::Continue;
        }
        let Some(stream) = shared.plan.stream(name) else {
            let known: Vec<&str> = shared.plan.streams.iter().map(|s| s.name.as_str()).collect();
            let m = format!("unknown stream `{name}`; the app defines {}", known.join(", "));
            self.refuse(batch_id, Code::UnknownStream, &m);
            return Flow::Continue;
        };
        let bytes = b.rest();
        let s = &shared.plan.streams[stream];
        let view = match BatchView::parse(bytes, &s.types) {
            Ok(v) => v,
            Err(e) => {
                let names: Vec<&str> = s.attributes.iter().map(|a| a.name.as_str()).collect();
                self.refuse(batch_id, Code::BadBatch, &format!("stream `{name}`: {}", e.describe(&names)));
                return Flow::Continue;
            }
        };
        if view.len() > settings.max_batch_events {
            let m = format!(
                "{} events in one batch; tally.max_batch_events is {}: split it",
                view.len(),
                settings.max_batch_events
            );
            self.refuse(batch_id, Code::BadBatch, &m);
            return Flow::Continue;
        }
        if shared.pending_rows.load(Ordering::Relaxed) > settings.max_pending_rows {
            self.refuse(
                batch_id,
                Code::Busy,
                "the node holds tally.max_pending_rows unwritten rows (its store is slow or down); retry later or use another node",
            );
            return Flow::Continue;
        }
        // From the number's check until the batch is noted taken: no other connection of
        // this producer on this node checks the same number meanwhile.
        let gate = self.producer.as_ref().map(|p| Arc::clone(&p.gate));
        let _passing = gate.as_ref().map(|g| g.lock().unwrap_or_else(|p| p.into_inner()));
        if let Some(p) = &self.producer {
            let seq = i64::try_from(batch_id).unwrap_or(i64::MAX);
            if seq <= p.committed {
                // Committed before, here or on another node: answered, not counted again.
                let out = Out::Ack { batch_id, events: view.len() as u32, generation: 0, duplicate: true };
                self.send(out);
                return Flow::Continue;
            }
            if seq > p.last
                && let Some(generation) = shared.taken_here(&p.name, seq)
            {
                // Taken here by an earlier connection of this client, not yet known to the
                // store: answered DUPLICATE once that batch's flush commits, not counted
                // again (see server::producers::Held).
                if let Some(p) = &mut self.producer {
                    p.last = seq;
                }
                self.send(Out::Ack { batch_id, events: view.len() as u32, generation, duplicate: true });
                return Flow::Continue;
            }
            if seq <= p.last || seq == i64::MAX {
                let m = format!(
                    "sequence number {batch_id} of producer `{}` is not above the last one taken on this connection \
                     ({}): number batches in increasing order, and send a refused batch again under a new number",
                    p.name, p.last
                );
                self.refuse(batch_id, Code::OutOfOrder, &m);
                return Flow::Continue;
            }
        }
        #[cfg(test)]
        if let (Some(_), Ok((_, claim))) = (&gate, &shared.producer_store) {
            crate::node::fault::pass(&claim.node_id, crate::node::fault::Point::Routing);
        }
        self.clock.begin(crate::time::clock::now_ms());
        let router = &mut self.router;
        let mut route = || router.push_batch(stream, bytes, &view).and_then(|n| router.send_all().map(|_| n));
        let routed = match &self.producer {
            // Noted with the collect that holds its events (node::ledger).
            Some(p) => shared.ledger.route_and_note(&p.name, batch_id as i64, route),
            None => route(),
        };
        if routed.is_err() {
            self.clock.answered(1);
        }
        match routed {
            Ok(events) => {
                Metrics::add(&shared.metrics.events_in, events as u64);
                Metrics::add(&shared.metrics.batches_in, 1);
                // After the events are in the workers' queues: see the module docs of server.
                let generation = shared.open.load(Ordering::SeqCst);
                self.clock.took(&shared.plan, stream, &view);
                if let Some(p) = &mut self.producer {
                    (p.last, p.generation) = (batch_id as i64, generation);
                    shared.took(&p.name, p.last, generation);
                }
                self.send(Out::Ack { batch_id, events: events as u32, generation, duplicate: false });
                // An acknowledgement waits: flush soon (group commit).
                shared.wake_flush();
            }
            Err(Error::BadEvent(e)) => {
                self.refuse(batch_id, Code::BadEvent, &format!("stream `{name}`, {e}; the batch was not taken"))
            }
            Err(Error::Closed) => {
                self.refuse(batch_id, Code::ShuttingDown, "the node is stopping; send this batch to another node");
                return Flow::Stop;
            }
            Err(e) => self.refuse(batch_id, Code::BadBatch, &e.to_string()),
        }
        Flow::Continue
    }
}

/// Writes error frames at once and each ack once its generation has committed (or a "not
/// committed" error if the node gave up on its last flush). Acks go out in the order their
/// batches were read; errors may overtake acks still waiting for their flush.
fn write_loop(stream: TcpStream, rx: Receiver<Out>, shared: Arc<Shared>, clock: &ConnClock) {
    let mut w = BufWriter::with_capacity(1 << 14, stream);
    let mut waiting: VecDeque<(u64, u32, u64, bool)> = VecDeque::new();
    let mut open = true;
    while open || !waiting.is_empty() {
        // Block on the queue when no ack waits. Otherwise wait for a commit: the flush
        // thread wakes every writer when one lands (and a reader does, when it queues an
        // error frame), so an ack goes out as soon as its flush has committed.
        let item = if waiting.is_empty() && open {
            rx.recv().ok().or_else(|| {
                open = false;
                None
            })
        } else {
            let front = waiting.front().map_or(0, |w| w.2);
            let c = shared.commit.lock().expect("commit lock");
            if c.generation < front && !c.given_up && rx.is_empty() {
                drop(shared.committed.wait_timeout(c, std::time::Duration::from_millis(50)).expect("commit lock"));
            }
            match rx.try_recv() {
                Ok(item) => Some(item),
                Err(crossbeam_channel::TryRecvError::Empty) => None,
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    open = false;
                    None
                }
            }
        };
        let mut frames: Vec<Vec<u8>> = Vec::new();
        match item {
            Some(Out::Frame(f)) => frames.push(f),
            Some(Out::Ack { batch_id, events, generation, duplicate }) => {
                waiting.push_back((batch_id, events, generation, duplicate))
            }
            None => {}
        }
        // Everything else already queued, without waiting.
        while let Ok(item) = rx.try_recv() {
            match item {
                Out::Frame(f) => frames.push(f),
                Out::Ack { batch_id, events, generation, duplicate } => {
                    waiting.push_back((batch_id, events, generation, duplicate))
                }
            }
        }
        let (committed, given_up) = {
            let c = shared.commit.lock().expect("commit lock");
            (c.generation, c.given_up)
        };
        let before = waiting.len();
        while let Some(&(batch_id, events, generation, duplicate)) = waiting.front() {
            if duplicate && generation <= committed {
                // Committed before (generation 0), or once the flush that holds the first
                // copy has (a batch taken here by an earlier connection).
                Metrics::add(&shared.metrics.batches_duplicate, 1);
                frames.push(protocol::duplicate(batch_id, events));
            } else if generation <= committed {
                Metrics::add(&shared.metrics.batches_acked, 1);
                frames.push(protocol::ack(batch_id, events));
            } else if given_up {
                frames.push(protocol::error(
                    batch_id,
                    Code::NotCommitted,
                    "the node stopped before its store took this batch; it was not counted: send it to another node",
                ));
            } else {
                break;
            }
            waiting.pop_front();
        }
        clock.answered((before - waiting.len()) as u64);
        if frames.is_empty() {
            continue;
        }
        if frames.iter().any(|f| w.write_all(f).is_err()) || w.flush().is_err() {
            return;
        }
    }
}
