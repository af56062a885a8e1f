//! The baseline a run is compared with: what users do without an aggregation engine. The
//! same events go as raw rows into a PostgreSQL table by binary COPY, then every duration's
//! totals are computed with one `GROUP BY` each. Its events/s is the events over the COPY
//! plus the queries; the ratio to a Tally run on the same machine goes in the results.

use crate::error::Result;
use crate::{Trade, Workload, symbol_name};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::Type;
use std::time::{Duration, Instant};
use tally::store::postgres::error as pg_error;

/// What the baseline took.
#[derive(Debug, Clone)]
pub struct Baseline {
    pub copy: Duration,
    pub group_by: Duration,
    /// Rows the six GROUP BY queries returned.
    pub rows: u64,
    pub events_per_sec: f64,
}

const UNITS: [&str; 6] = ["second", "minute", "hour", "day", "month", "year"];

/// Runs the baseline on the PostgreSQL at `url` in a table of its own, dropped afterwards.
pub fn run(url: &str, w: &Workload) -> Result<Baseline> {
    let mut c = postgres::Client::connect(url, postgres::NoTls)
        .map_err(|e| pg_error("the baseline cannot connect to the PostgreSQL of --store", e))?;
    let table = format!("loadgen_raw_{}", std::process::id());
    c.batch_execute(&format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (symbol text, price double precision, quantity bigint, ts bigint)"
    ))
    .map_err(|e| pg_error("the baseline cannot create its raw table", e))?;
    let names: Vec<String> = (0..w.symbols).map(symbol_name).collect();
    let trades: Vec<Trade> = w.trades().collect();
    let started = Instant::now();
    let copying = |e| pg_error("the baseline cannot COPY the raw rows", e);
    let mut tx = c.transaction().map_err(copying)?;
    let copy = tx
        .copy_in(&format!("COPY {table} (symbol, price, quantity, ts) FROM STDIN (FORMAT binary)"))
        .map_err(copying)?;
    let mut writer = BinaryCopyInWriter::new(copy, &[Type::TEXT, Type::FLOAT8, Type::INT8, Type::INT8]);
    for t in &trades {
        writer.write(&[&names[t.symbol as usize], &t.price, &t.quantity, &t.timestamp]).map_err(copying)?;
    }
    writer.finish().map_err(copying)?;
    tx.commit().map_err(copying)?;
    let copy_time = started.elapsed();
    let started = Instant::now();
    let mut rows = 0u64;
    for unit in UNITS {
        let q = format!(
            "SELECT date_trunc('{unit}', to_timestamp(ts / 1000.0) AT TIME ZONE 'UTC') AS bucket, symbol, \
             sum(quantity), count(*), avg(price) FROM {table} GROUP BY 1, 2"
        );
        rows += c.query(&q, &[]).map_err(|e| pg_error(&format!("the baseline's GROUP BY per {unit} failed"), e))?.len()
            as u64;
    }
    let group_by = started.elapsed();
    c.batch_execute(&format!("DROP TABLE {table}"))
        .map_err(|e| pg_error("the baseline cannot drop its raw table", e))?;
    Ok(Baseline {
        copy: copy_time,
        group_by,
        rows,
        events_per_sec: w.events as f64 / (copy_time + group_by).as_secs_f64(),
    })
}
