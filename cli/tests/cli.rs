//! End-to-end tests of the `tally` binary: real processes, a real SQLite file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use common::{Dir, SEED_APP, ingest, query, s, tally, trade};

/// Runs one `tally ingest` per (node file, events file) pair, all at the same time, and
/// checks that each succeeded.
fn ingest_at_once(app: &Path, nodes: &[(PathBuf, PathBuf)], store: &str) {
    let children: Vec<_> = nodes
        .iter()
        .map(|(n, e)| {
            Command::new(env!("CARGO_BIN_EXE_tally"))
                .args(["ingest", "--app", s(app), "--config", s(n), "--store", store, s(e)])
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

/// The seed's files: the app, two node files (`wso2-si-1`, `wso2-si-2`) and their events
/// (node 1 trades 10 + 20, node 2 trades 10 + 30, all on 2024-03-15 between 10:00 and 10:40).
fn seed_files(d: &Dir) -> (PathBuf, [(PathBuf, PathBuf); 2]) {
    let app = d.write("app.siddhi", SEED_APP);
    let e1 = d.write(
        "n1.jsonl",
        &(trade("wso2", 100.0, 10, 1_710_496_805_000) + &trade("wso2", 100.0, 20, 1_710_498_010_000)),
    );
    let e2 = d.write(
        "n2.jsonl",
        &(trade("wso2", 100.0, 10, 1_710_496_805_000) + &trade("wso2", 100.0, 30, 1_710_499_200_000)),
    );
    (app, [(d.node("wso2-si-1"), e1), (d.node("wso2-si-2"), e2)])
}

const SEED_QUERY: &str =
    "from TradeAggregation within \"2024-03-15 **:**:**\" per 'hours' select symbol, total, avgPrice";

#[test]
fn seed_two_nodes_thirty_plus_forty_is_seventy() {
    let d = Dir::new();
    let (app, [(n1, e1), (n2, e2)]) = seed_files(&d);
    for (n, e) in [(&n1, &e1), (&n2, &e2)] {
        let out = ingest(&app, n, &d.store(), e);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    for node in [&n1, &n2] {
        let answer = query(&app, node, &d.store(), SEED_QUERY);
        assert_eq!(
            answer,
            serde_json::json!({"columns": ["symbol", "total", "avgPrice"], "records": [["wso2", 70, 100.0]]})
        );
    }
    // Each node wrote only its own shard: 30 and 40.
    assert_eq!(shard_total(&d.path("store.db"), "wso2-si-1"), 30);
    assert_eq!(shard_total(&d.path("store.db"), "wso2-si-2"), 40);
}

/// The seed again, with both nodes started at the same moment on a new store file (they
/// race to create it, its tables and the WAL), a few times over.
#[test]
fn seed_two_nodes_writing_concurrently_is_seventy() {
    for round in 0..5 {
        let d = Dir::new();
        let (app, nodes) = seed_files(&d);
        let store = d.store();
        ingest_at_once(&app, &nodes, &store);
        let answer = query(&app, &nodes[1].0, &store, SEED_QUERY);
        assert_eq!(answer["records"], serde_json::json!([["wso2", 70, 100.0]]), "round {round}");
    }
}

/// The seed on PostgreSQL, both nodes writing at once. Runs when DATABASE_URL names a
/// PostgreSQL (scripts/test.sh starts a throwaway one and sets it); the aggregation gets a
/// name of its own so the run never meets tables of another.
#[test]
fn seed_on_postgres_with_both_nodes_writing_at_once() {
    let Some(url) = common::postgres_or_skip() else { return };
    seed_with_both_nodes_writing_at_once(&url);
}

/// The same on MySQL/MariaDB, when MYSQL_URL names one (scripts/test.sh starts a throwaway
/// MariaDB and sets it).
#[test]
fn seed_on_mysql_with_both_nodes_writing_at_once() {
    let Some(url) = common::mysql_or_skip() else { return };
    seed_with_both_nodes_writing_at_once(&url);
}

fn seed_with_both_nodes_writing_at_once(url: &str) {
    let url = url.to_string();
    let d = Dir::new();
    let (_, nodes) = seed_files(&d);
    let name = format!(
        "Seed{}_{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() % 1_000_000
    );
    let app = d.write("pg.siddhi", &SEED_APP.replace("TradeAggregation", &name));
    ingest_at_once(&app, &nodes, &url);
    let answer = query(&app, &nodes[0].0, &url, &SEED_QUERY.replace("TradeAggregation", &name));
    assert_eq!(answer["records"], serde_json::json!([["wso2", 70, 100.0]]));
}

/// The quantity one shard holds in the SECONDS table (the finest holds every event; a
/// coarse one only buckets rolled up, docs/rollup.md), read through the engine's own store
/// (the query language merges shards and has no way to ask for one).
fn shard_total(db: &Path, shard: &str) -> i64 {
    use tally::store::{Store, StoreAddress, open};
    let mut store: Box<dyn Store> = open(&StoreAddress::Sqlite { path: db.to_path_buf() }).unwrap();
    let cfg = tally::config::NodeConfig::parse(
        &format!("wso2.carbon: {{id: {shard}}}\nsiddhi: {{properties: {{partitionById: true}}}}"),
        "n",
    )
    .unwrap();
    let plan = tally::lang::plan::check(SEED_APP, "app", &cfg).unwrap();
    let table = tally::store::schema::TableSchema::new(
        &plan,
        &plan.aggregations[0],
        tally::time::granularity::Granularity::Seconds,
    );
    let col = table.column("AGG_SUM_quantity").unwrap();
    let shard_col = table.column("SHARD_ID").unwrap();
    store
        .scan(&table, i64::MIN, i64::MAX, &[(shard_col, tally::lang::types::Value::Str(shard.into()))])
        .unwrap()
        .iter()
        .map(|r| r[col].as_i64().unwrap())
        .sum()
}

/// Two node processes write into one SQLite file at the same time, many flushes each;
/// every event is counted once.
#[test]
fn two_nodes_writing_concurrently_lose_nothing() {
    let d = Dir::new();
    let app = d.write("app.siddhi", SEED_APP);
    let nodes = [d.node("wso2-si-1"), d.node("wso2-si-2")];
    // Flush often so that the two processes' transactions interleave.
    for n in &nodes {
        let mut f = std::fs::OpenOptions::new().append(true).open(n).unwrap();
        writeln!(f, "tally:\n  flush_interval: 1ms\n  batch_events: 512").unwrap();
    }
    let symbols = ["wso2", "ibm", "msft", "orcl", "goog"];
    let mut expected = std::collections::BTreeMap::<&str, i64>::new();
    let mut files = Vec::new();
    for (i, _) in nodes.iter().enumerate() {
        let mut text = String::new();
        for k in 0..60_000i64 {
            let sym = symbols[(k as usize + i) % symbols.len()];
            let qty = (k % 97) + 1 + i as i64;
            *expected.entry(sym).or_default() += qty;
            text.push_str(&trade(sym, 10.0 + (k % 7) as f64, qty, 1_710_460_800_000 + k * 997));
        }
        files.push(d.write(&format!("e{i}.jsonl"), &text));
    }
    // Both processes run at the same time against one file.
    let pairs: Vec<(PathBuf, PathBuf)> = nodes.iter().cloned().zip(files.iter().cloned()).collect();
    ingest_at_once(&app, &pairs, &d.store());
    let store = d.store();
    for per in ["seconds", "hours", "days", "years"] {
        let answer = query(
            &app,
            &nodes[0],
            &store,
            &format!(
                "from TradeAggregation within 0L, 4000000000000L per '{per}' select symbol, sum(total) as total group by symbol"
            ),
        );
        let got: std::collections::BTreeMap<String, i64> = answer["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r[0].as_str().unwrap().to_string(), r[1].as_i64().unwrap()))
            .collect();
        let want: std::collections::BTreeMap<String, i64> = expected.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        assert_eq!(got, want, "per {per} in {store}");
    }
}

#[test]
fn bad_input_is_reported_never_panics_and_good_events_are_kept() {
    let d = Dir::new();
    let app = d.write("app.siddhi", SEED_APP);
    let n1 = d.node("n1");
    let lines = [
        trade("wso2", 1.0, 5, 1_710_496_805_000),
        "{\"stream\":\"Nope\",\"data\":[1]}\n".to_string(),
        "{\"stream\":\"TradeStream\",\"data\":[\"wso2\",1.0,5]}\n".to_string(),
        "{\"stream\":\"TradeStream\",\"data\":[\"wso2\",\"cheap\",5,1710496805000]}\n".to_string(),
        "{\"stream\":\"TradeStream\",\"data\":[\"wso2\",1.0,5,null]}\n".to_string(),
        "{\"stream\":\"TradeStream\",\"data\":[\"wso2\",1.0,5,9223372036854775807]}\n".to_string(),
        "{\"stream\":\"TradeStream\",\"data\":[\"wso2\",1.0,5,1.5]}\n".to_string(),
        "{\"stream\": \"TradeStream\", \"data\": [\n".to_string(),
        "\u{0}\u{1}garbage\n".to_string(),
        "\n".to_string(),
        "{\"stream\":\"TradeStream\",\"event\":{\"symbol\":\"wso2\",\"price\":1.0,\"quantity\":7,\"timestamp\":1710496806000}}\n".to_string(),
    ];
    let e = d.write("e.jsonl", &lines.concat());
    let out = ingest(&app, &n1, &d.store(), &e);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "some events rejected: {err}");
    for needle in [
        "line 2: unknown stream `Nope`",
        "line 3: stream `TradeStream` has 4 attributes",
        "line 4: attribute `price` is double and cannot take \"cheap\"",
        "line 5: the time stamp `timestamp` is null",
        "line 6: the time stamp `timestamp` is 9223372036854775807, outside the supported range",
        "line 7: attribute `timestamp` is long and cannot take 1.5",
        "line 8: not valid JSON",
        "line 9: not valid JSON",
        "ingested 2 event(s), rejected 8",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    assert!(!err.contains("panicked"));
    let answer =
        query(&app, &n1, &d.store(), "from TradeAggregation within 0L, 4000000000000L per 'days' select total");
    assert_eq!(answer["records"], serde_json::json!([[12]]));

    // An app with errors: every error, with positions, and a non-zero exit.
    let bad = d.write(
        "bad.siddhi",
        "define stream S (a int, b strin);\ndefine aggregation A from T select sum(a) as s aggregate every week;\n",
    );
    let out = tally(&["check", "--app", s(&bad), "--config", s(&n1)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("line 1, column 27: unknown type `strin`"), "{err}");
    assert!(err.contains("line 2, column 27: aggregation `A` reads `T`"), "{err}");
    // Ingesting with an invalid app refuses to start and writes nothing.
    let out = ingest(&bad, &n1, &d.store(), &e);
    assert_eq!(out.status.code(), Some(1));
    let answer =
        query(&app, &n1, &d.store(), "from TradeAggregation within 0L, 4000000000000L per 'days' select total");
    assert_eq!(answer["records"], serde_json::json!([[12]]), "nothing already ingested is lost");

    // Missing files and a store that cannot be opened are errors, not panics.
    let out = ingest(&app, &n1, &d.store(), &d.path("missing.jsonl"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.jsonl"));
    let out = ingest(&app, &n1, "sqlite:/nonexistent-dir/x.db", &e);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open /nonexistent-dir/x.db"));
    let out = ingest(&app, &n1, "jdbc:mysql://h/db?useSSL=true&trustCertificateKeyStoreUrl=file:/k.jks", &e);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Java key store") && err.contains("serverSslCert=/path/to/ca.pem"), "{err}");
}

#[test]
fn a_restarted_node_merges_into_what_it_stored() {
    let d = Dir::new();
    let app = d.write("app.siddhi", SEED_APP);
    let n1 = d.node("n1");
    let e = d.write("e.jsonl", &(trade("ibm", 2.0, 3, 1_000) + &trade("ibm", 4.0, 5, 61_000)));
    for _ in 0..3 {
        assert!(ingest(&app, &n1, &d.store(), &e).status.success());
    }
    let answer = query(
        &app,
        &n1,
        &d.store(),
        "from TradeAggregation within 0L, 120000L per 'minutes' select AGG_TIMESTAMP, total, avgPrice order by AGG_TIMESTAMP desc",
    );
    assert_eq!(answer["records"], serde_json::json!([[60000, 15, 4.0], [0, 9, 2.0]]));
}

#[test]
fn query_formats_for_people_and_programs() {
    let d = Dir::new();
    let app = d.write("app.siddhi", SEED_APP);
    let n1 = d.node("n1");
    let e = d.write("e.jsonl", &trade("ibm", 2.5, 3, 1_000));
    assert!(ingest(&app, &n1, &d.store(), &e).status.success());
    let q = "from TradeAggregation within 0L, 120000L per 'seconds'";
    let table = tally(&["query", "--app", s(&app), "--config", s(&n1), "--store", &d.store(), q]);
    assert_eq!(
        String::from_utf8_lossy(&table.stdout),
        "AGG_TIMESTAMP | symbol | avgPrice | total\n--------------+--------+----------+------\n         1000 | ibm    |      2.5 |     3\n(1 row)\n"
    );
    let csv = tally(&["query", "--app", s(&app), "--config", s(&n1), "--store", &d.store(), "--format", "csv", q]);
    assert_eq!(String::from_utf8_lossy(&csv.stdout), "AGG_TIMESTAMP,symbol,avgPrice,total\n1000,ibm,2.5,3\n");
    // Querying a store that does not exist says so.
    let out =
        tally(&["query", "--app", s(&app), "--config", s(&n1), "--store", "sqlite:/tmp/definitely-not-here.db", q]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}
