//! The bench workload, shared by the criterion bench (`benches/ingest.rs`) and the
//! callgrind driver (`examples/per_event.rs`): the seed's TradeStream aggregated every
//! sec ... year by symbol, 1,000 symbols, ten events per symbol per second; and the same
//! with 100,000 symbols (`workload_of`), where the groups no longer fit in the cache.

use std::sync::Arc;
use tally::aggregate::message::Batch;
use tally::config::NodeConfig;
use tally::ingest::wire::BatchBuilder;
use tally::lang::plan::{AppPlan, check};
use tally::lang::types::{AttrType, Value};

pub const APP: &str = "define stream TradeStream (symbol string, price double, quantity long, timestamp long);
define aggregation TradeAggregation from TradeStream
select symbol, avg(price) as avgPrice, sum(quantity) as total
group by symbol aggregate by timestamp every sec ... year;";

pub const EVENTS: usize = 1_000_000;
pub const SYMBOLS: u64 = 1_000;
pub const BATCH: usize = 4096;
/// Event time advances 100 µs per event: ten events per symbol per second.
pub const STEP_US: i64 = 100;
pub const START_MS: i64 = 1_710_460_800_000;
pub const TYPES: [AttrType; 4] = [AttrType::String, AttrType::Double, AttrType::Long, AttrType::Long];

pub struct Workload {
    pub symbols: Vec<u32>,
    pub prices: Vec<f64>,
    pub quantities: Vec<i64>,
    pub times: Vec<i64>,
}

pub fn workload() -> Workload {
    workload_of(SYMBOLS, STEP_US)
}

/// `symbols` keys, event time advancing `step_us` per event.
pub fn workload_of(symbols: u64, step_us: i64) -> Workload {
    // A fixed xorshift sequence: the same events in every run.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut w = Workload { symbols: vec![], prices: vec![], quantities: vec![], times: vec![] };
    for i in 0..EVENTS {
        let r = next();
        w.symbols.push((r % symbols) as u32);
        w.prices.push(100.0 + (r >> 40) as f64 / 1e6);
        w.quantities.push(1 + (r >> 20) as i64 % 100);
        w.times.push(START_MS + i as i64 * step_us / 1000);
    }
    w
}

pub fn batches(w: &Workload) -> Vec<Batch> {
    let symbols = w.symbols.iter().max().map_or(0, |&s| s as usize + 1);
    let names: Vec<String> = (0..symbols).map(|i| format!("SYM{i:04}")).collect();
    let mut out = Vec::new();
    let mut builder = BatchBuilder::new(&TYPES);
    for (b, chunk) in (0..EVENTS).collect::<Vec<_>>().chunks(BATCH).enumerate() {
        for &i in chunk {
            builder.push_values(&[
                Value::Str(names[w.symbols[i] as usize].clone()),
                Value::Double(w.prices[i]),
                Value::Long(w.quantities[i]),
                Value::Long(w.times[i]),
            ]);
        }
        let data = builder.finish();
        out.push(Batch { stream: 0, arrival_ms: 0, first_seq: (b * BATCH) as u64, events: chunk.len() as u32, data });
    }
    out
}

pub fn plan() -> Arc<AppPlan> {
    Arc::new(check(APP, "bench", &NodeConfig::default()).expect("the bench app is valid"))
}

/// What the bench binaries record with their figures: the git sha and the machine as
/// `tally-loadgen` records them, and the median of runs.
pub mod report {
    pub use loadgen::report::{git_sha, machine, median};
}

/// What the flush benches share (`flush_copy_vs_insert` on PostgreSQL, `flush_mysql` on
/// MySQL/MariaDB): the rows of a flush, and the store's own write of them.
pub mod flush {
    use std::time::Instant;
    use tally::lang::types::Value;
    use tally::store::schema::TableSchema;
    use tally::store::{Claim, FlushWrite, Rows, Store, TableWrite};

    pub const SIZES: [usize; 3] = [1_000, 10_000, 100_000];
    pub const SYMBOLS: usize = 1_000;

    /// `n` rows of table `t`: `SYMBOLS` symbols per bucket of `width` ms from bucket number
    /// `bucket` on, in a fixed shuffled order (a flush's rows come out of a hash map, not in
    /// key order).
    pub fn make_rows(t: &TableSchema, n: usize, bucket: i64, width: i64, shard: &str) -> Vec<Vec<Value>> {
        let mut order: Vec<usize> = (0..n).collect();
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for i in (1..n).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            order.swap(i, (x % (i as u64 + 1)) as usize);
        }
        order
            .into_iter()
            .map(|i| {
                t.columns
                    .iter()
                    .map(|c| match c.name.as_str() {
                        "AGG_TIMESTAMP" => Value::Long((bucket + (i / SYMBOLS) as i64) * width),
                        "SHARD_ID" => Value::Str(shard.into()),
                        "symbol" => Value::Str(format!("SYM{:04}", i % SYMBOLS)),
                        name if name.starts_with("AGG_COUNT") => Value::Long(10),
                        name if name.contains("price") => Value::Double(100.0 + (i % 97) as f64),
                        _ => Value::Long((i % 13) as i64 + 1),
                    })
                    .collect()
            })
            .collect()
    }

    /// The store's own write of `rows` into `t`: one flush, one transaction.
    pub fn write_store(store: &mut dyn Store, claim: &Claim, seq: i64, t: &TableSchema, rows: &dyn Rows) {
        let w = FlushWrite {
            claim,
            flush_seq: seq,
            tables: vec![TableWrite { table: t, rows }],
            marks: &[],
            journal: &[],
            producers: &[],
        };
        store.write(&w).unwrap();
    }

    /// Rows a second of `f`, which writes `n` rows.
    pub fn rate(n: usize, f: impl FnOnce()) -> f64 {
        let t = Instant::now();
        f();
        n as f64 / t.elapsed().as_secs_f64()
    }
}
