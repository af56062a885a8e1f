//! Queries end to end through the library: nodes ingest into a SQLite file, queries read it.

use super::*;
use crate::config::NodeConfig;
use crate::lang::plan::check;
use crate::node::Node;
use crate::store::{StoreAddress, open};
use std::sync::Arc;

const APP: &str = "define stream S (symbol string, price double, qty long, ts long);
@PartitionById
define aggregation A from S select symbol, sum(qty) as total, avg(price) as avgPrice, max(price) as hi, price as last
group by symbol aggregate by ts every sec, min, day;";

fn node_config(id: &str) -> NodeConfig {
    NodeConfig::parse(&format!("wso2.carbon: {{id: {id}}}\ntally: {{workers: 2, batch_events: 2}}"), "n").unwrap()
}

fn ingest(store: &str, id: &str, events: &[(&str, Option<f64>, i64, i64)]) {
    let cfg = node_config(id);
    let plan = Arc::new(check(APP, "a", &cfg).unwrap());
    let node = Node::start(plan, &cfg, Some(store), &mut |_, _| {}).unwrap();
    let mut router = node.router();
    for (sym, price, qty, ts) in events {
        let price = price.map(Value::Double).unwrap_or(Value::Null);
        router.push(0, &[Value::Str(sym.to_string()), price, Value::Long(*qty), Value::Long(*ts)]).unwrap();
    }
    router.send_all().unwrap();
    drop(router);
    node.shutdown().unwrap();
}

fn ask(store: &str, q: &str) -> Result<QueryResult> {
    let cfg = node_config("n1");
    let plan = check(APP, "a", &cfg).unwrap();
    let compiled = compile_query(&plan, q)?;
    let mut s = open(&StoreAddress::parse(store, None, None)?)?;
    run(&plan, &compiled, s.as_mut())
}

fn rows(store: &str, q: &str) -> Vec<Vec<Value>> {
    ask(store, q).unwrap_or_else(|e| panic!("{q}: {e}")).records
}

fn fixture() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", dir.path().join("s.db").display());
    ingest(
        &store,
        "n1",
        &[
            ("IBM", Some(10.0), 1, 1_000),
            ("IBM", Some(30.0), 2, 1_500),
            ("WSO2", Some(5.0), 10, 2_000),
            ("ORCL", None, 7, 61_000),
        ],
    );
    ingest(
        &store,
        "n2",
        &[("IBM", Some(20.0), 4, 1_200), ("WSO2", Some(15.0), 20, 2_000), ("IBM", Some(1.0), 8, 62_000)],
    );
    (dir, store)
}

fn s(v: &str) -> Value {
    Value::Str(v.into())
}

#[test]
fn shards_merge_sums_avgs_max_and_latest() {
    let (_d, store) = fixture();
    assert_eq!(
        rows(
            &store,
            "from A within 0L, 60000L per 'sec' select AGG_TIMESTAMP, symbol, total, avgPrice, hi, last order by AGG_TIMESTAMP, symbol"
        ),
        vec![
            vec![
                Value::Long(1000),
                s("IBM"),
                Value::Long(7),
                Value::Double(20.0),
                Value::Double(30.0),
                Value::Double(30.0)
            ],
            vec![
                Value::Long(2000),
                s("WSO2"),
                Value::Long(30),
                Value::Double(10.0),
                Value::Double(15.0),
                Value::Double(15.0)
            ],
        ]
    );
    // Same time stamp on both shards: the shard whose id sorts last wins, on every node.
    assert_eq!(
        rows(&store, "from A on symbol == 'WSO2' within 0L, 60000L per 'min' select last"),
        vec![vec![Value::Double(15.0)]]
    );
}

#[test]
fn null_inputs_and_null_ordering() {
    let (_d, store) = fixture();
    let all = "from A within 0L, 86400000L per 'min' select symbol, avgPrice";
    assert_eq!(
        rows(&store, &format!("{all} order by avgPrice")),
        vec![
            vec![s("IBM"), Value::Double(1.0)],
            vec![s("WSO2"), Value::Double(10.0)],
            vec![s("IBM"), Value::Double(20.0)],
            vec![s("ORCL"), Value::Null],
        ],
        "nulls last ascending"
    );
    assert_eq!(
        rows(&store, &format!("{all} order by avgPrice desc")),
        vec![
            vec![s("ORCL"), Value::Null],
            vec![s("IBM"), Value::Double(20.0)],
            vec![s("WSO2"), Value::Double(10.0)],
            vec![s("IBM"), Value::Double(1.0)],
        ],
        "nulls first descending"
    );
}

#[test]
fn group_by_having_limit_offset() {
    let (_d, store) = fixture();
    let q = "from A within 0L, 86400000L per 'sec' select symbol, sum(total) as t, count() as n group by symbol having t > 8 order by t desc";
    assert_eq!(
        rows(&store, q),
        vec![vec![s("WSO2"), Value::Long(30), Value::Long(1)], vec![s("IBM"), Value::Long(15), Value::Long(2)]]
    );
    assert_eq!(rows(&store, &format!("{q} limit 1")), vec![vec![s("WSO2"), Value::Long(30), Value::Long(1)]]);
    assert_eq!(rows(&store, &format!("{q} limit 1 offset 1")), vec![vec![s("IBM"), Value::Long(15), Value::Long(2)]]);
    let agg_only = "from A within 0L, 86400000L per 'day' select sum(total) as t, max(hi) as m, avg(avgPrice) as a, distinctCount(symbol) as d";
    assert_eq!(
        rows(&store, agg_only),
        vec![vec![Value::Long(52), Value::Double(30.0), Value::Double(12.625), Value::Long(3)]]
    );
    // Per day the shards merge into one row per symbol.
    assert_eq!(
        rows(&store, "from A within 0L, 86400000L per 'day' select symbol, total order by symbol"),
        vec![vec![s("IBM"), Value::Long(15)], vec![s("ORCL"), Value::Long(7)], vec![s("WSO2"), Value::Long(30)],]
    );
}

#[test]
fn query_errors_name_their_place() {
    let (_d, store) = fixture();
    for (q, needle) in [
        ("from B within 0L, 1L per 'sec'", "unknown aggregation `B` (the app defines: A)"),
        (
            "from A within 0L, 1L per 'hours'",
            "line 1, column 26: aggregation `A` has no hours duration (it has seconds, minutes, days)",
        ),
        ("from A within 0L, 1L", "needs `per"),
        ("from A per 'sec'", "needs `within"),
        ("from A within 0L, 1L per 'sec' select nope", "`nope` is not an attribute of aggregation `A`"),
        ("from A within 0L, 1L per 'sec' select median(total) as m", "unknown function `median`"),
        ("from A within 0L, 1L per 'sec' select total limit -1", "whole number"),
        ("from A within 0L, 1L per 'sec' select symbol, symbol", "used twice"),
        ("from A on total within 0L, 1L per 'sec'", "true/false"),
        ("from A within 0L, 1L per 'sec' select sum(symbol) as x", "needs a number"),
    ] {
        let e = ask(&store, q).unwrap_err().to_string();
        assert!(e.contains(needle), "{q}\n  gave: {e}");
    }
}

#[test]
fn pushdown_matches_the_full_scan() {
    let (_d, store) = fixture();
    let cfg = node_config("n1");
    let plan = check(APP, "a", &cfg).unwrap();
    let c = compile_query(&plan, "from A on symbol == 'IBM' and total > 1 within 0L, 86400000L per 'sec'").unwrap();
    assert_eq!(c.pushdown, vec![("symbol".to_string(), s("IBM"))]);
    let pushed = rows(
        &store,
        "from A on symbol == 'IBM' and total > 1 within 0L, 86400000L per 'sec' select AGG_TIMESTAMP, total",
    );
    let filtered = rows(
        &store,
        "from A on not (symbol != 'IBM') and total > 1 within 0L, 86400000L per 'sec' select AGG_TIMESTAMP, total",
    );
    assert_eq!(pushed, filtered);
    assert_eq!(pushed, vec![vec![Value::Long(1000), Value::Long(7)], vec![Value::Long(62000), Value::Long(8)]]);
}
