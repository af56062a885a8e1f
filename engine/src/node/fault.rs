//! Fault points for deterministic race tests, compiled only into the library's own tests:
//! a test holds a node (by node id) before or after its store commits a flush, does what
//! the race needs meanwhile (a client giving up and resending elsewhere, the node being
//! presumed dead), and lets it go on.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Where a flush's write, or a producer's batch, can be held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Point {
    /// The rows are aggregated and the flush prepared; the transaction has not started.
    BeforeCommit,
    /// In the flush's transaction (PostgreSQL and MySQL), its rows written, just before
    /// the flush's number is recorded and the transaction committed.
    InTransaction,
    /// The transaction committed; nothing is acknowledged yet.
    AfterCommit,
    /// A producer's batch on a binary connection, its number checked (new), about to be
    /// routed (server::connection).
    Routing,
}

/// A held point: writes that reach it wait until [`Gate::open`].
#[derive(Debug, Default)]
pub(crate) struct Gate {
    /// (open, writes that reached it)
    state: Mutex<(bool, usize)>,
    changed: Condvar,
}

impl Gate {
    /// Waits until `n` writes reached the point; false after `timeout`.
    pub(crate) fn reached(&self, n: usize, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        let mut s = self.state.lock().unwrap();
        while s.1 < n {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            s = self.changed.wait_timeout(s, left).unwrap().0;
        }
        true
    }

    /// Lets the held writes (and any later ones) go on.
    pub(crate) fn open(&self) {
        self.state.lock().unwrap().0 = true;
        self.changed.notify_all();
    }
}

static GATES: Mutex<Vec<(String, Point, Arc<Gate>)>> = Mutex::new(Vec::new());

/// Holds every flush write of node `node_id` at `point` from now on.
pub(crate) fn hold(node_id: &str, point: Point) -> Arc<Gate> {
    let gate = Arc::new(Gate::default());
    let mut gates = GATES.lock().unwrap();
    gates.retain(|(n, p, _)| !(n == node_id && *p == point));
    gates.push((node_id.to_string(), point, gate.clone()));
    gate
}

/// Called by a flush write at `point`: waits while a gate holds it.
pub(crate) fn pass(node_id: &str, point: Point) {
    let gate = GATES.lock().unwrap().iter().find(|(n, p, _)| n == node_id && *p == point).map(|(_, _, g)| g.clone());
    let Some(gate) = gate else { return };
    let mut s = gate.state.lock().unwrap();
    s.1 += 1;
    gate.changed.notify_all();
    while !s.0 {
        s = gate.changed.wait(s).unwrap();
    }
}
