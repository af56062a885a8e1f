//! Counters of a running node, served as Prometheus text on `GET /metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Writing to a `String` cannot fail; `fmt::Write` still returns a `Result`.
const STRING_WRITE: &str = "writing to a String cannot fail";

/// Counters bumped by the server's threads (relaxed atomics: a scrape may see one counter a
/// moment ahead of another, never a torn value).
#[derive(Debug, Default)]
pub struct Metrics {
    pub events_in: AtomicU64,
    pub batches_in: AtomicU64,
    pub batches_acked: AtomicU64,
    /// Version 2 batches committed before and answered DUPLICATE (docs/delivery.md).
    pub batches_duplicate: AtomicU64,
    pub batches_refused: AtomicU64,
    pub http_requests: AtomicU64,
    pub flushes: AtomicU64,
    pub flush_rows: AtomicU64,
    pub journal_rows: AtomicU64,
    pub flush_micros: AtomicU64,
    pub store_errors: AtomicU64,
    /// Rows written by duration (`Granularity::ALL` order): new buckets, and merges.
    pub rows_new: [AtomicU64; 6],
    pub rows_merged: [AtomicU64; 6],
    /// Flusher time by phase, in µs (`FlushStats`): roll-up, encode, read back, store.
    pub phase_micros: [AtomicU64; 4],
}

/// The phases of `Metrics::phase_micros`, in order.
pub const PHASES: [&str; 4] = ["rollup", "encode", "read", "store"];

impl Metrics {
    /// Adds one committed flush's figures.
    pub fn add_flush(&self, stats: &crate::node::FlushStats) {
        Metrics::add(&self.flushes, 1);
        Metrics::add(&self.flush_rows, stats.rows as u64);
        Metrics::add(&self.journal_rows, stats.journaled as u64);
        Metrics::add(&self.flush_micros, stats.elapsed.as_micros() as u64);
        for i in 0..6 {
            Metrics::add(&self.rows_new[i], stats.row_counts.new[i]);
            Metrics::add(&self.rows_merged[i], stats.row_counts.merged[i]);
        }
        let phases = [stats.rollup_time, stats.encode_time, stats.read_time, stats.store_time];
        for (c, t) in self.phase_micros.iter().zip(phases) {
            Metrics::add(c, t.as_micros() as u64);
        }
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of the counters and of the given gauges.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, v: u64| {
            writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}").expect(STRING_WRITE);
        };
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        counter("tally_events_in_total", "Events taken (binary and HTTP ingest).", get(&self.events_in));
        counter(
            "tally_batches_in_total",
            "Batches taken (a binary BATCH frame, or an HTTP request).",
            get(&self.batches_in),
        );
        counter(
            "tally_batches_acked_total",
            "Batches acknowledged after their flush committed.",
            get(&self.batches_acked),
        );
        counter(
            "tally_batches_duplicate_total",
            "Version 2 batches committed before (a resend) and answered DUPLICATE, not counted again.",
            get(&self.batches_duplicate),
        );
        counter("tally_batches_refused_total", "Batches refused with an error.", get(&self.batches_refused));
        counter("tally_http_requests_total", "HTTP requests answered.", get(&self.http_requests));
        counter("tally_flushes_total", "Flushes that committed.", get(&self.flushes));
        counter("tally_flush_rows_total", "Rows written by committed flushes (all durations).", get(&self.flush_rows));
        counter(
            "tally_journal_rows_total",
            "Finest partials appended to the journal by committed flushes (one record a flush).",
            get(&self.journal_rows),
        );
        counter(
            "tally_store_errors_total",
            "Flushes the store refused (their rows are kept and retried).",
            get(&self.store_errors),
        );
        writeln!(
            out,
            "# HELP tally_rows_written_total Rows written by committed flushes, by duration and kind (new: a bucket newer than any the node had written to that table; merge: one the table may hold).\n# TYPE tally_rows_written_total counter"
        ).expect(STRING_WRITE);
        for (i, g) in crate::time::granularity::Granularity::ALL.iter().enumerate() {
            for (kind, c) in [("new", &self.rows_new[i]), ("merge", &self.rows_merged[i])] {
                writeln!(
                    out,
                    "tally_rows_written_total{{duration=\"{}\",kind=\"{kind}\"}} {}",
                    g.table_suffix(),
                    get(c)
                )
                .expect(STRING_WRITE);
            }
        }
        writeln!(
            out,
            "# HELP tally_flush_phase_seconds_total The flusher's time by phase: rollup (merging the workers' partials, rolling them up), encode (rows and journal records), read (finer rows read back for roll-ups), store (waiting for the transaction).\n# TYPE tally_flush_phase_seconds_total counter"
        ).expect(STRING_WRITE);
        for (p, c) in PHASES.iter().zip(&self.phase_micros) {
            writeln!(out, "tally_flush_phase_seconds_total{{phase=\"{p}\"}} {:.6}", get(c) as f64 / 1e6)
                .expect(STRING_WRITE);
        }
        writeln!(
            out,
            "# HELP tally_flush_seconds_total Time spent in committed flushes.\n# TYPE tally_flush_seconds_total counter\ntally_flush_seconds_total {:.6}",
            get(&self.flush_micros) as f64 / 1e6
        ).expect(STRING_WRITE);
        writeln!(
            out,
            "# HELP tally_pending_rows Rolled-up rows not yet written.\n# TYPE tally_pending_rows gauge\ntally_pending_rows {}",
            gauges.pending_rows
        ).expect(STRING_WRITE);
        writeln!(
            out,
            "# HELP tally_connections Binary ingest connections open.\n# TYPE tally_connections gauge\ntally_connections {}",
            gauges.connections
        ).expect(STRING_WRITE);
        writeln!(
            out,
            "# HELP tally_worker_queue_batches Batches waiting in each worker's queue.\n# TYPE tally_worker_queue_batches gauge"
        ).expect(STRING_WRITE);
        for (i, d) in gauges.queue_depths.iter().enumerate() {
            writeln!(out, "tally_worker_queue_batches{{worker=\"{i}\"}} {d}").expect(STRING_WRITE);
        }
        out
    }
}

/// Point-in-time values for [`Metrics::render`].
#[derive(Debug, Default)]
pub struct Gauges {
    pub pending_rows: usize,
    pub connections: usize,
    pub queue_depths: Vec<usize>,
}
