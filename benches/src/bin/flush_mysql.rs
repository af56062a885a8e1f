//! Flush throughput on MySQL/MariaDB: the store's path (rows of buckets newer than the
//! shard's newest by `LOAD DATA LOCAL INFILE` straight into the table, the others loaded
//! into a temporary staging table and merged with one `INSERT … SELECT … ON DUPLICATE KEY
//! UPDATE`, one transaction with the flush number) against the same rows sent as
//! multi-row `INSERT … VALUES … ON DUPLICATE KEY UPDATE` (1,000 and 100 rows a statement,
//! prepared, positional parameters: what JDBC batching with rewriteBatchedStatements
//! sends), at 1 K, 10 K and 100 K rows per flush, on the same database in one run.
//!
//! Two cases per size, each on the table where it happens: `new` on a SECONDS table (every
//! row a new key) and `merge` on an HOURS table (every row hits an existing key). The
//! paths alternate within each round, so machine noise hits them alike; the medians are
//! reported.
//!
//! For new rows it also times the server's own ceiling: the same rows, encoded beforehand
//! and in key order, sent by one bare `LOAD DATA LOCAL INFILE` in a transaction of its own
//! (`raw LOAD`). No client path that loads rows by LOAD DATA can be faster than that, so
//! `raw LOAD / INSERT×1000` bounds the ratio any bulk path can reach on that server.
//!
//! Usage: MYSQL_URL=mysql://… flush_mysql [--rounds N] [--out FILE]
//! (scripts/bench_flush_mysql.sh starts a throwaway MariaDB and runs it.)

use mysql::prelude::Queryable;
use std::io::Write;
use tally::config::NodeConfig;
use tally::lang::plan::check;
use tally::lang::types::Value;
use tally::store::schema::TableSchema;
use tally::store::sql::{Dialect, upsert_rows};
use tally::store::{Claim, StoreAddress};
use tally::time::granularity::Granularity;
use tally_benches::flush::{SIZES, SYMBOLS, make_rows, rate, write_store};
use tally_benches::report::{git_sha, machine, median};

/// Rows per INSERT statement: 1,000 is the baseline the issue names; 100 is closer to what
/// ORMs send.
const INSERT_CHUNKS: [usize; 2] = [1_000, 100];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let rounds: usize = opt("--rounds").map(|r| r.parse().expect("--rounds N")).unwrap_or(5);
    let out = opt("--out");
    let url = std::env::var("MYSQL_URL").expect("MYSQL_URL=mysql://… (scripts/bench_flush_mysql.sh sets it)");

    let tag = std::process::id();
    let cfg = NodeConfig::parse(&format!("wso2.carbon: {{id: flushbench{tag}}}"), "bench").unwrap();
    let app = format!(
        "define stream TradeStream (symbol string, price double, quantity long, timestamp long);
         @PartitionById define aggregation FlushBench{tag} from TradeStream
         select symbol, avg(price) as avgPrice, sum(quantity) as total
         group by symbol aggregate by timestamp every sec, hour;"
    );
    let plan = check(&app, "bench", &cfg).unwrap();
    let tables_for = |d: Granularity| -> (TableSchema, Vec<TableSchema>) {
        let store_table = TableSchema::new(&plan, &plan.aggregations[0], d);
        // One table per INSERT variant: prepared ×1000, prepared ×100, text ×1000; and one
        // for the bare LOAD DATA.
        let inserts = ["1000", "100", "TEXT1000", "RAWLOAD"]
            .iter()
            .map(|c| {
                let mut t = store_table.clone();
                t.name = format!("{}_INSERT{c}", store_table.name);
                t
            })
            .collect();
        (store_table, inserts)
    };
    let cases = [
        ("new", Granularity::Seconds, tables_for(Granularity::Seconds)),
        ("merge", Granularity::Hours, tables_for(Granularity::Hours)),
    ];

    let address = StoreAddress::parse(&url, None, None).unwrap();
    let mut store = tally::store::open(&address).unwrap();
    let all: Vec<TableSchema> =
        cases.iter().flat_map(|(_, _, (c, i))| std::iter::once(c.clone()).chain(i.iter().cloned())).collect();
    // The INSERT tables are made by the store too: the same columns, key and collation.
    store.prepare(&all).unwrap();
    let claim = Claim::new(cfg.node_id.as_deref(), cfg.effective_shard_id());
    let mut seq = store.register(&claim).unwrap();
    let infile = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let handler = {
        let infile = std::sync::Arc::clone(&infile);
        mysql::LocalInfileHandler::new(move |_, out| out.write_all(&infile.lock().unwrap()))
    };
    let mut conn = mysql::Conn::new(
        mysql::OptsBuilder::from_opts(mysql::Opts::from_url(&url).unwrap())
            .prefer_socket(false)
            .local_infile_handler(Some(handler)),
    )
    .unwrap();
    conn.query_drop("SET SESSION sql_mode = 'ANSI_QUOTES,STRICT_ALL_TABLES', SESSION time_zone = '+00:00'").unwrap();

    println!("flush throughput on MySQL/MariaDB, rows/s (median of {rounds} rounds; each flush one transaction)");
    println!(
        "{:>8} {:>6} {:>12} {:>13} {:>12} {:>12} {:>7} {:>7} {:>7} {:>10} {:>9}",
        "rows",
        "case",
        "store path",
        "INSERT×1000",
        "INSERT×100",
        "text×1000",
        "ratio",
        "×100",
        "text",
        "raw LOAD",
        "raw/×1000"
    );
    let mut results = Vec::new();
    let mut bucket = 0i64;
    for &n in &SIZES {
        for (case, duration, (store_table, insert_tables)) in &cases {
            let width: i64 = if *duration == Granularity::Seconds { 1_000 } else { 3_600_000 };
            let case = *case;
            let mut store_rates = Vec::new();
            let mut insert_rates: Vec<Vec<f64>> = vec![Vec::new(); 3];
            let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); 3];
            let (mut raw_rates, mut raw_ratios) = (Vec::new(), Vec::new());
            for round in 0..rounds {
                if case == "new" || round == 0 {
                    bucket += (n / SYMBOLS + 1) as i64;
                }
                let rows = make_rows(store_table, n, bucket, width, claim.shard_id.as_deref().unwrap_or("bench"));
                if case == "merge" && round == 0 {
                    seq += 1;
                    write_store(store.as_mut(), &claim, seq, store_table, &rows);
                    for (t, chunk) in insert_tables.iter().zip(INSERT_CHUNKS) {
                        write_insert(&mut conn, t, &rows, chunk);
                    }
                    write_text(&mut conn, &insert_tables[2], &rows, 1_000);
                }
                seq += 1;
                let s = rate(n, || write_store(store.as_mut(), &claim, seq, store_table, &rows));
                store_rates.push(s);
                for (k, (t, chunk)) in insert_tables.iter().zip(INSERT_CHUNKS).enumerate() {
                    let i = rate(n, || write_insert(&mut conn, t, &rows, chunk));
                    insert_rates[k].push(i);
                    ratios[k].push(s / i);
                }
                let i = rate(n, || write_text(&mut conn, &insert_tables[2], &rows, 1_000));
                insert_rates[2].push(i);
                ratios[2].push(s / i);
                if case == "new" {
                    *infile.lock().unwrap() = tsv(&rows);
                    let r = rate(n, || write_raw(&mut conn, &insert_tables[3]));
                    raw_rates.push(r);
                    raw_ratios.push(r / insert_rates[0][round]);
                }
            }
            let raw = if raw_rates.is_empty() { None } else { Some((median(&mut raw_rates), median(&mut raw_ratios))) };
            let s = median(&mut store_rates);
            let i: Vec<f64> = insert_rates.iter_mut().map(|v| median(v)).collect();
            let r: Vec<f64> = ratios.iter_mut().map(|v| median(v)).collect();
            let (raw_rate, raw_ratio) = match raw {
                Some((r, x)) => (format!("{r:.0}"), format!("{x:.2}x")),
                None => ("-".into(), "-".into()),
            };
            println!(
                "{n:>8} {case:>6} {s:>12.0} {:>13.0} {:>12.0} {:>12.0} {:>6.2}x {:>6.2}x {:>6.2}x {raw_rate:>10} {raw_ratio:>9}",
                i[0], i[1], i[2], r[0], r[1], r[2]
            );
            results.push(serde_json::json!({
                "rows_per_flush": n, "case": case,
                "store_path_rows_per_sec": s.round(),
                "insert_values_rows_per_sec": i[0].round(),
                "ratio": (r[0] * 100.0).round() / 100.0,
                "insert_values_100_rows_per_sec": i[1].round(),
                "ratio_vs_100_row_statements": (r[1] * 100.0).round() / 100.0,
                "insert_text_rows_per_sec": i[2].round(),
                "ratio_vs_text_statements": (r[2] * 100.0).round() / 100.0,
                "store_runs": store_rates, "insert_runs": insert_rates[0], "insert_100_runs": insert_rates[1],
                "insert_text_runs": insert_rates[2],
                "raw_load_rows_per_sec": raw.map(|(r, _)| r.round()),
                "raw_load_vs_insert_1000": raw.map(|(_, x)| (x * 100.0).round() / 100.0),
                "raw_load_runs": raw_rates,
            }));
        }
    }
    for t in all.iter() {
        conn.query_drop(format!("DROP TABLE IF EXISTS \"{}\"", t.name)).unwrap();
    }
    store.release(&claim).unwrap();
    let server: String = conn.query_first("SELECT version()").unwrap().unwrap_or_default();
    let mut setting =
        |name: &str| -> String { conn.query_first(format!("SELECT @@{name}")).ok().flatten().unwrap_or_default() };
    let settings = serde_json::json!({
        "innodb_flush_log_at_trx_commit": setting("innodb_flush_log_at_trx_commit"),
        "sync_binlog": setting("sync_binlog"), "log_bin": setting("log_bin"),
        "innodb_buffer_pool_size": setting("innodb_buffer_pool_size"),
        "local_infile": setting("local_infile"),
    });
    if let Some(path) = out {
        let doc = serde_json::json!({
            "bench": "flush_mysql",
            "git_sha": git_sha(),
            "machine": machine(),
            "server": server,
            "server_settings": settings,
            "config": {
                "tables": "new: FlushBench_SECONDS, merge: FlushBench_HOURS; partitioned (key AGG_TIMESTAMP, SHARD_ID, symbol; avg as sum+count, sum); created by the store (InnoDB, utf8mb4, binary collation)",
                "symbols": SYMBOLS, "rounds": rounds, "insert_rows_per_statement": INSERT_CHUNKS,
                "store_path": "MysqlStore::write, one transaction with the flush number recorded: rows of buckets newer than the shard's newest by LOAD DATA LOCAL INFILE into the table, the others by LOAD DATA LOCAL INFILE into a temporary staging table + INSERT … SELECT … ON DUPLICATE KEY UPDATE",
                "insert_path": "prepared multi-row INSERT … VALUES (?, …), … ON DUPLICATE KEY UPDATE with the same merge expressions (binary protocol, server-side prepared and cached), one transaction",
                "raw_load_path": "new rows only: the same rows encoded beforehand (text, key order) and sent by one bare LOAD DATA LOCAL INFILE into a table of the same shape, in a transaction of its own: the server's ceiling for any LOAD DATA path",
                "insert_text_path": "the same 1,000-row statements as text with the values inline, as MySQL Connector/J sends a batch with rewriteBatchedStatements=true and its default client-side prepared statements, one transaction",
                "server_origin": "the server of MYSQL_URL (scripts/bench_flush_mysql.sh: a throwaway MariaDB from scripts/mariadb.sh with its durable settings, same machine)",
            },
            "results": results,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap() + "\n").unwrap();
        println!("wrote {path}");
    }
}

fn write_insert(conn: &mut mysql::Conn, t: &TableSchema, rows: &[Vec<Value>], chunk_rows: usize) {
    let mut tx = conn.start_transaction(mysql::TxOpts::default()).unwrap();
    for chunk in rows.chunks(chunk_rows) {
        let sql = tally::store::sql::positional(&upsert_rows(Dialect::Mysql, t, chunk.len()));
        let params: Vec<mysql::Value> = chunk.iter().flatten().map(bind).collect();
        tx.exec_drop(sql, mysql::Params::Positional(params)).unwrap();
    }
    tx.commit().unwrap();
}

fn write_text(conn: &mut mysql::Conn, t: &TableSchema, rows: &[Vec<Value>], chunk_rows: usize) {
    let mut tx = conn.start_transaction(mysql::TxOpts::default()).unwrap();
    for chunk in rows.chunks(chunk_rows) {
        let template = upsert_rows(Dialect::Mysql, t, 1);
        let (head, tail) = template.split_once(" VALUES ").unwrap();
        let tail = &tail[tail.find(')').unwrap() + 1..];
        let tuples: Vec<String> =
            chunk.iter().map(|r| format!("({})", r.iter().map(literal).collect::<Vec<_>>().join(", "))).collect();
        tx.query_drop(format!("{head} VALUES {}{tail}", tuples.join(", "))).unwrap();
    }
    tx.commit().unwrap();
}

/// One bare `LOAD DATA LOCAL INFILE` of the encoded rows, in a transaction.
fn write_raw(conn: &mut mysql::Conn, t: &TableSchema) {
    let cols: Vec<String> = t.columns.iter().map(|c| format!("\"{}\"", c.name)).collect();
    let mut tx = conn.start_transaction(mysql::TxOpts::default()).unwrap();
    tx.query_drop(format!(
        "LOAD DATA LOCAL INFILE 'rows' INTO TABLE \"{}\" CHARACTER SET utf8mb4 FIELDS TERMINATED BY '\\t' \
         ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({})",
        t.name,
        cols.join(", ")
    ))
    .unwrap();
    tx.commit().unwrap();
}

/// The rows as LOAD DATA's default text, in key order (the bench's values need no escapes).
fn tsv(rows: &[Vec<Value>]) -> Vec<u8> {
    let mut sorted: Vec<&Vec<Value>> = rows.iter().collect();
    sorted.sort_by(|a, b| key(a).cmp(&key(b)));
    let mut out = Vec::new();
    for r in sorted {
        let fields: Vec<String> = r.iter().map(|v| literal(v).trim_matches('\'').to_string()).collect();
        out.extend_from_slice(fields.join("\t").as_bytes());
        out.push(b'\n');
    }
    out
}

/// A row's primary key order: the bucket, then the strings (shard, group-by values).
fn key(r: &[Value]) -> (i64, Vec<&str>) {
    let bucket = r.iter().find_map(|v| if let Value::Long(b) = v { Some(*b) } else { None }).unwrap_or(0);
    (bucket, r.iter().filter_map(|v| if let Value::Str(s) = v { Some(s.as_str()) } else { None }).collect())
}

/// A value as a MySQL literal (the session has backslash escapes on, as by default).
fn literal(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Str(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        Value::Bool(b) => i64::from(*b).to_string(),
        Value::Int(i) => i.to_string(),
        Value::Long(i) => i.to_string(),
        Value::Float(f) => format!("{f:?}"),
        Value::Double(f) => format!("{f:?}"),
    }
}

fn bind(v: &Value) -> mysql::Value {
    match v {
        Value::Long(i) => mysql::Value::Int(*i),
        Value::Int(i) => mysql::Value::Int(i64::from(*i)),
        Value::Double(f) => mysql::Value::Double(*f),
        Value::Float(f) => mysql::Value::Float(*f),
        Value::Str(s) => mysql::Value::Bytes(s.as_bytes().to_vec()),
        Value::Bool(b) => mysql::Value::Int(i64::from(*b)),
        Value::Null => mysql::Value::NULL,
    }
}
