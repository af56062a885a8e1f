//! The producers this node holds (docs/delivery.md): taken in the store on a HELLO,
//! counted per connection, and remembered with the batches taken, so that a client that
//! reconnects to the same node neither loses its hold nor has a resent batch counted twice.

use super::Shared;
use crate::error::{Error, Result};
use std::sync::{Arc, Mutex};

/// A producer held by this node.
#[derive(Debug, Default)]
pub(super) struct Held {
    /// Takes not released yet. A client that reconnects has a new connection take the
    /// producer while the old one's batches still wait for their commit; the store's hold
    /// is released when the last one lets go. The old connection's release must not drop
    /// the hold under the new one's batches, whose flush would then find the producer gone
    /// and stop the node (found by the store-restart chaos run on MySQL).
    takes: usize,
    /// The highest sequence number taken here, and the highest generation of the batches
    /// taken. The store knows only what has committed: a new connection of the same
    /// client, taking the producer while the old one's batches wait for their flush,
    /// learns a lower number, and the batches it resends would be counted a second time
    /// on this node (the store-restart chaos run with 11 s outages counted some events
    /// three times). Such a batch is answered DUPLICATE once that generation commits.
    seq: i64,
    generation: u64,
    /// Held by a connection from its check of a batch's number until the batch is noted
    /// here (or refused): two connections of one client on this node, the old one still
    /// routing a batch that the new one receives again, would otherwise both find it new
    /// and count it twice. Contended only while a client reconnects; a lock per batch.
    gate: Arc<Mutex<()>>,
}

/// What a connection gets for a producer taken: its highest committed sequence number,
/// and the gate its batches pass one at a time (see [`Held::gate`]).
pub(super) type Taken = (i64, Arc<Mutex<()>>);

impl Shared {
    /// Takes `producer` for this process.
    pub(super) fn take_producer(&self, producer: &str) -> Result<Taken> {
        let (address, claim) = self.producer_store.as_ref().map_err(|why| Error::Unsupported(why.clone()))?;
        // Counted before the store hears of it: a release racing with this take then
        // either sees it and keeps the hold, or has released before this take sets it again.
        let gate = {
            let mut takes = self.producer_takes.lock().unwrap_or_else(|p| p.into_inner());
            let held = takes.entry(Arc::from(producer)).or_default();
            held.takes += 1;
            Arc::clone(&held.gate)
        };
        let taken = (|| {
            let mut conn = self.producer_conn.lock().unwrap_or_else(|p| p.into_inner());
            if conn.is_none() {
                *conn = Some(crate::store::open(address)?);
            }
            let taken = conn.as_mut().map(|c| c.take_producer(producer, claim)).expect("opened above");
            if matches!(&taken, Err(Error::Store { .. } | Error::Io { .. })) {
                // The connection may be broken: the next HELLO opens a new one.
                *conn = None;
            }
            taken
        })();
        match taken {
            Ok(t) => Ok((t.max_seq, gate)),
            Err(e) => {
                // Not taken: let go of the count, and of the hold if an earlier take left it
                // to this one (best effort; a hold kept is released by the next take's end).
                let _ = self.release_producer(producer);
                Err(e)
            }
        }
    }

    /// Notes batch `seq` of `producer` taken here in `generation` (after it was routed,
    /// under the producer's gate). A lock per batch, not per event.
    pub(super) fn took(&self, producer: &str, seq: i64, generation: u64) {
        if let Some(h) = self.producer_takes.lock().unwrap_or_else(|p| p.into_inner()).get_mut(producer) {
            h.seq = h.seq.max(seq);
            h.generation = h.generation.max(generation);
        }
    }

    /// When batch `seq` of `producer` was taken here before (by an earlier connection of
    /// this node), the generation after whose commit it is in the store. Asked under the
    /// producer's gate.
    pub(super) fn taken_here(&self, producer: &str, seq: i64) -> Option<u64> {
        let takes = self.producer_takes.lock().unwrap_or_else(|p| p.into_inner());
        takes.get(producer).filter(|h| seq <= h.seq).map(|h| h.generation)
    }

    /// Lets go of one take of `producer`; the last one releases it in the store.
    pub(super) fn release_producer(&self, producer: &str) -> Result<()> {
        let mut takes = self.producer_takes.lock().unwrap_or_else(|p| p.into_inner());
        match takes.get_mut(producer) {
            Some(h) if h.takes > 1 => {
                h.takes -= 1;
                return Ok(());
            }
            _ => {
                takes.remove(producer);
            }
        }
        // Still under the lock: a take that comes now waits, and sets the hold again after.
        let Ok((address, claim)) = self.producer_store.as_ref() else { return Ok(()) };
        let mut conn = self.producer_conn.lock().unwrap_or_else(|p| p.into_inner());
        if conn.is_none() {
            *conn = Some(crate::store::open(address)?);
        }
        let released = conn.as_mut().map(|c| c.release_producer(producer, claim)).expect("opened above");
        if released.is_err() {
            *conn = None;
        }
        released
    }
}
