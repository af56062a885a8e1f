//! A small blocking client of the binary ingest protocol (what `tally-loadgen` and the
//! tests use). Batches are pipelined: [`Client::send`] writes a frame and returns its id at
//! once; [`Client::recv`] reads the next reply (READY, ACK or ERROR), in the order the node
//! sends them.

use super::protocol::{self, Reply};
use crate::error::{Error, Result};
use crate::ingest::wire::BatchBuilder;
use std::io::{BufReader, BufWriter, Write};
use std::net::{TcpStream, ToSocketAddrs};

pub struct Client {
    out: BufWriter<TcpStream>,
    input: BufReader<TcpStream>,
    next_id: u64,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("next_id", &self.next_id).finish()
    }
}

/// Replies can be large only by their message; this bounds a confused server.
const MAX_REPLY: usize = 1 << 20;

impl Client {
    /// Connects and says HELLO (with the node's `tally.token`, if it has one).
    pub fn connect(addr: impl ToSocketAddrs, token: Option<&str>) -> Result<Client> {
        Client::greet(addr, &protocol::hello(token.unwrap_or("")))
    }

    /// Connects with protocol version 2 for `producer` (docs/delivery.md): batches are then
    /// numbered by the caller ([`Client::send_numbered`]), and a batch committed before is
    /// answered [`Reply::Duplicate`]. A node that another live node's hold on the producer
    /// keeps from taking it refuses with a retryable error (code 11): try again shortly.
    pub fn connect_producer(addr: impl ToSocketAddrs, token: Option<&str>, producer: &str) -> Result<Client> {
        Client::greet(addr, &protocol::hello_producer(token.unwrap_or(""), producer))
    }

    fn greet(addr: impl ToSocketAddrs, hello: &[u8]) -> Result<Client> {
        let stream = TcpStream::connect(addr).map_err(|e| Error::io("cannot connect to the node", e))?;
        stream.set_nodelay(true).map_err(|e| Error::io("cannot set up the connection", e))?;
        let read = stream.try_clone().map_err(|e| Error::io("cannot set up the connection", e))?;
        let mut c = Client {
            out: BufWriter::with_capacity(1 << 16, stream),
            input: BufReader::with_capacity(1 << 16, read),
            next_id: 1,
            buf: Vec::new(),
        };
        c.out.write_all(hello).map_err(|e| Error::io("cannot say HELLO", e))?;
        c.flush()?;
        match c.recv()? {
            Reply::Ready { .. } => Ok(c),
            Reply::Error { code, message, .. } if code == protocol::Code::ProducerHeld as u16 => {
                Err(Error::ProducerHeld(message))
            }
            Reply::Error { message, retryable, .. } => Err(Error::Refused { message, retryable }),
            other => Err(Error::Unsupported(format!("the node answered HELLO with {other:?}"))),
        }
    }

    /// Queues a batch (`batch`: the wire.rs encoding for the stream's attributes) and returns
    /// its id. Call [`Client::flush`] to push queued frames out.
    pub fn send(&mut self, stream: &str, batch: &[u8]) -> Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        self.out.write_all(&protocol::batch(id, stream, batch)).map_err(|e| Error::io("cannot send a batch", e))?;
        Ok(id)
    }

    /// Queues a batch under the caller's number: for version 2, the producer's sequence
    /// number (strictly increasing; a resent batch keeps its number).
    pub fn send_numbered(&mut self, seq: u64, stream: &str, batch: &[u8]) -> Result<()> {
        self.out.write_all(&protocol::batch(seq, stream, batch)).map_err(|e| Error::io("cannot send a batch", e))
    }

    /// Queues what a builder holds (leaving it empty).
    pub fn send_builder(&mut self, stream: &str, builder: &mut BatchBuilder) -> Result<u64> {
        let bytes = builder.finish();
        self.send(stream, &bytes)
    }

    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| Error::io("cannot send to the node", e))
    }

    /// Splits the connection into a sending and a receiving half, for a client that reads
    /// replies on one thread while it sends on another (so that it sees each ACK when it
    /// arrives). Queued frames are flushed first.
    pub fn into_split(mut self) -> Result<(Sender, Receiver)> {
        self.flush()?;
        let stream = self.out.get_ref().try_clone().map_err(|e| Error::io("cannot split the connection", e))?;
        Ok((Sender { out: self.out, next_id: self.next_id, stream }, Receiver { input: self.input, buf: self.buf }))
    }

    /// How long [`Client::recv`] waits (`None`: for ever). A timed-out `recv` is an error;
    /// a frame cut by the timeout would be lost, so use it only between whole replies.
    pub fn set_read_timeout(&mut self, t: Option<std::time::Duration>) -> Result<()> {
        self.input.get_ref().set_read_timeout(t).map_err(|e| Error::io("cannot set a read timeout", e))
    }

    /// The next reply of the node.
    pub fn recv(&mut self) -> Result<Reply> {
        read_reply(&mut self.input, &mut self.buf)
    }
}

/// The sending half of a [`Client`].
pub struct Sender {
    out: BufWriter<TcpStream>,
    next_id: u64,
    stream: TcpStream,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").field("next_id", &self.next_id).finish()
    }
}

impl Sender {
    /// As [`Client::send`].
    pub fn send(&mut self, stream: &str, batch: &[u8]) -> Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        self.out.write_all(&protocol::batch(id, stream, batch)).map_err(|e| Error::io("cannot send a batch", e))?;
        Ok(id)
    }

    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| Error::io("cannot send to the node", e))
    }

    /// Ends the receiving half's wait: its `recv` sees the end of the stream. (A socket the
    /// node already closed has nothing left to shut.)
    pub fn stop_receiving(&self) {
        self.stream.shutdown(std::net::Shutdown::Read).ok();
    }
}

/// The receiving half of a [`Client`].
pub struct Receiver {
    input: BufReader<TcpStream>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Receiver")
    }
}

impl Receiver {
    /// As [`Client::recv`].
    pub fn recv(&mut self) -> Result<Reply> {
        read_reply(&mut self.input, &mut self.buf)
    }
}

fn read_reply(input: &mut BufReader<TcpStream>, buf: &mut Vec<u8>) -> Result<Reply> {
    match protocol::read_frame(input, buf, MAX_REPLY) {
        Ok(Some(kind)) => protocol::parse_reply(kind, buf)
            .ok_or_else(|| Error::Unsupported(format!("the node sent an unreadable frame (kind 0x{kind:02x})"))),
        Ok(None) => {
            Err(Error::io("the node closed the connection", std::io::Error::from(std::io::ErrorKind::UnexpectedEof)))
        }
        Err(e) => Err(Error::io("cannot read from the node", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A node that answers every HELLO with `frame`, once per connection.
    fn node_answering(frame: Vec<u8>) -> std::net::SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for mut s in listener.incoming().flatten() {
                let mut buf = [0u8; 256];
                let _ = s.read(&mut buf);
                let _ = s.write_all(&frame);
            }
        });
        addr
    }

    /// A node that cannot take the producer because its store is down answers busy: the
    /// client must see that as worth retrying (on this node later, or another), not as a
    /// refusal for good (the loadgen's store-restart run on MySQL stopped at it).
    #[test]
    fn a_busy_answer_to_hello_is_retryable_and_a_refusal_is_not() {
        let busy = node_answering(protocol::error(0, protocol::Code::Busy, "cannot take producer `p`: store down"));
        let Err(e) = Client::connect_producer(busy, None, "p") else { panic!("a busy node was taken as ready") };
        assert!(e.is_retryable(), "{e}");
        assert_eq!(e.to_string(), "the node refused the connection: cannot take producer `p`: store down");
        let bad = node_answering(protocol::error(0, protocol::Code::Malformed, "bad HELLO"));
        let Err(e) = Client::connect_producer(bad, None, "p") else { panic!("a refusing node was taken as ready") };
        assert!(!e.is_retryable(), "{e}");
    }
}
