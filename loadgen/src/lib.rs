//! `tally-loadgen` as a library: the deterministic workload and the totals it must add up
//! to (here), the cluster it drives (`cluster`), the publishing (`drive`), the check of
//! the merged totals (`verify`), the figures (`report`), and the commands built from them:
//! one run and the demo (`run`), a sweep over node counts (`sweep`).

pub mod baseline;
pub mod chaos;
pub mod cluster;
pub mod drive;
pub mod error;
pub mod http;
pub mod producer;
pub mod proxy;
pub mod report;
pub mod run;
pub mod sweep;
pub mod verify;

pub use error::{Error, Result};

use std::collections::BTreeMap;
use std::path::PathBuf;

/// The seed's app: trades per symbol, every duration, partitioned by shard. Retention is
/// off: a run checks every bucket, and a purge in the middle of it would remove some.
///
/// [`app`] gives it under another aggregation name: a run against a shared database uses
/// a name of its own, so it never meets the tables of another run or another app.
pub const APP: &str = "define stream TradeStream (symbol string, price double, quantity long, timestamp long);

@PartitionById
@purge(enable='false')
define aggregation TradeAggregation
from TradeStream
select symbol, avg(price) as avgPrice, sum(quantity) as total, count() as trades
group by symbol
aggregate by timestamp every sec ... year;
";

/// A seeded stream of trades; event `i` goes to node `i % nodes` (round robin).
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    pub events: u64,
    pub symbols: u32,
    pub seed: u64,
    /// Event time of the first event, epoch ms.
    pub start_ms: i64,
    /// Event time advances this much per event, in microseconds (so that millions of
    /// events can share a second, as live data does).
    pub step_us: u64,
    /// Out of every 1,000 events, how many arrive late: their time stamp is up to
    /// `late_max_ms` before the events around them (out of order, into older buckets).
    pub late_per_mille: u32,
    pub late_max_ms: u64,
}

/// [`APP`] with its aggregation named `aggregation`.
pub fn app(aggregation: &str) -> String {
    APP.replace("TradeAggregation", aggregation)
}

/// An aggregation name for one run: `Loadgen_<epoch seconds>_<pid>`.
pub fn run_aggregation() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    format!("Loadgen_{secs}_{}", std::process::id())
}

/// Events a pre-encoded batch holds, unless `--batch-events` says otherwise.
pub const BATCH_EVENTS: usize = 4096;

/// A pre-encoded batch of TradeStream events.
#[derive(Debug, Clone)]
pub struct Batch {
    pub bytes: Vec<u8>,
    pub events: u32,
}

/// One generated trade.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trade {
    pub symbol: u32,
    pub price: f64,
    pub quantity: i64,
    pub timestamp: i64,
}

impl Workload {
    /// Every event, in order.
    pub fn trades(&self) -> impl Iterator<Item = Trade> + '_ {
        let mut x = self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..self.events).map(move |i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Trade {
                symbol: (x % self.symbols as u64) as u32,
                // Cents, so prices are exact in binary only up to rounding; sums of
                // quantities are what must match exactly.
                price: 10.0 + ((x >> 32) % 10_000) as f64 / 100.0,
                quantity: 1 + ((x >> 16) % 1000) as i64,
                timestamp: {
                    let on_time = self.start_ms + (i as u128 * self.step_us as u128 / 1000) as i64;
                    let late = ((x >> 48) % 1000) < self.late_per_mille as u64 && self.late_max_ms > 0;
                    if late { on_time - ((x >> 8) % self.late_max_ms) as i64 } else { on_time }
                },
            }
        })
    }

    /// Every event, encoded for the binary protocol in batches of [`BATCH_EVENTS`], so that
    /// generating events is not what a run measures.
    pub fn batches(&self) -> Vec<Batch> {
        self.batches_of(BATCH_EVENTS)
    }

    /// Every event, encoded in batches of `per_batch` events.
    pub fn batches_of(&self, per_batch: usize) -> Vec<Batch> {
        let per_batch = per_batch.max(1);
        use tally::lang::types::{AttrType, Value};
        let names: Vec<String> = (0..self.symbols).map(symbol_name).collect();
        let mut b = tally::ingest::wire::BatchBuilder::new(&[
            AttrType::String,
            AttrType::Double,
            AttrType::Long,
            AttrType::Long,
        ]);
        let mut out = Vec::new();
        for t in self.trades() {
            b.push_values(&[
                Value::Str(names[t.symbol as usize].clone()),
                Value::Double(t.price),
                Value::Long(t.quantity),
                Value::Long(t.timestamp),
            ]);
            if b.len() == per_batch {
                out.push(Batch { events: b.len() as u32, bytes: b.finish() });
            }
        }
        if !b.is_empty() {
            out.push(Batch { events: b.len() as u32, bytes: b.finish() });
        }
        out
    }

    /// The time the events cover, `[first, last]` bucket-independent, epoch ms.
    pub fn span(&self) -> (i64, i64) {
        let end = self.start_ms + (self.events.saturating_sub(1) as u128 * self.step_us as u128 / 1000) as i64;
        (self.start_ms - self.late_max_ms as i64, end)
    }
}

/// What one (duration, bucket, symbol) must hold.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Expected {
    pub quantity: i64,
    pub trades: i64,
    pub price_sum: f64,
}

/// The expected rows of every duration of [`APP`]: `[(duration, bucket start, symbol)]`.
pub fn expected_buckets(w: &Workload) -> BTreeMap<(usize, i64, u32), Expected> {
    let zone = tally::time::bucket::Zone::default();
    // A hash map while adding up (tens of millions of events), sorted once at the end; the
    // bucket starts are worked out again only when the time stamp changes (consecutive
    // events mostly share it).
    let mut m: std::collections::HashMap<(usize, i64, u32), Expected> = std::collections::HashMap::new();
    let mut last: Option<(i64, [i64; 6])> = None;
    for t in w.trades() {
        let starts = match last {
            Some((ts, starts)) if ts == t.timestamp => starts,
            _ => {
                let starts = DURATIONS.map(|d| zone.bucket_start(d, t.timestamp));
                last = Some((t.timestamp, starts));
                starts
            }
        };
        for (d, start) in starts.iter().enumerate() {
            let e = m.entry((d, *start, t.symbol)).or_default();
            e.quantity += t.quantity;
            e.trades += 1;
            e.price_sum += t.price;
        }
    }
    m.into_iter().collect()
}

/// A workload made ready to run: its events encoded and their expected totals, worked out
/// once (a sweep sends the same workload at every node count).
pub struct Prepared {
    pub workload: Workload,
    pub batches: Vec<Batch>,
    pub expected: BTreeMap<(usize, i64, u32), Expected>,
}

impl Prepared {
    pub fn new(workload: Workload) -> Prepared {
        Prepared::with_batches_of(workload, BATCH_EVENTS)
    }

    /// The workload encoded in batches of `per_batch` events.
    pub fn with_batches_of(workload: Workload, per_batch: usize) -> Prepared {
        let batches = workload.batches_of(per_batch);
        let expected = expected_buckets(&workload);
        Prepared { workload, batches, expected }
    }
}

/// The durations of [`APP`], in order.
pub const DURATIONS: [tally::time::granularity::Granularity; 6] = [
    tally::time::granularity::Granularity::Seconds,
    tally::time::granularity::Granularity::Minutes,
    tally::time::granularity::Granularity::Hours,
    tally::time::granularity::Granularity::Days,
    tally::time::granularity::Granularity::Months,
    tally::time::granularity::Granularity::Years,
];

pub fn symbol_name(i: u32) -> String {
    format!("SYM{i:04}")
}

/// Per symbol: (sum of quantities, number of trades) over the whole workload.
pub fn expected_totals(w: &Workload) -> BTreeMap<String, (i64, i64)> {
    let mut m = BTreeMap::new();
    for t in w.trades() {
        let e = m.entry(symbol_name(t.symbol)).or_insert((0, 0));
        e.0 += t.quantity;
        e.1 += 1;
    }
    m
}

/// The `tally` binary: `$TALLY`, else beside this executable (same cargo target dir),
/// else on `PATH`.
pub fn find_tally() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TALLY") {
        return Some(PathBuf::from(p));
    }
    let beside = std::env::current_exe().ok()?.with_file_name("tally");
    if beside.is_file() {
        return Some(beside);
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("tally")).find(|p| p.is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workload_is_deterministic_and_encodes_every_event() {
        let w = Workload {
            events: 1000,
            symbols: 7,
            seed: 42,
            start_ms: 0,
            step_us: 10_000,
            late_per_mille: 0,
            late_max_ms: 0,
        };
        let a: Vec<Trade> = w.trades().collect();
        let b: Vec<Trade> = w.trades().collect();
        assert_eq!(a, b);
        assert_eq!(a.len(), 1000);
        assert!(a.iter().all(|t| t.symbol < 7 && t.quantity >= 1 && t.quantity <= 1000));
        let totals = expected_totals(&w);
        assert_eq!(totals.values().map(|v| v.1).sum::<i64>(), 1000);
        assert_eq!(totals.values().map(|v| v.0).sum::<i64>(), a.iter().map(|t| t.quantity).sum::<i64>());
        let batches = w.batches();
        assert_eq!(batches.iter().map(|b| b.events).sum::<u32>(), 1000);
    }

    #[test]
    fn late_events_land_in_older_buckets_and_the_expectation_follows() {
        let w = Workload {
            events: 10_000,
            symbols: 3,
            seed: 7,
            start_ms: 1_000_000_000,
            step_us: 1_000_000,
            late_per_mille: 100,
            late_max_ms: 3_600_000,
        };
        let t: Vec<Trade> = w.trades().collect();
        let late = t.windows(2).filter(|p| p[1].timestamp < p[0].timestamp).count();
        assert!((500..1500).contains(&late), "about a tenth out of order: {late}");
        let exp = expected_buckets(&w);
        let years: i64 = exp.iter().filter(|((d, ..), _)| *d == 5).map(|(_, e)| e.trades).sum();
        let seconds: i64 = exp.iter().filter(|((d, ..), _)| *d == 0).map(|(_, e)| e.trades).sum();
        assert_eq!((years, seconds), (10_000, 10_000));
    }
}
