//! The heartbeat of a running node: every few seconds, on connections of its own, each
//! store's registry row is told this process is alive (SEMANTICS §5), whether or not the
//! node is flushing. A node that stops beating (it died, or its host lost the network) is
//! presumed dead after the lease, and another process may take its shard over; the flush
//! of a process whose registration was taken over is refused (fencing), so a shard never
//! has two writers.

use crate::error::Error;
use crate::node::background::Background;
use crate::store::registry::HEARTBEAT_EVERY_MS;
use crate::store::{self, Claim, Store, StoreAddress};
use std::time::Duration;

/// How soon a failed beat is tried again, in milliseconds.
const RETRY_MS: u64 = 1_000;

/// The `tally-heartbeat` thread.
#[derive(Debug)]
pub struct Heartbeat(Background);

impl Heartbeat {
    /// Starts beating for `claims` (one per store). `on_error` hears failures (a store that
    /// is down is tried again at the next beat).
    pub fn spawn(
        claims: Vec<(StoreAddress, Claim)>,
        mut on_error: Box<dyn FnMut(&Error) + Send>,
    ) -> Result<Heartbeat, Error> {
        Background::spawn("tally-heartbeat", move |stop| {
            let mut stores: Vec<Option<Box<dyn Store>>> = claims.iter().map(|_| None).collect();
            let mut failed = false;
            // After a failed beat, the next comes sooner: a store that restarts is often up
            // again within a second, and a beat missed for the lease costs the node its
            // shard and producers.
            while !stop.wait(Duration::from_millis(if failed { RETRY_MS } else { HEARTBEAT_EVERY_MS as u64 })) {
                failed = false;
                for ((address, claim), slot) in claims.iter().zip(&mut stores) {
                    let beat = match slot {
                        Some(s) => s.heartbeat(claim),
                        None => store::open(address).and_then(|mut s| {
                            let r = s.heartbeat(claim);
                            *slot = Some(s);
                            r
                        }),
                    };
                    if let Err(e) = beat {
                        // Reconnect at the next beat: the connection may be what failed.
                        *slot = None;
                        failed = true;
                        on_error(&e);
                    }
                }
            }
        })
        .map(Heartbeat)
    }

    /// Stops beating and joins the thread.
    pub fn stop(self) -> Result<(), Error> {
        self.0.stop()
    }
}
