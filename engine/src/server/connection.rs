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
    /// Sent once `generation` has committed.
    Ack { batch_id: u64, events: u32, generation: u64 },
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
                Ok(())
            } else {
                read_loop(&stream, &tx, &shared, &clock)
            };
            shared.watermarks.close(&clock);
            if let Err(e) = outcome {
                (shared.report)(Notice::Connection { peer, message: e.to_string() });
            }
            shared.sockets.lock().expect("sockets").retain(|(i, _)| *i != id);
            shared.connections.fetch_sub(1, Ordering::SeqCst);
            // Dropping `tx` lets the writer finish once its acks are out.
        })
        .map_err(|e| Error::io("cannot start a connection thread", e))?;
    Ok(Handles { reader, writer })
}

/// Reads frames until the client closes, the framing breaks, or the node stops. An error
/// is what ended the connection (the client already has an ERROR frame saying so).
fn read_loop(stream: &TcpStream, out: &Sender<Out>, shared: &Shared, clock: &Arc<ConnClock>) -> Result<()> {
    let max_frame = shared.config.settings.max_frame_bytes;
    let mut input = BufReader::with_capacity(1 << 16, stream);
    let mut buf = Vec::new();
    let mut reader = Reader { shared, out, router: shared.routers.router(), clock };
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
    // Everything routed was handed to the workers batch by batch; this only makes sure.
    reader.router.send_all()
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

    /// The first frame: HELLO with this node's protocol version and token. Anything else
    /// ends the connection.
    fn hello(&self, kind: u8, buf: &[u8]) -> Result<()> {
        let mut b = Body::new(buf);
        let hello =
            (kind == protocol::HELLO).then(|| Some((b.u16()?, b.u16().and_then(|n| b.str(n as usize))?))).flatten();
        let (message, log) = match hello {
            Some((protocol::VERSION, token))
                if self.shared.config.settings.token.as_deref().is_none_or(|t| t == token) =>
            {
                self.send(Out::Frame(protocol::ready()));
                return Ok(());
            }
            Some((protocol::VERSION, _)) => {
                ("wrong token (tally.token of the node)".to_string(), "a client gave a wrong token".to_string())
            }
            Some((v, _)) => (
                format!("protocol version {v}; this node speaks {}", protocol::VERSION),
                format!("a client spoke protocol version {v}"),
            ),
            None => (
                "the first frame must be HELLO (kind 0x01: version, token)".to_string(),
                "a client did not start with HELLO".to_string(),
            ),
        };
        self.refuse(0, Code::Unauthorized, &message);
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
        self.clock.begin(crate::time::clock::now_ms());
        let routed = self.router.push_batch(stream, bytes, &view).and_then(|n| self.router.send_all().map(|_| n));
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
                self.send(Out::Ack { batch_id, events: events as u32, generation });
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
    let mut waiting: VecDeque<(u64, u32, u64)> = VecDeque::new();
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
            Some(Out::Ack { batch_id, events, generation }) => waiting.push_back((batch_id, events, generation)),
            None => {}
        }
        // Everything else already queued, without waiting.
        while let Ok(item) = rx.try_recv() {
            match item {
                Out::Frame(f) => frames.push(f),
                Out::Ack { batch_id, events, generation } => waiting.push_back((batch_id, events, generation)),
            }
        }
        let (committed, given_up) = {
            let c = shared.commit.lock().expect("commit lock");
            (c.generation, c.given_up)
        };
        let before = waiting.len();
        while let Some(&(batch_id, events, generation)) = waiting.front() {
            if generation <= committed {
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
