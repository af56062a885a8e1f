//! The deterministic workload of `tally-loadgen` and the totals it must add up to.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The seed's app: trades per symbol, every duration, partitioned by shard.
pub const APP: &str = "define stream TradeStream (symbol string, price double, quantity long, timestamp long);

@PartitionById
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
    /// Event time advances this much per event.
    pub step_ms: u64,
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
                timestamp: self.start_ms + (i * self.step_ms) as i64,
            }
        })
    }

    /// Writes node `node`'s share (round robin over `nodes`) as JSON lines.
    pub fn write_node_events(&self, path: &Path, node: usize, nodes: usize) -> std::io::Result<()> {
        let mut out = BufWriter::new(std::fs::File::create(path)?);
        for (i, t) in self.trades().enumerate() {
            if i % nodes == node {
                writeln!(
                    out,
                    "{{\"stream\":\"TradeStream\",\"data\":[\"{}\",{:?},{},{}]}}",
                    symbol_name(t.symbol),
                    t.price,
                    t.quantity,
                    t.timestamp
                )?;
            }
        }
        out.flush()
    }
}

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
    fn the_workload_is_deterministic_and_splits_round_robin() {
        let w = Workload { events: 1000, symbols: 7, seed: 42, start_ms: 0, step_ms: 10 };
        let a: Vec<Trade> = w.trades().collect();
        let b: Vec<Trade> = w.trades().collect();
        assert_eq!(a, b);
        assert_eq!(a.len(), 1000);
        assert!(a.iter().all(|t| t.symbol < 7 && t.quantity >= 1 && t.quantity <= 1000));
        let totals = expected_totals(&w);
        assert_eq!(totals.values().map(|v| v.1).sum::<i64>(), 1000);
        assert_eq!(totals.values().map(|v| v.0).sum::<i64>(), a.iter().map(|t| t.quantity).sum::<i64>());
        let dir = tempfile::tempdir().unwrap();
        let mut lines = 0;
        for n in 0..3 {
            let p = dir.path().join(format!("{n}.jsonl"));
            w.write_node_events(&p, n, 3).unwrap();
            lines += std::fs::read_to_string(&p).unwrap().lines().count();
        }
        assert_eq!(lines, 1000);
    }
}
