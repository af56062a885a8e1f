//! The roll-up marks a node keeps for the shards it writes (docs/rollup.md).
//!
//! For each partitioned aggregation, duration `k` of this node's shard holds exactly the
//! events before `at[k]`, the finest duration included; the events at or after the finest
//! mark `at[0]` are in the journal ([`crate::store::journal`]). A flush writes an event into
//! duration `k` only when it is older than `at[k]`, and appends the newer finest partials to
//! the journal. Newer events reach duration `k` when its mark moves: the flush that moves it
//! from `a` to `b` also writes the rows of the level below in `[a, b)` (for the finest
//! duration, the journal's, which the node holds in memory; for a coarser one, the finer
//! duration's, read back from the store) and the pending partials there, rolled up. One
//! flush can move every mark, finest first. Rows per flush then follow what closed, not
//! what moved: each row is written about once, when its bucket has closed.
//!
//! The marks are the node's own: a shard has one live writer (the registry), so the marks
//! in memory are the stored ones once a flush is confirmed. Unpartitioned aggregations may
//! have several writers of the same rows and keep every mark at `i64::MAX` (every flush
//! writes every duration, as before; no journal).

use crate::error::Result;
use crate::lang::plan::AggPlan;
use crate::store::{Mark, Store};

/// The marks of one aggregation of this node.
#[derive(Debug, Clone)]
pub(crate) struct Marks {
    /// This node's shard, when the aggregation is partitioned (then marks move).
    pub shard: Option<String>,
    /// Per duration of the aggregation (in its order): events before it are in it.
    pub at: Vec<i64>,
    /// The newest finest bucket start taken (event time), `i64::MIN` before any.
    pub newest: i64,
    /// Event time the node's active clients have all reached (`i64::MAX`: no such hold);
    /// see `server::watermark`. The finest mark waits for it, at most [`MAX_HOLD_MS`]
    /// behind `newest`.
    pub floor: i64,
    /// The marks are not in the store yet (a shard seen for the first time, or a duration
    /// new to it): the next flush writes them all.
    pub unsaved: bool,
}

/// At most this much event time (ms) behind the newest event does a slow client hold the
/// roll-up back (`Marks::floor`), so that a client replaying old history slowly cannot
/// stall it, and grow the node's open seconds, for everyone: its events past the bound are
/// merged into stored rows as late events are. An hour: two binary clients with 256 batches
/// of 4,096 sparse events in flight each (1 ms apart) drift up to ~35 minutes of event time
/// apart, and a 10-minute bound still left 140 K–440 K merged rows in some runs. The cost
/// is memory: the node keeps the open seconds of the hold (keys active per second times its
/// length, for the slowest client's lag only).
pub const MAX_HOLD_MS: i64 = 60 * 60 * 1000;

/// A move of one duration's mark: roll `[from, to)` of the duration below into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Advance {
    pub level: usize,
    pub from: i64,
    pub to: i64,
}

impl Marks {
    /// Marks that never move: every flush writes every duration.
    pub fn fixed(agg: &AggPlan) -> Marks {
        Marks {
            shard: None,
            at: vec![i64::MAX; agg.durations.len()],
            newest: i64::MIN,
            floor: i64::MAX,
            unsaved: false,
        }
    }

    /// The marks of `shard` in `store`. A shard without marks (new, or written before marks
    /// existed, when every flush wrote every duration): every duration holds every event
    /// stored, so each mark starts at the end of the newest bucket stored in any duration,
    /// rounded up to a bucket boundary of its duration; with nothing stored, at the start
    /// of time. A coarse duration new to a shard that has marks holds nothing: its mark is
    /// the start of time. A shard with marks but none for the finest duration (written
    /// before the journal existed, when the finest duration held every event): at the end
    /// of its newest finest bucket. `newest[d]` is the newest bucket of `shard` stored in
    /// duration `d` (read once by the caller, which needs it too).
    pub fn load(store: &mut dyn Store, agg: &AggPlan, newest: &[Option<i64>], shard: &str) -> Result<Marks> {
        let stored: Vec<Mark> = store.marks(&agg.name)?.into_iter().filter(|m| m.shard == shard).collect();
        let mut at = vec![i64::MIN; agg.durations.len()];
        let unsaved;
        if stored.is_empty() {
            let mut end = i64::MIN;
            for (d, b) in agg.durations.iter().zip(newest) {
                if let Some(b) = b {
                    end = end.max(agg.zone.bucket_range(*d, *b).1);
                }
            }
            if end != i64::MIN {
                for (k, d) in agg.durations.iter().enumerate() {
                    at[k] = agg.zone.bucket_ceil(*d, end);
                }
            }
            unsaved = true;
        } else {
            let mut missing = false;
            for (k, d) in agg.durations.iter().enumerate() {
                match stored.iter().find(|m| m.duration == *d) {
                    Some(m) => at[k] = m.at,
                    None if k == 0 => {
                        missing = true;
                        if let Some(b) = newest[0] {
                            at[0] = agg.zone.bucket_range(*d, b).1;
                        }
                    }
                    None => missing = true,
                }
            }
            unsaved = missing;
        }
        Ok(Marks { shard: Some(shard.to_string()), at, newest: i64::MIN, floor: i64::MAX, unsaved })
    }

    /// Whether marks move for this aggregation.
    pub fn moves(&self) -> bool {
        self.shard.is_some()
    }

    /// The move of duration `k`'s mark that is due, if any: its buckets that ended
    /// `delay_ms` before the newest event taken (and before `now_ms`) are rolled up, as far
    /// as duration `k-1` is complete (its mark, which may have moved in this same flush).
    /// The finest duration's mark moves over the journal, which holds every newer event.
    /// Marks only move forward, and each stays on a bucket boundary of the duration below.
    pub fn due(&self, agg: &AggPlan, k: usize, now_ms: i64, delay_ms: i64) -> Option<Advance> {
        if !self.moves() || self.newest == i64::MIN {
            return None;
        }
        let held = self.floor.max(self.newest.saturating_sub(MAX_HOLD_MS));
        let horizon = self.newest.min(now_ms).min(held).saturating_sub(delay_ms);
        let mut to = agg.zone.bucket_start(agg.durations[k], horizon);
        if k > 0 && self.at[k - 1] != i64::MAX {
            let below = self.at[k - 1];
            to = to.min(if below == i64::MIN { below } else { agg.zone.bucket_start(agg.durations[k - 1], below) });
        }
        (to > self.at[k]).then_some(Advance { level: k, from: self.at[k], to })
    }

    /// Every mark of this aggregation, to be stored.
    pub fn all(&self, agg: &AggPlan) -> Vec<Mark> {
        let Some(shard) = &self.shard else { return Vec::new() };
        agg.durations
            .iter()
            .zip(&self.at)
            .map(|(d, at)| Mark { aggregation: agg.name.clone(), shard: shard.clone(), duration: *d, at: *at })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeConfig;
    use crate::lang::plan::check;
    use crate::time::timestamp::parse;

    fn agg() -> AggPlan {
        let cfg = NodeConfig::parse("siddhi: {properties: {partitionById: true, shardId: s1}}", "n").unwrap();
        let app = check(
            "define stream S (symbol string, q long, ts long);
             define aggregation A from S select symbol, sum(q) as t group by symbol aggregate by ts every sec ... year;",
            "a",
            &cfg,
        )
        .unwrap();
        app.aggregations[0].clone()
    }

    #[test]
    fn a_duration_moves_when_its_bucket_has_closed_and_the_one_below_is_complete() {
        let agg = agg();
        let t = |s: &str| parse(s).unwrap();
        let mut m = Marks {
            shard: Some("s1".into()),
            at: vec![i64::MAX, 0, 0, 0, 0, 0],
            newest: i64::MIN,
            floor: i64::MAX,
            unsaved: false,
        };
        assert_eq!(m.due(&agg, 1, t("2026-03-04 10:20:30"), 5_000), None, "nothing taken yet");
        m.newest = t("2026-03-04 10:20:30");
        // Minutes up to 10:20 (10:20:25 is the horizon).
        assert_eq!(m.due(&agg, 1, i64::MAX, 5_000), Some(Advance { level: 1, from: 0, to: t("2026-03-04 10:20:00") }));
        // Hours only as far as the minutes are complete.
        assert_eq!(m.due(&agg, 2, i64::MAX, 5_000), None);
        m.at[1] = t("2026-03-04 10:20:00");
        assert_eq!(m.due(&agg, 2, i64::MAX, 5_000), Some(Advance { level: 2, from: 0, to: t("2026-03-04 10:00:00") }));
        // A minutes mark inside an hour caps the hours at the minute boundary; days wait.
        m.newest = t("2026-03-04 12:00:30");
        m.at[1] = t("2026-03-04 11:37:00");
        assert_eq!(m.due(&agg, 2, i64::MAX, 5_000).unwrap().to, t("2026-03-04 11:37:00"));
        assert_eq!(m.due(&agg, 3, i64::MAX, 5_000), None);
        // The clock bounds the horizon: events from the future wait for it.
        m.at = vec![i64::MAX, 0, 0, 0, 0, 0];
        assert_eq!(m.due(&agg, 1, t("2026-03-04 10:00:03"), 5_000).unwrap().to, t("2026-03-04 09:59:00"));
        // Fixed marks never move.
        let mut fixed = Marks::fixed(&agg);
        fixed.newest = t("2026-03-04 10:20:30");
        assert_eq!(fixed.due(&agg, 1, i64::MAX, 0), None);
    }

    #[test]
    fn a_slow_client_holds_the_finest_mark_back_within_a_bound() {
        let agg = agg();
        let t = |s: &str| parse(s).unwrap();
        let mut m = Marks {
            shard: Some("s1".into()),
            at: vec![t("2026-03-04 09:00:00"), 0, 0, 0, 0, 0],
            newest: t("2026-03-04 10:20:30"),
            floor: i64::MAX,
            unsaved: false,
        };
        assert_eq!(m.due(&agg, 0, i64::MAX, 5_000).unwrap().to, t("2026-03-04 10:20:25"));
        // A client is still at 10:20:12: seconds close 5 s before it.
        m.floor = t("2026-03-04 10:20:12");
        assert_eq!(m.due(&agg, 0, i64::MAX, 5_000).unwrap().to, t("2026-03-04 10:20:07"));
        // At most MAX_HOLD_MS (an hour) behind the newest event.
        m.floor = t("2026-03-04 09:01:00");
        assert_eq!(m.due(&agg, 0, i64::MAX, 5_000).unwrap().to, t("2026-03-04 09:20:25"));
        // A floor ahead of the newest event changes nothing.
        m.floor = t("2026-03-04 11:00:00");
        assert_eq!(m.due(&agg, 0, i64::MAX, 5_000).unwrap().to, t("2026-03-04 10:20:25"));
    }

    #[test]
    fn ceil_rounds_up_to_a_bucket_boundary() {
        let agg = agg();
        let t = |s: &str| parse(s).unwrap();
        use crate::time::granularity::Granularity::*;
        assert_eq!(agg.zone.bucket_ceil(Minutes, t("2026-03-04 10:20:00")), t("2026-03-04 10:20:00"));
        assert_eq!(agg.zone.bucket_ceil(Minutes, t("2026-03-04 10:20:01")), t("2026-03-04 10:21:00"));
        assert_eq!(agg.zone.bucket_ceil(Years, t("2026-03-04 10:20:01")), t("2027-01-01 00:00:00"));
    }

    /// Events of random keys at random times (in order, with late ones mixed in) go
    /// through a node in random flushes, with roll-ups as buckets close, and a node that
    /// crashes after a flush and starts again from what its store holds (its journal
    /// included); after every flush, a query per each duration answers exactly the events
    /// taken so far (every duration, every bucket), and the coarse tables hold no more rows
    /// than buckets closed.
    mod end_to_end {
        use crate::config::NodeConfig;
        use crate::lang::plan::check;
        use crate::lang::types::Value;
        use crate::node::Node;
        use crate::query::{compile_query, run};
        use proptest::prelude::*;
        use std::collections::BTreeMap;
        use std::sync::Arc;

        const APP: &str = "define stream S (k string, q long, ts long);
            @PartitionById @purge(enable='false')
            define aggregation P from S select k, sum(q) as t, count() as n group by k aggregate by ts every sec ... year;";

        /// (key, quantity, step in ms, late by ms, flush after, crash after the flush,
        /// flush overlapped)
        fn events() -> impl Strategy<Value = Vec<(u8, i64, i64, i64, bool, bool, bool)>> {
            prop::collection::vec(
                (
                    0u8..4,
                    1i64..100,
                    prop_oneof![Just(0i64), 1..2_000i64, 50_000..4_000_000i64],
                    prop_oneof![4 => Just(0i64), 1 => 1..10_000_000i64],
                    prop::bool::weighted(0.3),
                    prop::bool::weighted(0.3),
                    prop::bool::weighted(0.5),
                ),
                1..40,
            )
        }

        fn start(id: &str, url: &str, delay: &str) -> Node {
            let text = format!("wso2.carbon: {{id: {id}}}\ntally: {{workers: 2, rollup_delay: {delay}}}");
            let cfg = NodeConfig::parse(&text, "n").unwrap();
            Node::start(Arc::new(check(APP, "a", &cfg).unwrap()), &cfg, Some(url), &mut |_, _| {}).unwrap()
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
            #[test]
            fn every_duration_answers_every_flushed_event_once(evs in events()) {
                // Two nodes, two shards, one store: each shard's marks move on their own.
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite:{}", dir.path().join("p.db").display());
                // p2 keeps its seconds in the journal for a while (delay 3 s of event time).
                let mut nodes: Vec<Node> = vec![start("p1", &url, "1ms"), start("p2", &url, "3s")];
                let plan = nodes[0].plan().clone();
                let agg = plan.aggregations[0].clone();
                let mut expected: Vec<BTreeMap<(i64, String), (i64, i64)>> = vec![BTreeMap::new(); agg.durations.len()];
                let mut now = 1_767_225_600_000i64 - 86_400_000 * 40; // some weeks before 2026
                for (i, (k, q, step, late, flush, crash, overlap)) in evs.iter().enumerate() {
                    now += step;
                    let ts = now - late;
                    let key = format!("k{k}");
                    let mut router = nodes[(*q % 2) as usize].router();
                    router.push(0, &[Value::Str(key.clone()), Value::Long(*q), Value::Long(ts)]).unwrap();
                    router.send_all().unwrap();
                    for (d, g) in agg.durations.iter().enumerate() {
                        let e = expected[d].entry((agg.zone.bucket_start(*g, ts), key.clone())).or_default();
                        e.0 += q;
                        e.1 += 1;
                    }
                    if *flush || i + 1 == evs.len() {
                        for n in &mut nodes {
                            if *overlap {
                                // Overlapped calls (a saturated node's), until the collect
                                // of the first is durable: each writes what the one before
                                // prepared, and may roll seconds and minutes up meanwhile.
                                // Collect generations go on from the node's own (a
                                // plain flush takes the next one too).
                                let mut generation = n.generation + 1;
                                let first = generation;
                                let mut calls = 0;
                                while n.flush_at(generation, true).unwrap().durable < first {
                                    generation += 1;
                                    calls += 1;
                                    prop_assert!(calls < 10, "overlapped flushes do not catch up");
                                }
                            } else {
                                n.flush().unwrap();
                            }
                        }
                        let slot = &mut nodes[1].flusher.stores[0];
                        for (d, g) in agg.durations.iter().enumerate() {
                            let text = format!("from P within 0L, 4102444800000L per '{g}' select AGG_TIMESTAMP, k, t, n");
                            let cq = compile_query(&plan, &text).unwrap();
                            let r = run(&plan, &cq, slot.store()).unwrap();
                            let got: BTreeMap<(i64, String), (i64, i64)> = r
                                .records
                                .iter()
                                .map(|row| {
                                    let Value::Str(k) = &row[1] else { panic!("{row:?}") };
                                    ((row[0].as_i64().unwrap(), k.clone()), (row[2].as_i64().unwrap(), row[3].as_i64().unwrap()))
                                })
                                .collect();
                            prop_assert_eq!(&got, &expected[d], "per {} after event {}", g, i);
                        }
                        if *crash {
                            let n = i % 2;
                            let node = nodes.remove(n);
                            node.crash();
                            nodes.insert(n, start(["p1", "p2"][n], &url, ["1ms", "3s"][n]));
                        }
                    }
                }
                // Coarse rows are written about once each: no more rows than buckets, per
                // shard.
                let tables = nodes[0].tables()[0].to_vec();
                let slot = &mut nodes[0].flusher.stores[0];
                for (d, t) in tables.iter().enumerate().skip(1) {
                    let rows = slot.store().scan(t, i64::MIN, i64::MAX, &[]).unwrap().len();
                    prop_assert!(rows <= 2 * expected[d].len(), "{}: {} rows for {} buckets", t.name, rows, expected[d].len());
                }
                for n in nodes {
                    n.shutdown().unwrap();
                }
            }
        }
    }
}
