//! The shard registry, migration, retention, null group keys and outages, through the
//! `tally` binary, on every store: a SQLite file, and PostgreSQL when `DATABASE_URL` names
//! one (scripts/test.sh starts a throwaway cluster and sets it).

mod common;

use common::proxy::{self, Proxy};
use common::{
    Dir, SEED_APP, ingest, is_mysql, query, s, sql_i64, stderr, stores, tally, trade, unique, wait_registered,
};
use std::io::Write;
use std::process::{Command, Stdio};

/// The seed app under an aggregation name of its own, and the query over all of it.
fn app(d: &Dir, text: &str) -> (std::path::PathBuf, String) {
    let name = unique("Agg");
    (d.write(&format!("{name}.siddhi"), &text.replace("TradeAggregation", &name)), name)
}

fn total(app: &std::path::Path, node: &std::path::Path, store: &str, agg: &str, per: &str) -> serde_json::Value {
    query(app, node, store, &format!("from {agg} within 0L, 4000000000000L per '{per}' select symbol, total"))["records"]
        .clone()
}

#[test]
fn a_changed_shard_id_is_refused_naming_the_old_one() {
    let d = Dir::new();
    for store in stores(&d) {
        let (app, agg) = app(&d, SEED_APP);
        let id = unique("node");
        let e = d.write("e.jsonl", &trade("wso2", 1.0, 30, 1_000));
        let first = d.node_with(&id, &format!("{id}-a"), "");
        let out = ingest(&app, &first, &store, &e);
        assert!(out.status.success(), "{}", stderr(&out));
        let changed = d.node_with(&id, &format!("{id}-b"), "");
        let out = ingest(&app, &changed, &store, &e);
        assert_eq!(out.status.code(), Some(1), "{store}");
        let err = stderr(&out);
        assert!(err.contains(&format!("node `{id}` used shard id `{id}-a` before")), "{store}: {err}");
        assert!(err.contains(&format!("configured with `{id}-b`")), "{err}");
        // Nothing of the refused run was written.
        assert_eq!(total(&app, &first, &store, &agg, "days"), serde_json::json!([["wso2", 30]]), "{store}");
    }
}

#[test]
fn a_second_live_node_with_a_held_shard_id_is_refused() {
    let d = Dir::new();
    for store in stores(&d) {
        let (app, agg) = app(&d, SEED_APP);
        let (id1, id2) = (unique("live"), unique("dup"));
        let n1 = d.node(&id1);
        // Node 1 stays up: it reads its events from a pipe we keep open.
        let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
            .args(["ingest", "--app", s(&app), "--config", s(&n1), "--store", &store, "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_registered(&store, &id1);
        // Node 2 claims node 1's shard id while node 1 is live.
        let n2 = d.node_with(&id2, &id1, "");
        let e = d.write("e.jsonl", &trade("wso2", 1.0, 40, 1_000));
        let out = ingest(&app, &n2, &store, &e);
        assert_eq!(out.status.code(), Some(1), "{store}");
        let err = stderr(&out);
        assert!(err.contains(&format!("shard id `{id1}` is held by a live node: `{id1}`")), "{store}: {err}");
        // Node 1 finishes normally and releases its registration.
        child.stdin.as_mut().unwrap().write_all(trade("wso2", 1.0, 30, 1_000).as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(total(&app, &n1, &store, &agg, "seconds"), serde_json::json!([["wso2", 30]]));
        // Once node 1 is gone, node 1's own restart is welcome (same id, same shard).
        let out = ingest(&app, &n1, &store, &e);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(total(&app, &n1, &store, &agg, "seconds"), serde_json::json!([["wso2", 70]]));
    }
}

#[test]
fn migrate_adds_the_shard_id_and_keeps_every_row() {
    let d = Dir::new();
    for store in stores(&d) {
        let plain_app = SEED_APP.replace("@PartitionById\n", "");
        let name = unique("Mig");
        let old_app = d.write("old.siddhi", &plain_app.replace("TradeAggregation", &name));
        let new_app = d.write("new.siddhi", &SEED_APP.replace("TradeAggregation", &name));
        let (id1, id2) = (unique("m1"), unique("m2"));
        let n1 = d.node(&id1);
        let n2 = d.node(&id2);
        // Tables made before partitioning was switched on: no SHARD_ID.
        let e1 = d.write("e1.jsonl", &(trade("wso2", 100.0, 10, 1_000) + &trade("wso2", 100.0, 20, 3_601_000)));
        let unpartitioned = d.write("old.yaml", &format!("wso2.carbon:\n  id: {id1}\n"));
        let out = ingest(&old_app, &unpartitioned, &store, &e1);
        assert!(out.status.success(), "{}", stderr(&out));

        // The partitioned app refuses them, naming the tables and the fix.
        let e2 = d.write("e2.jsonl", &(trade("wso2", 100.0, 10, 1_000) + &trade("wso2", 100.0, 30, 7_201_000)));
        let out = ingest(&new_app, &n2, &store, &e2);
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(err.contains(&format!("{name}_SECONDS")) && err.contains(&format!("{name}_YEARS")), "{err}");
        assert!(err.contains("tally migrate --app"), "{err}");

        let out = tally(&["migrate", "--app", s(&new_app), "--config", s(&n1), "--store", &store]);
        assert!(out.status.success(), "{}", stderr(&out));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains(&format!("{name}_SECONDS")) && said.contains(&format!("SHARD_ID = {id1}")), "{said}");
        // Twice is harmless.
        let out = tally(&["migrate", "--app", s(&new_app), "--config", s(&n1), "--store", &store]);
        assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to migrate"), "{}", stderr(&out));

        let out = ingest(&new_app, &n2, &store, &e2);
        assert!(out.status.success(), "{}", stderr(&out));
        for per in ["seconds", "hours", "days", "years"] {
            let got = query(
                &new_app,
                &n2,
                &store,
                &format!("from {name} within 0L, 4000000000000L per '{per}' select sum(total) as t"),
            );
            assert_eq!(got["records"], serde_json::json!([[70]]), "{per} on {store}");
        }
        let int = if is_mysql(&store) { "SIGNED" } else { "BIGINT" };
        let q = format!(
            "SELECT CAST(sum(\"AGG_SUM_quantity\") AS {int}) FROM \"{name}_DAYS\" WHERE \"SHARD_ID\" = '{id1}'"
        );
        assert_eq!(sql_i64(&store, &q), 30, "the old rows carry node 1's shard id");
        // The key now holds the shard: node 1 writing the same bucket again merges.
        let out = ingest(&new_app, &n1, &store, &e1);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(sql_i64(&store, &q), 60);
        let q = format!("SELECT count(*) FROM \"{name}_DAYS\" WHERE \"SHARD_ID\" = '{id1}'");
        assert_eq!(sql_i64(&store, &q), 1);
    }
}

#[test]
fn purge_deletes_old_buckets_of_its_own_shard_only() {
    let d = Dir::new();
    for store in stores(&d) {
        let text = SEED_APP.replace(
            "@PartitionById\n",
            "@PartitionById\n@purge(enable='true', interval='10 sec', @retentionPeriod(sec='120 sec', min='120 min', hours='25 hours', days='32 days', months='all', years='all'))\n",
        );
        let (app, agg) = app(&d, &text);
        let (id1, id2) = (unique("p1"), unique("p2"));
        // An hour's roll-up delay: what is older than the newest event by more than an
        // hour is rolled up into the coarse durations; the rest is answered from seconds.
        let delay = "tally:\n  rollup_delay: 60m\n";
        let (n1, n2) = (d.node_with(&id1, &id1, delay), d.node_with(&id2, &id2, delay));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        let old = now - 40 * 86_400_000; // older than every finite retention
        let mid = now - 600_000; // older than the seconds' retention, but not rolled up
        let recent = now - 30_000; // younger than every retention
        let events = trade("wso2", 1.0, 5, old) + &trade("wso2", 1.0, 11, mid) + &trade("wso2", 1.0, 7, recent);
        for n in [&n1, &n2] {
            let out = ingest(&app, n, &store, &d.write("e.jsonl", &events));
            assert!(out.status.success(), "{}", stderr(&out));
        }
        let rows = |table: &str, shard: &str| {
            sql_i64(&store, &format!("SELECT count(*) FROM \"{agg}_{table}\" WHERE \"SHARD_ID\" = '{shard}'"))
        };
        assert_eq!((rows("SECONDS", &id1), rows("MINUTES", &id1), rows("DAYS", &id1)), (3, 1, 1), "{store}");
        let kept = (rows("MONTHS", &id1), rows("YEARS", &id1));

        let out = tally(&["purge", "--app", s(&app), "--config", s(&n1), "--store", &store]);
        assert!(out.status.success(), "{}", stderr(&out));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains(&format!("purged 1 row(s) of shard {id1} from {agg}_SECONDS")), "{said}");
        assert_eq!(rows("SECONDS", &id1), 2, "{store}: the old second is gone; the middle one is not rolled up yet");
        for table in ["MINUTES", "HOURS", "DAYS"] {
            assert_eq!(rows(table, &id1), 0, "{table}: node 1's old bucket is gone");
            assert_eq!(rows(table, &id2), 1, "{table}: node 2's rows are node 2's to purge");
        }
        assert_eq!(rows("SECONDS", &id2), 3);
        assert_eq!((rows("MONTHS", &id1), rows("YEARS", &id1)), kept, "months and years are kept for ever");
        let all = query(
            &app,
            &n1,
            &store,
            &format!("from {agg} within 0L, 4000000000000L per 'days' select sum(total) as t"),
        );
        assert_eq!(all["records"], serde_json::json!([[11 + 7 + 5 + 11 + 7]]), "{store}");
    }
}

#[test]
fn null_group_by_values_merge_where_the_store_can_key_on_null() {
    let d = Dir::new();
    for store in stores(&d) {
        let (app, agg) = app(&d, SEED_APP);
        let n1 = d.node(&unique("nul"));
        let e = d.write(
            "e.jsonl",
            "{\"stream\":\"TradeStream\",\"data\":[null,2.0,3,1000]}\n{\"stream\":\"TradeStream\",\"data\":[\"x\",2.0,1,1000]}\n",
        );
        for _ in 0..2 {
            let out = ingest(&app, &n1, &store, &e);
            if is_mysql(&store) {
                // MySQL key columns cannot hold null (SI's tables key on the group-by
                // columns): the event is refused when it arrives, the others are kept.
                assert!(!out.status.success());
                assert!(stderr(&out).contains("line 1: the group-by attribute `symbol` is null"), "{}", stderr(&out));
            } else {
                assert!(out.status.success(), "{store}: {}", stderr(&out));
            }
        }
        let got = query(
            &app,
            &n1,
            &store,
            &format!("from {agg} within 0L, 4000000000000L per 'seconds' select symbol, total order by total"),
        );
        let want =
            if is_mysql(&store) { serde_json::json!([["x", 2]]) } else { serde_json::json!([["x", 2], [null, 6]]) };
        assert_eq!(got["records"], want, "{store}");
    }
}

/// Strings with quotes and backslashes keep every byte on every store (a small PostgreSQL
/// flush writes them as SQL literals).
#[test]
fn strings_with_quotes_and_backslashes_are_stored_as_sent() {
    let d = Dir::new();
    for store in stores(&d) {
        let (app, agg) = app(&d, SEED_APP);
        let n1 = d.node(&unique("quo"));
        let odd = r#"it's \ "odd" \' -- ;"#;
        let line = serde_json::json!({"stream": "TradeStream", "data": [odd, 2.0, 3, 1000]}).to_string();
        let e = d.write("q.jsonl", &format!("{line}\n{line}\n"));
        let out = ingest(&app, &n1, &store, &e);
        assert!(out.status.success(), "{store}: {}", stderr(&out));
        let got = query(
            &app,
            &n1,
            &store,
            &format!("from {agg} within 0L, 4000000000000L per 'seconds' select symbol, total"),
        );
        assert_eq!(got["records"], serde_json::json!([[odd, 6]]), "{store}");
    }
}

/// Every kind of aggregate merges into the row an earlier flush stored (sums and counts
/// add, min and max combine, distinct sets unite, the latest value goes by event time), the
/// same on every store. On PostgreSQL 15+ this is the `MERGE` path of a shard's rows.
#[test]
fn every_aggregate_kind_merges_into_a_stored_row_on_every_store() {
    let d = Dir::new();
    for store in stores(&d) {
        let name = unique("Kinds");
        let app = d.write(
            &format!("{name}.siddhi"),
            &format!(
                "define stream TradeStream (symbol string, price double, quantity long, timestamp long);
                 @PartitionById
                 define aggregation {name} from TradeStream
                 select symbol, sum(quantity) as total, count() as trades, avg(price) as avgPrice,
                        min(price) as lo, max(price) as hi, distinctCount(quantity) as kinds, price as last
                 group by symbol aggregate by timestamp every sec ... min;"
            ),
        );
        let n1 = d.node(&unique("kinds"));
        // The second ingest's events are older than the first's newest: `last` stays 5.0.
        let first = d.write("k1.jsonl", &(trade("x", 2.0, 1, 1000) + &trade("x", 5.0, 2, 1500)));
        let second = d.write("k2.jsonl", &(trade("x", 1.0, 2, 1200) + &trade("x", 9.0, 3, 1400)));
        for e in [&first, &second] {
            let out = ingest(&app, &n1, &store, e);
            assert!(out.status.success(), "{store}: {}", stderr(&out));
        }
        for per in ["seconds", "minutes"] {
            let got = query(
                &app,
                &n1,
                &store,
                &format!(
                    "from {name} within 0L, 4000000000000L per '{per}' select symbol, total, trades, avgPrice, lo, hi, kinds, last"
                ),
            );
            assert_eq!(got["records"], serde_json::json!([["x", 8, 4, 4.25, 1.0, 9.0, 3, 5.0]]), "{store} per {per}");
        }
    }
}

/// The node starts while PostgreSQL is unreachable, waits with a log line, and goes on when
/// it is back; then the database drops every connection mid-run, and the last flush waits
/// and retries: every event is counted once.
#[test]
fn a_node_rides_out_a_postgres_outage() {
    let Some(url) = common::postgres_or_skip() else { return };
    rides_out_an_outage(&url, "postgres");
}

/// The same on MySQL/MariaDB: a lost connection mid-flush (the proxy drops it) is retried
/// on a new one, with the flush number, so nothing is lost or counted twice.
#[test]
fn a_node_rides_out_a_mysql_outage() {
    let Some(url) = common::mysql_or_skip() else { return };
    rides_out_an_outage(&url, "mysql");
}

fn rides_out_an_outage(url: &str, backend: &str) {
    let url = url.to_string();
    let d = Dir::new();
    let (app, agg) = app(&d, SEED_APP);
    let p = Proxy::start(proxy::upstream(&url), false);
    let via = p.url(&url);
    let id = unique("out");
    let n1 = d.node_with(&id, &id, "tally:\n  flush_interval: 1ms\n  store_wait: 60s\n");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["ingest", "--app", s(&app), "--config", s(&n1), "--store", &via, "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(child.try_wait().unwrap().is_none(), "the node waits instead of exiting");
    p.set_up(true);
    wait_registered(&url, &id);
    let mut input = child.stdin.take().unwrap();
    let mut expected = 0;
    for k in 0..5_000i64 {
        input.write_all(trade("wso2", 1.0, k % 10 + 1, 1_000 + k * 1_000).as_bytes()).unwrap();
        expected += k % 10 + 1;
    }
    input.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    p.cut();
    for k in 5_000..10_000i64 {
        input.write_all(trade("wso2", 1.0, k % 10 + 1, 1_000 + k * 1_000).as_bytes()).unwrap();
        expected += k % 10 + 1;
    }
    drop(input);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    p.set_up(true);
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("store not available") && err.contains("retrying in"), "{err}");
    assert!(err.contains(&format!("{backend} store: cannot connect to")), "the log line says what failed: {err}");
    assert!(err.contains("cannot reconnect to"), "the outage mid-run was seen and ridden out: {err}");
    let got =
        query(&app, &n1, &url, &format!("from {agg} within 0L, 4000000000000L per 'hours' select sum(total) as t"));
    assert_eq!(got["records"], serde_json::json!([[expected]]));
}

/// On PostgreSQL, rows of buckets newer than any the node's shard holds go straight into
/// the table by COPY. If such a row exists after all (written behind the node's back), the
/// flush is not lost or double-merged: it reads the table again and merges. (Every flush
/// here carries PAD rows of another symbol in old buckets, so that it takes the COPY path
/// of large flushes, not the literal upserts of small ones.)
#[test]
fn postgres_merges_a_row_that_appeared_behind_the_nodes_back() {
    let Some(url) = common::postgres_or_skip() else { return };
    merges_a_row_that_appeared_behind_the_nodes_back(&url);
}

/// The same on MySQL, where the new rows go by LOAD DATA LOCAL INFILE: the server turns
/// the duplicate key into a warning, which the flush must catch and answer by merging.
#[test]
fn mysql_merges_a_row_that_appeared_behind_the_nodes_back() {
    let Some(url) = common::mysql_or_skip() else { return };
    merges_a_row_that_appeared_behind_the_nodes_back(&url);
}

fn merges_a_row_that_appeared_behind_the_nodes_back(url: &str) {
    use tally::lang::types::Value;
    use tally::store::{FlushWrite, TableWrite};
    let url = url.to_string();
    let PgSeconds { id, t, mut store, claim, seq } = PgSeconds::new(&url, "wm");
    let row_of = |symbol: &str, bucket: i64, qty: i64| t.row(&id, Some(symbol), bucket, qty);
    let row = |bucket: i64, qty: i64| row_of("wso2", bucket, qty);
    let write = |store: &mut Box<dyn tally::store::Store>, seq: i64, mut rows: Vec<Vec<Value>>| {
        rows.extend((0..PAD as i64).map(|b| row_of("pad", b, 1)));
        let w = FlushWrite {
            claim: &claim,
            flush_seq: seq,
            tables: vec![TableWrite { table: &t, rows: &rows }],
            marks: &[],
            journal: &[],
            producers: &[],
        };
        store.write(&w).unwrap()
    };
    write(&mut store, seq + 1, vec![row(1_000, 30)]);
    // Behind the node's back: a row of its shard in a newer bucket.
    let cols: Vec<String> = t.columns.iter().map(|c| format!("\"{}\"", c.name)).collect();
    let values: Vec<String> = row(5_000, 7)
        .iter()
        .map(|v| match v {
            Value::Str(s) => format!("'{s}'"),
            other => format!("{}", other.as_f64().unwrap()),
        })
        .collect();
    common::sql(&url, &format!("INSERT INTO \"{}\" ({}) VALUES ({})", t.name, cols.join(", "), values.join(", ")));
    write(&mut store, seq + 2, vec![row(5_000, 40), row(9_000, 1)]);
    let q = |bucket: i64| {
        sql_i64(
            &url,
            &format!(
                "SELECT \"AGG_SUM_quantity\" FROM \"{}\" WHERE \"AGG_TIMESTAMP\" = {bucket} AND \"symbol\" = 'wso2'",
                t.name
            ),
        )
    };
    assert_eq!((q(1_000), q(5_000), q(9_000)), (30, 47, 1));
    // The next flush of a newer bucket goes straight in again.
    write(&mut store, seq + 3, vec![row(13_000, 2), row(9_000, 1)]);
    assert_eq!((q(9_000), q(13_000)), (2, 2));
    let pad = sql_i64(
        &url,
        &format!(
            "SELECT CAST(sum(\"AGG_SUM_quantity\") AS {}) FROM \"{}\" WHERE \"symbol\" = 'pad'",
            if is_mysql(&url) { "SIGNED" } else { "BIGINT" },
            t.name
        ),
    );
    assert_eq!(pad, 3 * PAD as i64, "the old buckets were merged into, three times");
    store.release(&claim).unwrap();
}

/// A registered writer of a new seed SECONDS table on PostgreSQL, for tests that write
/// flushes to the store directly.
struct PgSeconds {
    id: String,
    t: tally::store::schema::TableSchema,
    store: Box<dyn tally::store::Store>,
    claim: tally::store::Claim,
    /// The last flush number the node applied.
    seq: i64,
}

impl PgSeconds {
    fn new(url: &str, prefix: &str) -> PgSeconds {
        let id = unique(prefix);
        let cfg = tally::config::NodeConfig::parse(&format!("wso2.carbon: {{id: {id}}}"), "n").unwrap();
        let name = unique(&prefix.to_uppercase());
        let plan = tally::lang::plan::check(&SEED_APP.replace("TradeAggregation", &name), "a", &cfg).unwrap();
        let t = tally::store::schema::TableSchema::new(
            &plan,
            &plan.aggregations[0],
            tally::time::granularity::Granularity::Seconds,
        );
        let mut store = tally::store::open(&tally::store::StoreAddress::parse(url, None, None).unwrap()).unwrap();
        store.prepare(std::slice::from_ref(&t)).unwrap();
        let claim = tally::store::Claim::new(Some(&id), Some(&id));
        let seq = store.register(&claim).unwrap();
        PgSeconds { id, t, store, claim, seq }
    }
}

/// A row of a seed table: `symbol` (null when `None`), quantity `qty`, counts 1, prices 1.
trait SeedRow {
    fn row(&self, shard: &str, symbol: Option<&str>, bucket: i64, qty: i64) -> Vec<tally::lang::types::Value>;
}

impl SeedRow for tally::store::schema::TableSchema {
    fn row(&self, shard: &str, symbol: Option<&str>, bucket: i64, qty: i64) -> Vec<tally::lang::types::Value> {
        use tally::lang::types::Value;
        self.columns
            .iter()
            .map(|c| match c.name.as_str() {
                "AGG_TIMESTAMP" => Value::Long(bucket),
                "SHARD_ID" => Value::Str(shard.to_string()),
                "symbol" => symbol.map(|s| Value::Str(s.into())).unwrap_or(Value::Null),
                "AGG_SUM_quantity" => Value::Long(qty),
                n if n.starts_with("AGG_COUNT") => Value::Long(1),
                _ => Value::Double(1.0),
            })
            .collect()
    }
}

/// Enough rows of old buckets for a flush to take PostgreSQL's COPY path.
const PAD: usize = tally::store::postgres::MEDIUM_FLUSH_ROWS + 1;

/// A medium flush on PostgreSQL (more rows than a literal upsert takes, fewer than COPY
/// is worth) goes as one statement with an array per column: new rows, existing rows
/// (merged, twice), null group-by values (merged by ON CONFLICT, not MERGE), quotes and
/// backslashes in strings.
#[test]
fn postgres_merges_a_medium_flush_sent_as_arrays() {
    use tally::lang::types::Value;
    use tally::store::{FlushWrite, TableWrite};
    let Some(url) = common::postgres_or_skip() else { return };
    let PgSeconds { id, t, mut store, claim, seq } = PgSeconds::new(&url, "arr");
    let row_of = |symbol: Option<&str>, bucket: i64, qty: i64| t.row(&id, symbol, bucket, qty);
    let n = tally::store::postgres::SMALL_FLUSH_ROWS + 200;
    let rows = |with_null: bool| -> Vec<Vec<Value>> {
        let mut r: Vec<Vec<Value>> = (0..n as i64).map(|b| row_of(Some("it's \\ wso2"), b * 1000, 2)).collect();
        if with_null {
            r.push(row_of(None, 0, 5));
        }
        r
    };
    for (i, with_null) in [false, false, true, true].into_iter().enumerate() {
        let rs = rows(with_null);
        let w = FlushWrite {
            claim: &claim,
            flush_seq: seq + 1 + i as i64,
            tables: vec![TableWrite { table: &t, rows: &rs }],
            marks: &[],
            journal: &[],
            producers: &[],
        };
        store.write(&w).unwrap();
    }
    let total = |cond: &str| {
        sql_i64(
            &url,
            &format!("SELECT coalesce(sum(\"AGG_SUM_quantity\"), 0)::bigint FROM \"{}\" WHERE {cond}", t.name),
        )
    };
    assert_eq!(total("\"symbol\" = 'it''s \\ wso2'"), 4 * 2 * n as i64, "new, then merged three times");
    assert_eq!(total("\"symbol\" IS NULL"), 10, "the null key merged into one row");
    assert_eq!(sql_i64(&url, &format!("SELECT count(*) FROM \"{}\"", t.name)), n as i64 + 1);
    store.release(&claim).unwrap();
}

/// A PostgreSQL error reaches the user with the server's message and SQLSTATE, at once when
/// waiting cannot help.
#[test]
fn mysql_errors_carry_the_servers_number_sqlstate_and_message() {
    let Some(url) = common::mysql_or_skip() else { return };
    let d = Dir::new();
    let (app, _) = app(&d, SEED_APP);
    let n1 = d.node(&unique("err"));
    let e = d.write("e.jsonl", &trade("wso2", 1.0, 1, 1_000));
    // The test server's user may use its own database only.
    let (base, _) = url.rsplit_once('/').unwrap();
    let started = std::time::Instant::now();
    let out = ingest(&app, &n1, &format!("{base}/no_such_database"), &e);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("mysql store: cannot connect to") && err.contains("ERROR 1044 (42000): Access denied"),
        "{err}"
    );
    assert!(err.contains("(SQLSTATE 42000)"), "{err}");
    assert!(!err.contains("retrying"), "a refused database is not waited for: {err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    // A latest value that does not fit SI's VARCHAR(254): the event is refused on arrival,
    // naming the line and the attribute, and the events around it are counted (a flush
    // that met it would fail every time, holding up everything else).
    let latest = SEED_APP
        .replace("sum(quantity) as total", "sum(quantity) as total, note")
        .replace("timestamp long)", "timestamp long, note string)");
    let (app, agg2) = self::app(&d, &latest);
    let long = "x".repeat(300);
    let line = |note: &str| format!("{{\"stream\":\"TradeStream\",\"data\":[\"wso2\",1.0,5,1000,\"{note}\"]}}\n");
    let e = d.write("long.jsonl", &format!("{}{}{}", line("a"), line(&long), line("b")));
    let out = ingest(&app, &n1, &url, &e);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "some events were refused: {err}");
    assert!(
        err.contains(&format!(
            "long.jsonl: line 2: `note` would be 300 characters long, and aggregation `{agg2}` is kept in MySQL/MariaDB"
        )),
        "{err}"
    );
    assert!(err.contains("ingested 2 event(s), rejected 1"), "{err}");
    let q = format!("SELECT \"AGG_SUM_quantity\", \"note\" FROM \"{agg2}_SECONDS\"");
    let row: Option<(i64, String)> = mysql::prelude::Queryable::query_first(&mut common::mysql_conn(&url), q).unwrap();
    assert_eq!(row, Some((10, "b".to_string())), "the two events that fit, the later note kept");
}

#[test]
fn postgres_errors_carry_the_servers_message_and_sqlstate() {
    let Some(url) = common::postgres_or_skip() else { return };
    let d = Dir::new();
    let (app, _) = app(&d, SEED_APP);
    let n1 = d.node(&unique("err"));
    let e = d.write("e.jsonl", &trade("wso2", 1.0, 1, 1_000));
    let (base, _) = url.rsplit_once('/').unwrap();
    let started = std::time::Instant::now();
    let out = ingest(&app, &n1, &format!("{base}/no_such_database"), &e);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("database \"no_such_database\" does not exist (SQLSTATE 3D000)"), "{err}");
    assert!(!err.contains("retrying"), "a missing database is not waited for: {err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}
