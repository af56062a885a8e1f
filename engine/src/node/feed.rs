//! `tally ingest`: one node fed from JSON-lines files (or standard input), flushed on a
//! wall-clock interval so memory stays bounded, and flushed whole at the end.
//!
//! A bad line is reported with its line number and skipped; every other line is kept.

use crate::config::NodeConfig;
use crate::error::{Error, Result};
use crate::ingest::json::parse_line;
use crate::lang::plan::AppPlan;
use crate::node::Node;
use crate::node::flush::FlushStats;
use crate::node::router::Router;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A line that was not taken, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// 1-based line number in the input.
    pub line: u64,
    pub message: String,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// What an ingest run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngestReport {
    pub lines: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Rows written by all flushes.
    pub rows_written: usize,
    pub flushes: u64,
}

/// Reads JSON lines from `input`, routes every good event into `node`, and flushes every
/// `flush_interval` of wall time so memory stays bounded however long the input. Bad
/// lines go to `on_reject`. Does not do the final flush (see [`finish`]).
pub fn feed(
    node: &mut Node,
    router: &mut Router,
    input: impl BufRead,
    flush_interval: Duration,
    on_reject: &mut dyn FnMut(Rejection),
    on_flush_error: &mut dyn FnMut(&Error),
) -> Result<IngestReport> {
    let plan = node.plan().clone();
    let mut report = IngestReport::default();
    let mut last_flush = Instant::now();
    for (n, line) in input.lines().enumerate() {
        let line_no = n as u64 + 1;
        let text = line.map_err(|e| Error::io(format!("cannot read line {line_no}"), e))?;
        report.lines = line_no;
        if text.trim().is_empty() {
            continue;
        }
        let outcome = parse_line(&plan, &text).map_err(Error::from).and_then(|(si, values)| router.push(si, &values));
        match outcome {
            Ok(()) => report.accepted += 1,
            Err(Error::BadEvent(e)) => {
                report.rejected += 1;
                on_reject(Rejection { line: line_no, message: e.message });
            }
            // The node stopped, or another failure that no later line can get past.
            Err(other) => return Err(other),
        }
        if line_no.is_multiple_of(4096) && last_flush.elapsed() >= flush_interval {
            router.send_all()?;
            match node.flush() {
                Ok(stats) => add(&mut report, &stats),
                // Kept pending and retried at the next flush.
                Err(e) if e.is_retryable() => on_flush_error(&e),
                Err(e) => return Err(e),
            }
            last_flush = Instant::now();
        }
    }
    Ok(report)
}

fn add(report: &mut IngestReport, stats: &FlushStats) {
    report.rows_written += stats.rows;
    report.flushes += 1;
}

/// Sends what the router holds, stops the workers and writes everything to the store, then
/// releases the node's registration. A retryable store error (busy, locked, down) is retried
/// with back-off up to `patience` (`None`: for ever), calling `on_retry` before each wait;
/// nothing is dropped while retrying.
pub fn finish(
    mut node: Node,
    mut router: Router,
    report: &mut IngestReport,
    patience: Option<Duration>,
    on_retry: &mut dyn FnMut(&Error, Duration),
) -> Result<()> {
    router.send_all()?;
    drop(router);
    node.stop_workers()?;
    let stats = crate::node::backoff::retry(patience, on_retry, || node.write_pending())?;
    add(report, &stats);
    crate::node::backoff::retry(patience, on_retry, || node.release())
}

/// Runs the app as this node over JSON-lines inputs (`-` is standard input), then flushes
/// everything. Bad lines go to `on_reject`; store retries to `on_retry`.
pub fn ingest(
    plan: AppPlan,
    cfg: &NodeConfig,
    store: Option<&str>,
    inputs: &[PathBuf],
    on_reject: &mut dyn FnMut(&Path, Rejection),
    on_retry: &mut dyn FnMut(&Error, Duration),
) -> Result<IngestReport> {
    let mut node = Node::start(Arc::new(plan), cfg, store, on_retry)?;
    let mut router = node.router();
    let mut total = IngestReport::default();
    for path in inputs {
        let mut reject = |r: Rejection| on_reject(path, r);
        let mut flush_error = |e: &Error| on_retry(e, cfg.flush_interval);
        let report = if path.as_os_str() == "-" {
            feed(&mut node, &mut router, std::io::stdin().lock(), cfg.flush_interval, &mut reject, &mut flush_error)?
        } else {
            let file =
                std::fs::File::open(path).map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
            feed(
                &mut node,
                &mut router,
                BufReader::with_capacity(1 << 20, file),
                cfg.flush_interval,
                &mut reject,
                &mut flush_error,
            )?
        };
        total.lines += report.lines;
        total.accepted += report.accepted;
        total.rejected += report.rejected;
        total.rows_written += report.rows_written;
        total.flushes += report.flushes;
    }
    finish(node, router, &mut total, cfg.store_wait, on_retry)?;
    Ok(total)
}
