//! Exactly once for HTTP ingest (docs/delivery.md): a request with
//! `Idempotency-Key: PRODUCER/SEQUENCE` is counted once however often it is sent, to any
//! node, the way a version 2 binary batch is.
//!
//! A node takes the producer in the store at its first request (as at a binary HELLO) and
//! keeps it while requests come; a producer idle for [`IDLE`] whose requests are all
//! committed is released by the flush thread ([`HttpProducers::reap`]), so that a client
//! that moves to another node waits at most that long (answered 503 with `Retry-After`
//! meanwhile).

use super::Shared;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a producer stays with a node after its last request.
pub(super) const IDLE: Duration = Duration::from_secs(5);

/// The request header.
pub(super) const HEADER: &str = "idempotency-key";

/// A producer this node holds for HTTP requests.
#[derive(Debug)]
pub(super) struct Held {
    pub name: Arc<str>,
    /// Highest sequence number committed when this node took it.
    pub committed: i64,
    /// The last sequence number taken here, and the generation that holds it.
    pub last: i64,
    pub generation: u64,
    used: Instant,
}

impl Held {
    /// Notes a request taken at `generation`.
    pub fn took(&mut self, seq: i64, generation: u64) {
        (self.last, self.generation, self.used) = (seq, generation, Instant::now());
    }
}

/// The producers this node holds for HTTP requests.
#[derive(Debug, Default)]
pub(super) struct HttpProducers {
    held: Mutex<HashMap<String, Arc<Mutex<Held>>>>,
}

/// Reads `PRODUCER/SEQUENCE`: `Ok(None)` without the header, an error that says what is
/// wrong with a bad one.
pub(super) fn parse(value: Option<&[u8]>) -> std::result::Result<Option<(String, i64)>, String> {
    let Some(v) = value else { return Ok(None) };
    let bad = || {
        format!(
            "Idempotency-Key `{}` is not PRODUCER/SEQUENCE (a producer id of 1 to {} bytes, then a sequence number \
             from 1 that increases with every request of the producer)",
            String::from_utf8_lossy(v),
            super::protocol::MAX_PRODUCER_BYTES
        )
    };
    let text = std::str::from_utf8(v).map_err(|_| bad())?;
    let (p, s) = text.trim().rsplit_once('/').ok_or_else(bad)?;
    let seq: i64 = s.parse().map_err(|_| bad())?;
    if p.is_empty() || p.len() > super::protocol::MAX_PRODUCER_BYTES || seq < 1 || seq == i64::MAX {
        return Err(bad());
    }
    Ok(Some((p.to_string(), seq)))
}

impl HttpProducers {
    /// The producer, taken in the store first when this node does not hold it (blocks).
    pub fn entry(&self, shared: &Shared, producer: &str) -> Result<Arc<Mutex<Held>>> {
        if let Some(h) = self.held.lock().unwrap_or_else(|p| p.into_inner()).get(producer) {
            return Ok(h.clone());
        }
        // Its requests pass one at a time under the entry's own lock (server::http::ingest).
        let (committed, _gate) = shared.take_producer(producer)?;
        let held = Arc::new(Mutex::new(Held {
            name: Arc::from(producer),
            committed,
            last: committed,
            generation: 0,
            used: Instant::now(),
        }));
        let mut map = self.held.lock().unwrap_or_else(|p| p.into_inner());
        // Two first requests at once: the first one in keeps its entry.
        Ok(map.entry(producer.to_string()).or_insert(held).clone())
    }

    /// Releases the producers idle for [`IDLE`] (all, with `everything`) whose requests
    /// have all committed by `committed`. Runs on the flush thread.
    pub fn reap(&self, shared: &Shared, committed: u64, everything: bool) {
        let idle: Vec<String> = {
            let mut map = self.held.lock().unwrap_or_else(|p| p.into_inner());
            let names: Vec<String> = map
                .iter()
                // Only entries no request holds: a request gets its entry under the map's
                // lock, so none can start using one removed here.
                .filter(|(_, h)| Arc::strong_count(h) == 1)
                .filter(|(_, h)| {
                    let h = h.lock().unwrap_or_else(|p| p.into_inner());
                    h.generation <= committed && (everything || h.used.elapsed() >= IDLE)
                })
                .map(|(n, _)| n.clone())
                .collect();
            names.iter().for_each(|n| drop(map.remove(n)));
            names
        };
        for name in idle {
            if let Err(e) = shared.release_producer(&name) {
                (shared.report)(super::Notice::Producer(format!(
                    "cannot release producer `{name}` ({e}); another node takes it once this one is stopped or its \
                     lease ran out"
                )));
            }
        }
    }
}

/// What a request of a held producer is: counted before, or to take.
pub(super) enum Admit {
    /// Committed before this node took the producer: answer at once.
    Committed,
    /// Taken by this node before (a retry of a request whose answer was lost): answer once
    /// `generation` has committed.
    Taken { generation: u64 },
    /// New: route it.
    New,
}

pub(super) fn admit(h: &Held, seq: i64) -> Admit {
    if seq <= h.committed {
        Admit::Committed
    } else if seq <= h.last {
        Admit::Taken { generation: h.generation }
    } else {
        Admit::New
    }
}

/// The answer's error for a producer another node holds.
pub(super) fn held_elsewhere(e: &Error) -> bool {
    matches!(e, Error::ProducerHeld(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_a_producer_and_a_positive_sequence_number() {
        assert_eq!(parse(None), Ok(None));
        assert_eq!(parse(Some(b"client-7/42")), Ok(Some(("client-7".into(), 42))));
        assert_eq!(parse(Some(b"a/b/3")), Ok(Some(("a/b".into(), 3))), "the last slash splits");
        for bad in [&b"client-7"[..], b"/4", b"p/0", b"p/-1", b"p/x", b"p/9223372036854775807", b"\xff/1"] {
            let e = parse(Some(bad)).unwrap_err();
            assert!(e.contains("is not PRODUCER/SEQUENCE"), "{e}");
        }
    }

    #[test]
    fn a_request_is_new_taken_or_committed_by_its_number() {
        let mut h = Held { name: Arc::from("p"), committed: 5, last: 5, generation: 0, used: Instant::now() };
        assert!(matches!(admit(&h, 5), Admit::Committed));
        assert!(matches!(admit(&h, 6), Admit::New));
        h.took(6, 9);
        assert!(matches!(admit(&h, 6), Admit::Taken { generation: 9 }));
        assert!(matches!(admit(&h, 7), Admit::New));
    }
}
