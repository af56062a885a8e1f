//! The binary ingest protocol: length-prefixed frames over TCP (docs/protocol.md is the
//! reference a client in another language can be written from).
//!
//! ```text
//! frame   := length: u32 LE (bytes after this field, 1 ..= max_frame_bytes) | kind: u8 | body
//! client  := HELLO  0x01  version: u16 | token_len: u16 | token (UTF-8)
//!          | BATCH  0x02  batch_id: u64 | stream_len: u16 | stream name (UTF-8) | batch (wire.rs)
//! server  := READY  0x81  version: u16
//!          | ACK    0x82  batch_id: u64 | events: u32
//!          | ERROR  0x83  batch_id: u64 (0: the connection) | retryable: u8 | code: u16
//!                         | message_len: u16 | message (UTF-8)
//! ```

use std::io::{self, Read, Write};

pub const VERSION: u16 = 1;
/// Version 2: HELLO names a producer, `batch_id` is its sequence number, and a batch
/// committed before is answered DUPLICATE instead of being counted again
/// (docs/delivery.md).
pub const VERSION_2: u16 = 2;
/// The longest producer id, in bytes.
pub const MAX_PRODUCER_BYTES: usize = 256;

pub const HELLO: u8 = 0x01;
pub const BATCH: u8 = 0x02;
pub const READY: u8 = 0x81;
pub const ACK: u8 = 0x82;
pub const ERROR: u8 = 0x83;
pub const DUPLICATE: u8 = 0x84;

/// Why a batch or a connection was refused (the `code` of an ERROR frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Code {
    /// The frame could not be read (unknown kind, truncated body, bad UTF-8).
    Malformed = 1,
    /// HELLO missing, wrong version, or a wrong token.
    Unauthorized = 2,
    /// The stream is not defined by the node's app.
    UnknownStream = 3,
    /// The batch does not match the stream's attribute types (wire.rs encoding).
    BadBatch = 4,
    /// An event's time stamp is null, unparsable or out of range; the whole batch is refused.
    BadEvent = 5,
    /// The frame is longer than the node's limit; the connection is closed.
    TooLarge = 6,
    /// The node holds as much unwritten data as it may (its store is slow or down): retry.
    Busy = 7,
    /// The node is stopping: send the batch to another node.
    ShuttingDown = 8,
    /// The batch was taken but its flush could not be committed before the node stopped:
    /// it was not counted; send it to another node.
    NotCommitted = 9,
    /// Too many connections.
    TooManyConnections = 10,
    /// Version 2: another live node holds the producer; retry shortly (docs/delivery.md).
    ProducerHeld = 11,
    /// Version 2: a sequence number not above the last one of this connection.
    OutOfOrder = 12,
    /// What was asked cannot be done by this node (version 2 on a node with several stores).
    NotSupported = 13,
}

impl Code {
    pub fn retryable(self) -> bool {
        matches!(
            self,
            Code::Busy | Code::ShuttingDown | Code::NotCommitted | Code::TooManyConnections | Code::ProducerHeld
        )
    }

    pub fn from_u16(c: u16) -> Option<Code> {
        Some(match c {
            1 => Code::Malformed,
            2 => Code::Unauthorized,
            3 => Code::UnknownStream,
            4 => Code::BadBatch,
            5 => Code::BadEvent,
            6 => Code::TooLarge,
            7 => Code::Busy,
            8 => Code::ShuttingDown,
            9 => Code::NotCommitted,
            10 => Code::TooManyConnections,
            11 => Code::ProducerHeld,
            12 => Code::OutOfOrder,
            13 => Code::NotSupported,
            _ => return None,
        })
    }
}

/// A frame from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Ready {
        version: u16,
    },
    Ack {
        batch_id: u64,
        events: u32,
    },
    /// Version 2: the batch was committed before (by this node or another); not counted again.
    Duplicate {
        batch_id: u64,
        events: u32,
    },
    Error {
        batch_id: u64,
        retryable: bool,
        code: u16,
        message: String,
    },
}

/// Reads one frame: `Ok(None)` at a clean end of stream, the kind and body otherwise.
/// `max` bounds the length; a longer frame is `InvalidData` with the length in the message.
pub fn read_frame(r: &mut impl Read, buf: &mut Vec<u8>, max: usize) -> io::Result<Option<u8>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len == 0 || len > max {
        return Err(io::Error::new(io::ErrorKind::InvalidData, FrameTooLarge(len)));
    }
    let mut kind = [0u8; 1];
    r.read_exact(&mut kind)?;
    // Speed: the body lands in a buffer the caller reuses, frame after frame. It grows
    // only as bytes arrive (at most 1 MiB ahead of them): a peer that claims a frame of
    // `max` bytes and sends ten must not make the node allocate `max` per connection.
    buf.clear();
    let body = len - 1;
    buf.reserve(body.min(1 << 20));
    r.take(body as u64).read_to_end(buf)?;
    if buf.len() < body {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the frame claims {len} bytes, the connection ended after {}", buf.len() + 1),
        ));
    }
    Ok(Some(kind[0]))
}

/// The error [`read_frame`] gives for a frame over the limit (or of length 0).
#[derive(Debug)]
pub struct FrameTooLarge(pub usize);

impl std::fmt::Display for FrameTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a frame of {} bytes", self.0)
    }
}

impl std::error::Error for FrameTooLarge {}

fn frame(kind: u8, body: &[&[u8]]) -> Vec<u8> {
    let len: usize = 1 + body.iter().map(|b| b.len()).sum::<usize>();
    let mut out = Vec::with_capacity(4 + len);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.push(kind);
    for b in body {
        out.extend_from_slice(b);
    }
    out
}

pub fn hello(token: &str) -> Vec<u8> {
    frame(HELLO, &[&VERSION.to_le_bytes(), &(token.len() as u16).to_le_bytes(), token.as_bytes()])
}

/// HELLO of version 2, for `producer` (docs/delivery.md).
pub fn hello_producer(token: &str, producer: &str) -> Vec<u8> {
    frame(
        HELLO,
        &[
            &VERSION_2.to_le_bytes(),
            &(token.len() as u16).to_le_bytes(),
            token.as_bytes(),
            &(producer.len() as u16).to_le_bytes(),
            producer.as_bytes(),
        ],
    )
}

/// A BATCH frame: `batch` is a batch in the wire.rs encoding for the stream's attributes.
pub fn batch(batch_id: u64, stream: &str, batch: &[u8]) -> Vec<u8> {
    frame(BATCH, &[&batch_id.to_le_bytes(), &(stream.len() as u16).to_le_bytes(), stream.as_bytes(), batch])
}

pub fn ready(version: u16) -> Vec<u8> {
    frame(READY, &[&version.to_le_bytes()])
}

pub fn duplicate(batch_id: u64, events: u32) -> Vec<u8> {
    frame(DUPLICATE, &[&batch_id.to_le_bytes(), &events.to_le_bytes()])
}

pub fn ack(batch_id: u64, events: u32) -> Vec<u8> {
    frame(ACK, &[&batch_id.to_le_bytes(), &events.to_le_bytes()])
}

pub fn error(batch_id: u64, code: Code, message: &str) -> Vec<u8> {
    // Messages are short by construction; cut at a character boundary if not.
    let mut end = message.len().min(u16::MAX as usize);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let m = &message.as_bytes()[..end];
    frame(
        ERROR,
        &[
            &batch_id.to_le_bytes(),
            &[code.retryable() as u8],
            &(code as u16).to_le_bytes(),
            &(m.len() as u16).to_le_bytes(),
            m,
        ],
    )
}

/// A little-endian reader over a frame body.
pub struct Body<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Body<'a> {
    pub fn new(buf: &'a [u8]) -> Body<'a> {
        Body { buf, at: 0 }
    }
    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let b = self.buf.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(b)
    }
    pub fn u8(&mut self) -> Option<u8> {
        self.bytes(1).map(|b| b[0])
    }
    pub fn u16(&mut self) -> Option<u16> {
        self.bytes(2).map(|b| u16::from_le_bytes(b.try_into().expect("2 bytes")))
    }
    pub fn u32(&mut self) -> Option<u32> {
        self.bytes(4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }
    pub fn u64(&mut self) -> Option<u64> {
        self.bytes(8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
    pub fn str(&mut self, n: usize) -> Option<&'a str> {
        std::str::from_utf8(self.bytes(n)?).ok()
    }
    pub fn rest(&mut self) -> &'a [u8] {
        let r = &self.buf[self.at..];
        self.at = self.buf.len();
        r
    }
}

/// Decodes a server frame.
pub fn parse_reply(kind: u8, body: &[u8]) -> Option<Reply> {
    let mut b = Body::new(body);
    Some(match kind {
        READY => Reply::Ready { version: b.u16()? },
        ACK => Reply::Ack { batch_id: b.u64()?, events: b.u32()? },
        DUPLICATE => Reply::Duplicate { batch_id: b.u64()?, events: b.u32()? },
        ERROR => {
            let batch_id = b.u64()?;
            let retryable = b.u8()? != 0;
            let code = b.u16()?;
            let n = b.u16()? as usize;
            Reply::Error { batch_id, retryable, code, message: b.str(n)?.to_string() }
        }
        _ => return None,
    })
}

/// Writes a whole frame.
pub fn send(w: &mut impl Write, frame: &[u8]) -> io::Result<()> {
    w.write_all(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let f = batch(7, "TradeStream", &[1, 2, 3]);
        let mut r = &f[..];
        let mut buf = Vec::new();
        assert_eq!(read_frame(&mut r, &mut buf, 1 << 20).unwrap(), Some(BATCH));
        let mut b = Body::new(&buf);
        assert_eq!((b.u64(), b.u16()), (Some(7), Some(11)));
        assert_eq!(b.str(11), Some("TradeStream"));
        assert_eq!(b.rest(), &[1, 2, 3]);
        assert_eq!(read_frame(&mut r, &mut buf, 1 << 20).unwrap(), None, "clean end");

        let e = error(9, Code::Busy, "the store is down");
        let mut r = &e[..];
        let kind = read_frame(&mut r, &mut buf, 1 << 20).unwrap().unwrap();
        assert_eq!(
            parse_reply(kind, &buf),
            Some(Reply::Error { batch_id: 9, retryable: true, code: 7, message: "the store is down".into() })
        );
        let a = ack(3, 4096);
        let mut r = &a[..];
        let kind = read_frame(&mut r, &mut buf, 1 << 20).unwrap().unwrap();
        assert_eq!(parse_reply(kind, &buf), Some(Reply::Ack { batch_id: 3, events: 4096 }));
    }

    /// The example in docs/protocol.md, byte for byte.
    #[test]
    fn the_documented_batch_example() {
        use crate::lang::types::{AttrType, Value};
        let mut b = crate::ingest::wire::BatchBuilder::new(&[
            AttrType::String,
            AttrType::Double,
            AttrType::Long,
            AttrType::Long,
        ]);
        b.push_values(&[
            Value::Str("wso2".into()),
            Value::Double(100.0),
            Value::Long(10),
            Value::Long(1_710_496_805_000),
        ]);
        let hex: Vec<String> = b.finish().iter().map(|x| format!("{x:02x}")).collect();
        let doc = include_str!("../../../docs/protocol.md");
        let example = doc.split("```\n01 00 00 00").nth(1).unwrap().split("```").next().unwrap();
        let mut documented = vec!["01", "00", "00", "00"];
        for line in example.lines() {
            documented.extend(line.split("   ").next().unwrap().split_whitespace());
        }
        assert_eq!(hex, documented);
    }

    #[test]
    fn oversized_and_truncated_frames_are_errors() {
        let f = batch(1, "S", &[0; 100]);
        let e = read_frame(&mut &f[..], &mut Vec::new(), 50).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("a frame of 112 bytes"), "{e}");
        let e = read_frame(&mut &f[..20], &mut Vec::new(), 1 << 20).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(Body::new(&[1, 2]).u32().is_none());
    }
}
