//! Retention (SEMANTICS §7): deleting buckets older than each duration's retention period,
//! on each aggregation's `@purge` interval.
//!
//! **Better than Siddhi:** each node deletes only rows of its own shard (a partitioned
//! aggregation), so nodes never race over each other's rows, and a purge that fails (the
//! store is down, a lock timed out) is tried again on a short back-off rather than halted
//! for good. The purger has its own store connections: a long delete never holds up a flush.
//! `tally ingest` does not purge; a long-running node runs a [`Purger`], and `tally purge`
//! runs one pass (for cron, or by hand).

use crate::config::NodeConfig;
use crate::error::{Error, Result};
use crate::lang::plan::AppPlan;
use crate::node::background::Background;
use crate::store::address::by_store as store_addresses;
use crate::store::schema::TableSchema;
use crate::store::{self, Mark, Store, StoreAddress};
use crate::time::granularity::Granularity;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// One table to purge: rows whose bucket starts more than `keep_ms` ago.
#[derive(Debug, Clone)]
struct Target {
    table: TableSchema,
    keep_ms: i64,
    /// Only this shard's rows (a partitioned aggregation); all rows otherwise.
    shard: Option<String>,
    /// The next coarser duration of the aggregation: rows it has not been rolled up from
    /// yet (from its mark on, docs/rollup.md) are kept whatever their age.
    next: Option<Granularity>,
    interval: Duration,
    next_due: Instant,
}

struct PurgeStore {
    address: StoreAddress,
    /// Opened on first use and after a failure, so a store that is down at start is not an
    /// error yet.
    store: Option<Box<dyn Store>>,
    targets: Vec<Target>,
}

/// What one purge of one table did.
#[derive(Debug, Clone, PartialEq)]
pub struct Purged {
    pub table: String,
    /// Rows whose bucket started before this (epoch ms) were deleted.
    pub before_ms: i64,
    pub shard: Option<String>,
    pub rows: u64,
}

/// The purge work of one node: every table with a finite retention, grouped by store.
pub struct Retention {
    stores: Vec<PurgeStore>,
}

impl std::fmt::Debug for Retention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retention")
            .field("tables", &self.stores.iter().map(|s| s.targets.len()).sum::<usize>())
            .finish()
    }
}

impl Retention {
    /// The tables of `plan` with purging enabled and a finite retention, in the stores the
    /// node writes to (`store_override` is the `--store` option). Opens nothing yet.
    pub fn new(plan: &AppPlan, config: &NodeConfig, store_override: Option<&str>) -> Result<Retention> {
        let now = Instant::now();
        let tables = TableSchema::all(plan);
        let mut stores = Vec::new();
        for (address, aggregations) in store_addresses(plan, store_override, &config.settings.store)? {
            let mut targets = Vec::new();
            for a in aggregations {
                let agg = &plan.aggregations[a];
                if !agg.purge.enabled {
                    continue;
                }
                for (k, (d, table)) in agg.durations.iter().zip(&tables[a]).enumerate() {
                    let keep = agg.purge.retention.iter().find(|(rd, _)| rd == d).and_then(|(_, k)| *k);
                    if let Some(keep_ms) = keep {
                        targets.push(Target {
                            table: table.clone(),
                            keep_ms,
                            shard: agg.shard_id.clone(),
                            next: agg.durations.get(k + 1).copied(),
                            interval: Duration::from_millis(agg.purge.interval_ms.max(1) as u64),
                            next_due: now,
                        });
                    }
                }
            }
            if !targets.is_empty() {
                stores.push(PurgeStore { address, store: None, targets });
            }
        }
        Ok(Retention { stores })
    }

    /// Whether there is anything to purge at all.
    pub fn is_empty(&self) -> bool {
        self.stores.is_empty()
    }

    /// Purges every table now, whatever its schedule. Tries every store; returns what was
    /// purged, or the first error.
    pub fn run_all(&mut self, now_ms: i64) -> Result<Vec<Purged>> {
        self.run(now_ms, None)
    }

    /// Purges the tables whose interval has come round. A table that failed stays due.
    pub fn run_due(&mut self, now_ms: i64, now: Instant) -> Result<Vec<Purged>> {
        self.run(now_ms, Some(now))
    }

    fn run(&mut self, now_ms: i64, due_at: Option<Instant>) -> Result<Vec<Purged>> {
        let mut done = Vec::new();
        let mut first_error = None;
        for ps in &mut self.stores {
            if let Err(e) = purge_store(ps, now_ms, due_at, &mut done) {
                // Reopen next time: the connection may be what failed.
                ps.store = None;
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(done), Err)
    }

    /// When the next table falls due.
    fn next_due(&self) -> Option<Instant> {
        self.stores.iter().flat_map(|s| s.targets.iter().map(|t| t.next_due)).min()
    }
}

fn purge_store(ps: &mut PurgeStore, now_ms: i64, due_at: Option<Instant>, done: &mut Vec<Purged>) -> Result<()> {
    if due_at.is_some_and(|now| ps.targets.iter().all(|t| t.next_due > now)) {
        return Ok(());
    }
    if ps.store.is_none() {
        ps.store = Some(store::open(&ps.address)?);
    }
    let store = ps.store.as_mut().expect("opened above");
    // Each aggregation's marks, read once a pass: marks only move forward, so a read a
    // moment ago is safe to use.
    let mut marks: HashMap<String, Vec<Mark>> = HashMap::new();
    for t in &mut ps.targets {
        if due_at.is_some_and(|now| t.next_due > now) {
            continue;
        }
        let mut before_ms = now_ms.saturating_sub(t.keep_ms);
        if let (Some(shard), Some(next)) = (&t.shard, t.next) {
            if !marks.contains_key(&t.table.aggregation) {
                marks.insert(t.table.aggregation.clone(), store.marks(&t.table.aggregation)?);
            }
            let mark = marks[&t.table.aggregation].iter().find(|m| &m.shard == shard && m.duration == next);
            if let Some(m) = mark {
                before_ms = before_ms.min(m.at);
            }
        }
        let rows = store.purge(&t.table, before_ms, t.shard.as_deref())?;
        t.next_due = due_at.unwrap_or_else(Instant::now) + t.interval;
        done.push(Purged { table: t.table.name.clone(), before_ms, shard: t.shard.clone(), rows });
    }
    Ok(())
}

/// One purge pass over every table with a finite retention, for this node's shard. A store
/// that is down is waited for (`tally.store_wait`).
pub fn purge_once(
    plan: &AppPlan,
    cfg: &NodeConfig,
    store: Option<&str>,
    on_retry: &mut dyn FnMut(&Error, Duration),
) -> Result<Vec<Purged>> {
    let mut retention = Retention::new(plan, cfg, store)?;
    crate::node::backoff::retry(cfg.store_wait, on_retry, || retention.run_all(crate::time::clock::now_ms()))
}

/// What the purger thread reports.
#[derive(Debug)]
pub enum PurgeNotice {
    Purged(Vec<Purged>),
    /// A pass failed; it is tried again after `retry_in`.
    Failed {
        error: Error,
        retry_in: Duration,
    },
}

/// The purge schedule of a running node, on a thread of its own (`tally-purge`).
#[derive(Debug)]
pub struct Purger(Background);

/// After a failed pass: the first wait, and the longest.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_CAP: Duration = Duration::from_secs(60);

impl Purger {
    /// Starts purging on schedule. Failures are reported and retried with back-off (at
    /// most a minute apart), never given up.
    pub fn spawn(mut retention: Retention, mut report: Box<dyn FnMut(PurgeNotice) + Send>) -> Result<Purger> {
        Background::spawn("tally-purge", move |stop| {
            let mut retry = RETRY_FIRST;
            loop {
                let now = Instant::now();
                match retention.run_due(crate::time::clock::now_ms(), now) {
                    Ok(done) => {
                        retry = RETRY_FIRST;
                        if !done.is_empty() {
                            report(PurgeNotice::Purged(done));
                        }
                        let next = retention.next_due().map_or(RETRY_CAP, |d| d.saturating_duration_since(now));
                        if stop.wait(next) {
                            return;
                        }
                    }
                    Err(error) => {
                        report(PurgeNotice::Failed { error, retry_in: retry });
                        if stop.wait(retry) {
                            return;
                        }
                        retry = (retry * 2).min(RETRY_CAP);
                    }
                }
            }
        })
        .map(Purger)
    }

    /// Stops the schedule (a purge under way finishes first) and joins the thread.
    pub fn stop(self) -> Result<()> {
        self.0.stop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::plan::check;
    use crate::lang::types::Value;
    use crate::node::Node;
    use std::sync::Arc;

    const APP: &str = "define stream S (symbol string, qty long, ts long);
        @PartitionById @purge(enable='true', interval='1 sec', @retentionPeriod(sec='120 sec', min='all'))
        define aggregation A from S select symbol, sum(qty) as q group by symbol aggregate by ts every sec, min;";

    fn ingest(store: &str, id: &str, ts: &[i64]) {
        // An hour's delay: the old second is rolled up into minutes, the recent one not yet.
        let cfg = NodeConfig::parse(&format!("wso2.carbon: {{id: {id}}}\ntally: {{rollup_delay: 60m}}"), "n").unwrap();
        let node = Node::start(Arc::new(check(APP, "a", &cfg).unwrap()), &cfg, Some(store), &mut |_, _| {}).unwrap();
        let mut router = node.router();
        for t in ts {
            router.push(0, &[Value::Str("x".into()), Value::Long(1), Value::Long(*t)]).unwrap();
        }
        router.send_all().unwrap();
        drop(router);
        node.shutdown().unwrap();
    }

    fn rows(store: &str, shard: &str, table: usize) -> usize {
        let cfg = NodeConfig::parse(&format!("wso2.carbon: {{id: {shard}}}"), "n").unwrap();
        let plan = check(APP, "a", &cfg).unwrap();
        let t = &TableSchema::all(&plan)[0][table];
        let mut s = store::open(&StoreAddress::parse(store, None, None).unwrap()).unwrap();
        let shard_col = t.column("SHARD_ID").unwrap();
        s.scan(t, i64::MIN, i64::MAX, &[(shard_col, Value::Str(shard.into()))]).unwrap().len()
    }

    /// The schedule keeps going through failures: the store's directory does not exist at
    /// first (every pass fails and is retried), then it does and the purge happens; only
    /// this node's shard loses rows, and only in durations with a finite retention.
    #[test]
    fn the_purger_retries_until_it_can_purge_and_touches_only_its_shard() {
        let dir = tempfile::tempdir().unwrap();
        let later = dir.path().join("later");
        let store = format!("sqlite:{}", later.join("s.db").display());
        let now = crate::time::clock::now_ms();
        let cfg = NodeConfig::parse("wso2.carbon: {id: n1}", "n").unwrap();
        let plan = check(APP, "a", &cfg).unwrap();
        let retention = Retention::new(&plan, &cfg, Some(&store)).unwrap();
        assert!(!retention.is_empty());
        let (tx, rx) = crossbeam_channel::unbounded();
        let purger = Purger::spawn(retention, Box::new(move |e| tx.send(e).unwrap())).unwrap();
        let mut failures = Vec::new();
        while failures.len() < 2 {
            match rx.recv_timeout(Duration::from_secs(10)).unwrap() {
                PurgeNotice::Failed { error, retry_in } => failures.push((error.to_string(), retry_in)),
                PurgeNotice::Purged(p) => panic!("nothing to purge yet: {p:?}"),
            }
        }
        assert!(failures[0].0.contains("cannot open"), "{failures:?}");
        assert!(failures[1].1 > failures[0].1, "backs off: {failures:?}");

        std::fs::create_dir(&later).unwrap();
        ingest(&store, "n1", &[1_000, now - 10_000]);
        ingest(&store, "n2", &[1_000, now - 10_000]);
        let purged = loop {
            match rx.recv_timeout(Duration::from_secs(20)).unwrap() {
                // A pass may come between the directory appearing and the rows.
                PurgeNotice::Purged(p) if p.iter().any(|p| p.rows > 0) => break p,
                _ => continue,
            }
        };
        purger.stop().unwrap();
        assert_eq!(purged.len(), 1, "{purged:?}");
        assert_eq!((purged[0].table.as_str(), purged[0].shard.as_deref()), ("A_SECONDS", Some("n1")));
        assert_eq!(rows(&store, "n1", 0), 1, "n1's old second is gone, its recent one stays");
        assert_eq!(rows(&store, "n2", 0), 2, "n2's rows are n2's to purge");
        assert_eq!(rows(&store, "n1", 1), 1, "minutes are kept for ever (the old one rolled up before)");
    }
}
