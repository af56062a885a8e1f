//! Flush throughput on PostgreSQL: the store's path (up to `MEDIUM_FLUSH_ROWS` rows: one
//! prepared `MERGE` over an array per column; more: rows of buckets newer than the shard's
//! newest by binary COPY straight into the table, the others by binary COPY into a staging
//! table, then one `MERGE` on PostgreSQL 15+, else `INSERT … SELECT … ON CONFLICT DO
//! UPDATE`) against the same rows sent as multi-row
//! `INSERT … VALUES … ON CONFLICT DO UPDATE`, at 1 K, 10 K and 100 K rows per flush, each
//! flush one transaction, on the same database in one run.
//!
//! Two cases per size, each on the table where it happens: `new` on a SECONDS table (every
//! row a new key: the fresh second buckets of a flush) and `merge` on an HOURS table (every
//! row hits an existing key: an open hour merged into at every flush). The paths alternate
//! within each round, so machine noise hits them alike; the medians are reported.
//!
//! Usage: DATABASE_URL=postgres://… flush_copy_vs_insert [--rounds N] [--out FILE]
//! (scripts/bench_flush.sh starts a throwaway PostgreSQL and runs it.)

use postgres::types::ToSql;
use tally::config::NodeConfig;
use tally::lang::plan::check;
use tally::lang::types::Value;
use tally::store::schema::TableSchema;
use tally::store::sql::{Dialect, upsert_rows};
use tally::store::{Claim, StoreAddress};
use tally::time::granularity::Granularity;
use tally_benches::flush::{SIZES, SYMBOLS, make_rows, rate, write_store as write_copy};
use tally_benches::report::{git_sha, machine, median};

/// Rows per INSERT statement. 1,000 (6,000 bind parameters, well under PostgreSQL's
/// 65,535) is the strongest baseline, and the headline ratio; 100 is closer to what ORMs
/// and JDBC batch rewriting send.
const INSERT_CHUNKS: [usize; 2] = [1_000, 100];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let rounds: usize = opt("--rounds").map(|r| r.parse().expect("--rounds N")).unwrap_or(5);
    let out = opt("--out");
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL=postgres://… (scripts/bench_flush.sh sets it)");

    let tag = std::process::id();
    let cfg = NodeConfig::parse(&format!("wso2.carbon: {{id: flushbench{tag}}}"), "bench").unwrap();
    let app = format!(
        "define stream TradeStream (symbol string, price double, quantity long, timestamp long);
         @PartitionById define aggregation FlushBench{tag} from TradeStream
         select symbol, avg(price) as avgPrice, sum(quantity) as total
         group by symbol aggregate by timestamp every sec, hour;"
    );
    let plan = check(&app, "bench", &cfg).unwrap();
    // Per case: the table the COPY path writes, and one per INSERT statement size.
    let tables_for = |d: Granularity| -> (TableSchema, Vec<TableSchema>) {
        let copy = TableSchema::new(&plan, &plan.aggregations[0], d);
        let inserts = INSERT_CHUNKS
            .iter()
            .map(|c| {
                let mut t = copy.clone();
                t.name = format!("{}_INSERT{c}", copy.name);
                t
            })
            .collect();
        (copy, inserts)
    };
    let cases = [
        ("new", Granularity::Seconds, tables_for(Granularity::Seconds)),
        ("merge", Granularity::Hours, tables_for(Granularity::Hours)),
    ];

    let address = StoreAddress::parse(&url, None, None).unwrap();
    let mut store = tally::store::open(&address).unwrap();
    let all: Vec<TableSchema> =
        cases.iter().flat_map(|(_, _, (c, i))| std::iter::once(c.clone()).chain(i.iter().cloned())).collect();
    store.prepare(&all).unwrap();
    let claim = Claim::new(cfg.node_id.as_deref(), cfg.effective_shard_id());
    let mut seq = store.register(&claim).unwrap();
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();

    println!("flush throughput, rows/s (median of {rounds} rounds; each flush one transaction)");
    println!(
        "{:>8} {:>6} {:>12} {:>13} {:>12} {:>7} {:>7}",
        "rows", "case", "store path", "INSERT×1000", "INSERT×100", "ratio", "×100"
    );
    let mut results = Vec::new();
    let mut bucket = 0i64;
    for &n in &SIZES {
        for (case, duration, (copy_table, insert_tables)) in &cases {
            let width: i64 = if *duration == Granularity::Seconds { 1_000 } else { 3_600_000 };
            let case = *case;
            let mut copy_rates = Vec::new();
            let mut insert_rates: Vec<Vec<f64>> = vec![Vec::new(); INSERT_CHUNKS.len()];
            let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); INSERT_CHUNKS.len()];
            for round in 0..rounds {
                // `new`: buckets never written before; `merge`: the previous round's buckets.
                if case == "new" || round == 0 {
                    bucket += (n / SYMBOLS + 1) as i64;
                }
                let rows = make_rows(copy_table, n, bucket, width, claim.shard_id.as_deref().unwrap_or("bench"));
                if case == "merge" && round == 0 {
                    // Seed the keys the merge rounds update.
                    seq += 1;
                    write_copy(store.as_mut(), &claim, seq, copy_table, &rows);
                    for (t, chunk) in insert_tables.iter().zip(INSERT_CHUNKS) {
                        write_insert(&mut client, t, &rows, chunk);
                    }
                }
                seq += 1;
                let copy = rate(n, || write_copy(store.as_mut(), &claim, seq, copy_table, &rows));
                copy_rates.push(copy);
                for (k, (t, chunk)) in insert_tables.iter().zip(INSERT_CHUNKS).enumerate() {
                    let insert = rate(n, || write_insert(&mut client, t, &rows, chunk));
                    insert_rates[k].push(insert);
                    ratios[k].push(copy / insert);
                }
            }
            let c = median(&mut copy_rates);
            let i: Vec<f64> = insert_rates.iter_mut().map(|v| median(v)).collect();
            let r: Vec<f64> = ratios.iter_mut().map(|v| median(v)).collect();
            println!("{n:>8} {case:>6} {c:>12.0} {:>13.0} {:>12.0} {:>6.2}x {:>6.2}x", i[0], i[1], r[0], r[1]);
            results.push(serde_json::json!({
                "rows_per_flush": n, "case": case,
                "copy_merge_rows_per_sec": c.round(),
                "insert_values_rows_per_sec": i[0].round(),
                "ratio": (r[0] * 100.0).round() / 100.0,
                "insert_values_100_rows_per_sec": i[1].round(),
                "ratio_vs_100_row_statements": (r[1] * 100.0).round() / 100.0,
                "copy_runs": copy_rates, "insert_runs": insert_rates[0], "insert_100_runs": insert_rates[1],
            }));
        }
    }
    for t in all.iter() {
        client.batch_execute(&format!("DROP TABLE IF EXISTS \"{}\"", t.name)).unwrap();
    }
    store.release(&claim).unwrap();
    let server: String = client.query_one("SELECT version()", &[]).unwrap().get(0);
    let mut setting = |name: &str| -> String {
        client.query_one("SELECT current_setting($1)", &[&name]).map(|r| r.get(0)).unwrap_or_default()
    };
    let settings = serde_json::json!({
        "fsync": setting("fsync"), "synchronous_commit": setting("synchronous_commit"),
        "shared_buffers": setting("shared_buffers"), "wal_level": setting("wal_level"),
    });
    if let Some(path) = out {
        let doc = serde_json::json!({
            "bench": "flush_copy_vs_insert",
            "git_sha": git_sha(),
            "machine": machine(),
            "postgres": server,
            "postgres_settings": settings,
            "config": {
                "tables": "new: TradeAggregation_SECONDS, merge: TradeAggregation_HOURS; partitioned (key AGG_TIMESTAMP, SHARD_ID, symbol; avg as sum+count, sum); created by the store (fillfactor 90 / 50)",
                "symbols": SYMBOLS, "rounds": rounds, "insert_rows_per_statement": INSERT_CHUNKS,
                "copy_path": "PostgresStore::write, one transaction with the flush number recorded: up to MEDIUM_FLUSH_ROWS (4,096) rows one prepared MERGE over an array per column (unnest); more rows: rows of buckets newer than the shard's newest by binary COPY into the table, the others by binary COPY into a temporary staging table + MERGE (PostgreSQL 15+; else INSERT … SELECT … ON CONFLICT DO UPDATE)",
                "insert_path": "multi-row INSERT … VALUES … ON CONFLICT DO UPDATE with the same merge expressions, one transaction",
                "server": "the PostgreSQL of DATABASE_URL (scripts/bench_flush.sh: a throwaway cluster from scripts/postgres.sh, same machine)",
            },
            "results": results,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap() + "\n").unwrap();
        println!("wrote {path}");
    }
}

fn write_insert(client: &mut postgres::Client, t: &TableSchema, rows: &[Vec<Value>], chunk_rows: usize) {
    let mut tx = client.transaction().unwrap();
    for chunk in rows.chunks(chunk_rows) {
        let stmt = tx.prepare(&upsert_rows(Dialect::Postgres, t, chunk.len())).unwrap();
        let params: Vec<Box<dyn ToSql + Sync>> = chunk.iter().flatten().map(bind).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref()).collect();
        tx.execute(&stmt, &refs).unwrap();
    }
    tx.commit().unwrap();
}

fn bind(v: &Value) -> Box<dyn ToSql + Sync> {
    match v {
        Value::Long(i) => Box::new(*i),
        Value::Int(i) => Box::new(*i),
        Value::Double(f) => Box::new(*f),
        Value::Float(f) => Box::new(*f),
        Value::Str(s) => Box::new(s.clone()),
        Value::Bool(b) => Box::new(*b),
        Value::Null => Box::new(None::<i64>),
    }
}
