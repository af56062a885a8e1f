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
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How soon a failed beat is tried again, in milliseconds.
const RETRY_MS: u64 = 1_000;

/// The `tally-heartbeat` thread, and what its beats have met.
#[derive(Debug)]
pub struct Heartbeat {
    thread: Background,
    trouble: Arc<Mutex<Option<Trouble>>>,
}

/// Beats failing since `since_ms`, the last for `error`.
#[derive(Debug, Clone)]
pub struct Trouble {
    pub since_ms: i64,
    pub error: String,
}

impl Heartbeat {
    /// Starts beating for `claims` (one per store). A failed beat is tried again soon (a
    /// store that is down, or a connection that broke); [`Heartbeat::trouble`] says for
    /// how long they have been failing, so that the node can say so before its lease runs
    /// out.
    pub fn spawn(claims: Vec<(StoreAddress, Claim)>) -> Result<Heartbeat, Error> {
        Heartbeat::spawn_every(claims, HEARTBEAT_EVERY_MS as u64, RETRY_MS)
    }

    /// [`Heartbeat::spawn`] with its periods in milliseconds: `every` while beats land,
    /// `retry` after one failed.
    fn spawn_every(claims: Vec<(StoreAddress, Claim)>, every: u64, retry: u64) -> Result<Heartbeat, Error> {
        let trouble = Arc::new(Mutex::new(None::<Trouble>));
        let seen = trouble.clone();
        let thread = Background::spawn("tally-heartbeat", move |stop| {
            let mut stores: Vec<Option<Box<dyn Store>>> = claims.iter().map(|_| None).collect();
            let mut failed = false;
            // After a failed beat, the next comes sooner: a store that restarts is often up
            // again within a second, and a beat missed for the lease costs the node its
            // shard and producers.
            while !stop.wait(Duration::from_millis(if failed { retry } else { every })) {
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
                        let mut t = seen.lock().unwrap_or_else(|p| p.into_inner());
                        let since_ms = t.as_ref().map_or_else(crate::time::clock::now_ms, |t| t.since_ms);
                        *t = Some(Trouble { since_ms, error: e.to_string() });
                    }
                }
                if !failed {
                    *seen.lock().unwrap_or_else(|p| p.into_inner()) = None;
                }
            }
        })?;
        Ok(Heartbeat { thread, trouble })
    }

    /// Since when the beats have been failing, and why; `None` while they land.
    pub fn trouble(&self) -> Option<Trouble> {
        self.trouble.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Stops beating and joins the thread.
    pub fn stop(self) -> Result<(), Error> {
        self.thread.stop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn wait_for(h: &Heartbeat, what: &str, done: impl Fn(Option<Trouble>) -> bool) {
        let until = Instant::now() + Duration::from_secs(10);
        while !done(h.trouble()) {
            assert!(Instant::now() < until, "{what}: {:?}", h.trouble());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Failing beats are remembered from the first (with the last error) until one lands.
    #[test]
    fn failing_beats_are_told_from_the_first_until_one_lands() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("later").join("s.db");
        let address = StoreAddress::parse(&format!("sqlite:{}", path.display()), None, None).unwrap();
        let claim = Claim::new(Some("beat-node"), None);
        let h = Heartbeat::spawn_every(vec![(address.clone(), claim.clone())], 20, 20).unwrap();
        wait_for(&h, "the store's directory is missing", |t| t.is_some());
        let first = h.trouble().unwrap();
        assert!(first.error.contains("sqlite"), "{}", first.error);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(h.trouble().unwrap().since_ms, first.since_ms, "failing since the first failure");
        std::fs::create_dir(dir.path().join("later")).unwrap();
        store::open(&address).unwrap().register(&claim).unwrap();
        wait_for(&h, "the store is there and the node registered", |t| t.is_none());
        h.stop().unwrap();
    }
}
