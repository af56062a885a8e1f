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
    pub batches_refused: AtomicU64,
    pub http_requests: AtomicU64,
    pub flushes: AtomicU64,
    pub flush_rows: AtomicU64,
    pub journal_rows: AtomicU64,
    pub flush_micros: AtomicU64,
    pub store_errors: AtomicU64,
}

impl Metrics {
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
