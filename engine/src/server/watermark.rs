//! Event-time watermarks of the binary connections: how far each client's stream has got.
//!
//! A second is rolled up into the finest table once the node's newest event time has passed
//! it by `tally.rollup_delay` (docs/rollup.md); an event for it that comes later is merged
//! into the stored row, which costs the store several times a new row. With one client in
//! order that never happens. With several pipelining clients it does: each keeps many
//! batches unanswered, the node reads them at its own pace, and one client's stream can be
//! seconds of event time ahead of another's. Measured on the sparse stream (1,000 keys,
//! 1 ms apart, two connections of 256 batches each, PostgreSQL): 0.2–13% of the seconds
//! rows were merged instead of copied, and the runs with the most merges were the slowest
//! (805 K merged rows: 309 K events/s; 16 K: 538 K).
//!
//! So, as a stream processor takes the minimum over its inputs, the node holds the finest
//! mark back to the slowest *active* connection: the newest event time each connection
//! has sent, per aggregation, and the minimum over those that have a batch unanswered or
//! sent one within the roll-up delay. An idle client holds nothing back; a connection
//! whose events are of another aggregation neither. The hold is bounded by
//! [`crate::node::marks::MAX_HOLD_MS`] of event time behind the newest event, so a client replaying old history slowly cannot
//! stall the roll-up (and grow the node's open seconds) for everyone: its events past the
//! bound are merged as late events, exactly, as before.
//!
//! HTTP clients post one event per request and are not connections here: their events
//! count only through the node's newest event time, as before. Time stamps given as text
//! are not read here either (parsing them twice per event costs more than the merges it
//! saves); nor is arrival time, which does not run ahead.
//!
//! Per batch this costs a pass over the time stamp column and three atomic updates; the
//! lock is taken when a connection opens or closes, and once per flush.

use crate::ingest::wire::BatchView;
use crate::lang::expr::{Row, Scalar};
use crate::lang::plan::{AppPlan, TimeSource};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What one connection has sent.
#[derive(Debug)]
pub(crate) struct ConnClock {
    /// Per aggregation: the newest event time sent (`i64::MIN` before any).
    newest: Box<[AtomicI64]>,
    /// Batches taken and not yet acknowledged.
    unanswered: AtomicU64,
    /// Wall clock (ms) of the last batch taken (`i64::MIN` before the first).
    last_ms: AtomicI64,
    /// Wall clock (ms) when the connection opened.
    opened_ms: i64,
}

impl ConnClock {
    /// A batch is about to be routed: the connection is active until it is answered (its
    /// reader may wait a long time for room in the workers' queues meanwhile, and must
    /// not look idle then). Each call is matched by one [`ConnClock::answered`].
    pub(crate) fn begin(&self, now_ms: i64) {
        self.unanswered.fetch_add(1, Ordering::Relaxed);
        self.last_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Records the event times of a batch of `stream` once it is routed (not before: a
    /// flush collects every routed batch, so the floor it reads never runs ahead of what
    /// it collects).
    pub(crate) fn took(&self, plan: &AppPlan, stream: usize, view: &BatchView<'_>) {
        for &a in &plan.streams[stream].aggregations {
            let TimeSource::Millis(col) = plan.aggregations[a].time else { continue };
            // The batch passed check_event: every time stamp is an in-range integer.
            let newest = (0..view.len())
                .filter_map(|i| match view.event(i).get(col) {
                    Scalar::Int(ms) => Some(ms),
                    _ => None,
                })
                .max();
            if let Some(ms) = newest {
                self.newest[a].fetch_max(ms, Ordering::Relaxed);
            }
        }
    }

    /// `n` acknowledgements (or refusals of taken batches) went out.
    pub(crate) fn answered(&self, n: u64) {
        self.unanswered.fetch_sub(n, Ordering::Relaxed);
    }
}

/// The clocks of the open connections.
#[derive(Debug, Default)]
pub(crate) struct Watermarks {
    aggregations: usize,
    open: Mutex<Vec<Arc<ConnClock>>>,
}

impl Watermarks {
    pub(crate) fn new(aggregations: usize) -> Watermarks {
        Watermarks { aggregations, open: Mutex::new(Vec::new()) }
    }

    /// A clock for a connection that opened at `now_ms`.
    pub(crate) fn open(&self, now_ms: i64) -> Arc<ConnClock> {
        let clock = Arc::new(ConnClock {
            newest: (0..self.aggregations).map(|_| AtomicI64::new(i64::MIN)).collect(),
            unanswered: AtomicU64::new(0),
            last_ms: AtomicI64::new(i64::MIN),
            opened_ms: now_ms,
        });
        self.open.lock().expect("watermarks").push(clock.clone());
        clock
    }

    /// Forgets a connection that closed.
    pub(crate) fn close(&self, clock: &Arc<ConnClock>) {
        self.open.lock().expect("watermarks").retain(|c| !Arc::ptr_eq(c, clock));
    }

    /// Per aggregation, the event time below which no active connection will send more
    /// (as far as its stream is in order): the minimum of the active connections' newest
    /// event times, `i64::MAX` where none is active. Active: a batch unanswered, or one
    /// taken within `idle_ms` of `now_ms`. A connection that opened within `idle_ms` and
    /// has sent nothing yet may send anything: it holds every aggregation back (to the
    /// bound the marks keep), so that a client that starts a moment after another one
    /// does not find its first seconds written already (measured: 38 K merged rows at the
    /// start of a sparse run without this).
    pub(crate) fn floors(&self, now_ms: i64, idle_ms: i64) -> Vec<i64> {
        let mut floors = vec![i64::MAX; self.aggregations];
        for c in self.open.lock().expect("watermarks").iter() {
            if c.last_ms.load(Ordering::Relaxed) == i64::MIN {
                if c.opened_ms.saturating_add(idle_ms) >= now_ms {
                    floors.iter_mut().for_each(|f| *f = i64::MIN);
                }
                continue;
            }
            let active = c.unanswered.load(Ordering::Relaxed) > 0
                || c.last_ms.load(Ordering::Relaxed).saturating_add(idle_ms) >= now_ms;
            if !active {
                continue;
            }
            for (f, n) in floors.iter_mut().zip(c.newest.iter()) {
                let n = n.load(Ordering::Relaxed);
                if n != i64::MIN {
                    *f = (*f).min(n);
                }
            }
        }
        floors
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeConfig;
    use crate::ingest::wire::BatchBuilder;
    use crate::lang::plan::check;
    use crate::lang::types::Value;

    fn plan() -> AppPlan {
        check(
            "define stream S (k string, ts long);
             define aggregation A from S select k, count() as n group by k aggregate by ts every sec ... min;
             define aggregation B from S select count() as n aggregate every sec;",
            "a",
            &NodeConfig::default(),
        )
        .unwrap()
    }

    fn batch(plan: &AppPlan, times: &[i64]) -> Vec<u8> {
        let mut b = BatchBuilder::new(&plan.streams[0].types);
        for t in times {
            b.push_values(&[Value::Str("x".into()), Value::Long(*t)]);
        }
        b.finish()
    }

    #[test]
    fn the_floor_is_the_slowest_active_connection_per_aggregation() {
        let plan = plan();
        let w = Watermarks::new(plan.aggregations.len());
        let (fast, slow, idle) = (w.open(0), w.open(0), w.open(0));
        let took = |c: &ConnClock, times: &[i64], now: i64| {
            let bytes = batch(&plan, times);
            let view = BatchView::parse(&bytes, &plan.streams[0].types).unwrap();
            c.begin(now);
            c.took(&plan, 0, &view);
        };
        assert_eq!(w.floors(1_000, 5_000), vec![i64::MIN, i64::MIN], "just opened: may send anything");
        assert_eq!(w.floors(6_000, 5_000), vec![i64::MAX, i64::MAX], "opened and quiet: no floor");
        took(&fast, &[9_000, 12_000, 11_000], 1_000);
        took(&slow, &[4_000, 3_000], 1_000);
        took(&idle, &[1_000], 1_000);
        idle.answered(1);
        // B counts by arrival time: never held back by a connection.
        assert_eq!(w.floors(1_000, 5_000), vec![1_000, i64::MAX]);
        // The idle one is answered and quiet for longer than the delay: it no longer counts.
        assert_eq!(w.floors(7_000, 5_000), vec![4_000, i64::MAX]);
        slow.answered(1);
        assert_eq!(w.floors(7_000, 5_000), vec![12_000, i64::MAX], "the slow one went quiet too");
        took(&slow, &[2_000], 7_000);
        assert_eq!(w.floors(7_000, 5_000), vec![4_000, i64::MAX], "its newest, not its last");
        w.close(&slow);
        assert_eq!(w.floors(7_000, 5_000), vec![12_000, i64::MAX], "a closed connection holds nothing");
        let late = w.open(7_000);
        assert_eq!(w.floors(8_000, 5_000), vec![i64::MIN, i64::MIN], "a new one holds all until it sends");
        w.close(&late);
    }
}
