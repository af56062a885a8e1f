//! Helpers shared by the integration tests: temporary directories, running the `tally`
//! binary, the stores every test runs on, and a TCP proxy that can play a database outage.
#![allow(dead_code)] // each test file uses its own share of these

pub mod node;
pub mod proxy;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const SEED_APP: &str = "define stream TradeStream (symbol string, price double, quantity long, timestamp long);

@PartitionById
define aggregation TradeAggregation
from TradeStream
select symbol, avg(price) as avgPrice, sum(quantity) as total
group by symbol
aggregate by timestamp every sec ... year;
";

pub struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    pub fn new() -> Dir {
        Dir { dir: tempfile::tempdir().unwrap() }
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }
    /// A partitioned node whose shard id is its node id.
    pub fn node(&self, id: &str) -> PathBuf {
        self.node_with(id, id, "")
    }
    /// A partitioned node `id` with shard id `shard`, and `extra` appended (e.g. `tally:`).
    pub fn node_with(&self, id: &str, shard: &str, extra: &str) -> PathBuf {
        self.write(
            &format!("{id}-{shard}.yaml"),
            &format!(
                "wso2.carbon:\n  id: {id}\nsiddhi:\n  properties:\n    partitionById: true\n    shardId: {shard}\n{extra}"
            ),
        )
    }
    pub fn store(&self) -> String {
        format!("sqlite:{}", self.path("store.db").display())
    }
}

pub fn tally(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tally")).args(args).output().expect("tally runs")
}

pub fn ingest(app: &Path, config: &Path, store: &str, events: &Path) -> Output {
    tally(&["ingest", "--app", s(app), "--config", s(config), "--store", store, s(events)])
}

pub fn query(app: &Path, config: &Path, store: &str, q: &str) -> serde_json::Value {
    let out = tally(&["query", "--app", s(app), "--config", s(config), "--store", store, "--format", "json", q]);
    assert!(out.status.success(), "query failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn trade(symbol: &str, price: f64, qty: i64, ts: i64) -> String {
    format!("{{\"stream\":\"TradeStream\",\"data\":[\"{symbol}\",{price:?},{qty},{ts}]}}\n")
}

/// A name no other test run uses: PostgreSQL tables and registry rows outlive a run.
pub fn unique(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() % 1_000_000_000;
    format!("{prefix}{}x{nanos}x{}", std::process::id(), N.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

/// The PostgreSQL of `DATABASE_URL`, when it names one (scripts/test.sh starts a throwaway
/// one and sets it).
pub fn postgres_url() -> Option<String> {
    std::env::var("DATABASE_URL").ok().filter(|u| u.starts_with("postgres"))
}

/// The PostgreSQL of `DATABASE_URL` for a test that needs one; says so when there is none.
pub fn postgres_or_skip() -> Option<String> {
    let url = postgres_url();
    if url.is_none() {
        eprintln!("skipped: DATABASE_URL does not name a PostgreSQL (scripts/test.sh starts one and sets it)");
    }
    url
}

/// The MySQL/MariaDB of `MYSQL_URL`, when it names one (scripts/test.sh starts a throwaway
/// MariaDB and sets it).
pub fn mysql_url() -> Option<String> {
    std::env::var("MYSQL_URL").ok().filter(|u| u.starts_with("mysql://") || u.starts_with("mariadb://"))
}

/// The MySQL/MariaDB of `MYSQL_URL` for a test that needs one; says so when there is none.
pub fn mysql_or_skip() -> Option<String> {
    let url = mysql_url();
    if url.is_none() {
        eprintln!("skipped: MYSQL_URL does not name a MySQL/MariaDB (scripts/test.sh starts one and sets it)");
    }
    url
}

/// The stores a test runs on: a fresh SQLite file, and PostgreSQL and MySQL/MariaDB when
/// there are. Tests that run on a server give their aggregations names of their own
/// ([`unique`]).
pub fn stores(d: &Dir) -> Vec<String> {
    let mut v = vec![d.store()];
    match postgres_url() {
        Some(u) => v.push(u),
        None => eprintln!("PostgreSQL part skipped: DATABASE_URL does not name a PostgreSQL (scripts/test.sh sets it)"),
    }
    match mysql_url() {
        Some(u) => v.push(u),
        None => eprintln!("MySQL part skipped: MYSQL_URL does not name a MySQL/MariaDB (scripts/test.sh sets it)"),
    }
    v
}

pub fn is_mysql(store: &str) -> bool {
    store.starts_with("mysql://") || store.starts_with("mariadb://")
}

/// A connection to a MySQL store as an operator's client would make one, with `"`
/// quoting identifiers (the tests' SQL is written for every store).
pub fn mysql_conn(url: &str) -> mysql::Conn {
    use mysql::prelude::Queryable;
    let mut c = mysql::Conn::new(mysql::Opts::from_url(&url.replacen("mariadb://", "mysql://", 1)).unwrap()).unwrap();
    c.query_drop("SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')").unwrap();
    c
}

/// Runs SQL against the store directly (what an operator would do with psql or sqlite3).
pub fn sql(store: &str, text: &str) {
    use mysql::prelude::Queryable;
    match store.strip_prefix("sqlite:") {
        Some(path) => rusqlite::Connection::open(path).unwrap().execute_batch(text).unwrap(),
        None if is_mysql(store) => mysql_conn(store).query_drop(text).unwrap(),
        None => postgres::Client::connect(store, postgres::NoTls).unwrap().batch_execute(text).unwrap(),
    }
}

/// One integer from a query run directly against the store.
pub fn sql_i64(store: &str, text: &str) -> i64 {
    use mysql::prelude::Queryable;
    match store.strip_prefix("sqlite:") {
        Some(path) => rusqlite::Connection::open(path).unwrap().query_row(text, [], |r| r.get(0)).unwrap(),
        None if is_mysql(store) => mysql_conn(store).query_first::<i64, _>(text).unwrap().unwrap(),
        None => postgres::Client::connect(store, postgres::NoTls).unwrap().query_one(text, &[]).unwrap().get(0),
    }
}

/// Waits until the registry shows node `id` live (registered and not released).
pub fn wait_registered(store: &str, id: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let q = format!("SELECT count(*) FROM \"TALLY_SHARD_REGISTRY\" WHERE \"NODE_ID\" = '{id}' AND \"RELEASED\" = 0");
    loop {
        let exists = match store.strip_prefix("sqlite:") {
            Some(path) => {
                Path::new(path).exists()
                    && rusqlite::Connection::open(path)
                        .and_then(|c| c.query_row(&q, [], |r| r.get::<_, i64>(0)))
                        .unwrap_or(0)
                        > 0
            }
            None if is_mysql(store) => {
                use mysql::prelude::Queryable;
                mysql::Conn::new(mysql::Opts::from_url(store).unwrap())
                    .and_then(|mut c| {
                        c.query_drop("SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')")?;
                        c.query_first::<i64, _>(&q)
                    })
                    .ok()
                    .flatten()
                    .unwrap_or(0)
                    > 0
            }
            None => {
                postgres::Client::connect(store, postgres::NoTls)
                    .and_then(|mut c| c.query_one(&q, &[]).map(|r| r.get::<_, i64>(0)))
                    .unwrap_or(0)
                    > 0
            }
        };
        if exists {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "node {id} never registered in {store}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// One HTTP/1.1 request on a connection of its own: (status, head in lower case, body).
pub fn http_request(addr: &str, method: &str, path: &str, headers: &str, body: &str) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    write!(
        c,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (status, head.to_ascii_lowercase(), body.to_string())
}
