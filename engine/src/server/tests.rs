//! Deterministic races of exactly-once delivery (docs/delivery.md): two nodes in this
//! process on one store (SQLite, PostgreSQL when `DATABASE_URL` names one, MySQL/MariaDB when
//! `MYSQL_URL` does), a client of protocol version 2, and a fault point
//! ([`crate::node::fault`]) that holds one node before or after its store commits. Each
//! test would count a batch twice without the producers' record.

use super::client::Client;
use super::protocol::Reply;
use super::{Notice, Server};
use crate::config::NodeConfig;
use crate::error::Error;
use crate::ingest::wire::BatchBuilder;
use crate::lang::types::{AttrType, Value};
use crate::node::fault::{self, Point};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One store of a test: its address, and the names that keep this run's rows, nodes and
/// producers apart from other runs' in a PostgreSQL that outlives them.
struct Store {
    url: String,
    tag: String,
}

impl Store {
    fn name(&self, base: &str) -> String {
        format!("{base}_{}", self.tag)
    }

    /// Retention off: the events are of 1970, which Siddhi's default retention (seconds:
    /// 120 s) would purge at the node's purge pass, a race with the test's own queries.
    fn app(&self) -> String {
        format!(
            "define stream S (symbol string, qty long, ts long);
             @purge(enable='false')
             define aggregation {} from S select symbol, sum(qty) as q group by symbol aggregate by ts every sec;",
            self.name("A")
        )
    }

    /// What the shard registry decides when a node's heartbeat has stopped for the lease
    /// (it was cut off, or killed on another host): the node is presumed dead.
    fn presume_dead(&self, node_id: &str) {
        let text = "UPDATE \"TALLY_SHARD_REGISTRY\" SET \"RELEASED\" = 1 WHERE \"NODE_ID\" = ";
        let n = match self.url.strip_prefix("sqlite:") {
            Some(path) => rusqlite::Connection::open(path).unwrap().execute(&format!("{text}?1"), [node_id]).unwrap(),
            None if self.url.starts_with("mysql") => {
                use mysql::prelude::Queryable;
                let mut c = mysql::Conn::new(mysql::Opts::from_url(&self.url).unwrap()).unwrap();
                c.query_drop("SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')").unwrap();
                c.exec_drop(format!("{text}?"), (node_id,)).unwrap();
                c.affected_rows() as usize
            }
            None => postgres::Client::connect(&self.url, postgres::NoTls)
                .unwrap()
                .execute(&format!("{text}$1"), &[&node_id])
                .unwrap() as usize,
        };
        assert_eq!(n, 1);
    }

    /// What the heartbeat does to node `node_id`'s registry row (an update of it), from a
    /// connection of its own; `Err` when the store refused it.
    fn beat(url: &str, node_id: &str) -> std::result::Result<(), String> {
        let text = "UPDATE \"TALLY_SHARD_REGISTRY\" SET \"HEARTBEAT_MS\" = \"HEARTBEAT_MS\" + 1 WHERE \"NODE_ID\" = ";
        if url.starts_with("mysql") {
            use mysql::prelude::Queryable;
            let mut c = mysql::Conn::new(mysql::Opts::from_url(url).unwrap()).map_err(|e| e.to_string())?;
            c.query_drop("SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')").map_err(|e| e.to_string())?;
            c.exec_drop(format!("{text}?"), (node_id,)).map_err(|e| e.to_string())
        } else {
            let mut c = postgres::Client::connect(url, postgres::NoTls).map_err(|e| e.to_string())?;
            c.execute(&format!("{text}$1"), &[&node_id]).map(|_| ()).map_err(|e| e.to_string())
        }
    }
}

/// A fresh SQLite file, PostgreSQL when `DATABASE_URL` names one, MySQL when `MYSQL_URL` does.
fn stores(dir: &tempfile::TempDir, test: &str) -> Vec<Store> {
    let tag = format!("{test}_{}_{}", std::process::id(), crate::time::clock::now_ms());
    let mut v = vec![Store { url: format!("sqlite:{}", dir.path().join("s.db").display()), tag: tag.clone() }];
    if let Ok(url) = std::env::var("DATABASE_URL")
        && url.starts_with("postgres")
    {
        v.push(Store { url, tag: tag.clone() });
    }
    if let Ok(url) = std::env::var("MYSQL_URL")
        && url.starts_with("mysql")
    {
        v.push(Store { url, tag });
    }
    v
}

struct Node {
    server: Server,
    notices: Arc<Mutex<Vec<String>>>,
    cfg: NodeConfig,
}

fn start(node_id: &str, store: &Store) -> Node {
    let url = &store.url;
    let id = store.name(node_id);
    let cfg = NodeConfig::parse(&format!("wso2.carbon: {{id: {id}}}\ntally: {{workers: 2}}"), "n").unwrap();
    let plan = Arc::new(crate::lang::plan::check(&store.app(), "t", &cfg).unwrap());
    let notices = Arc::new(Mutex::new(Vec::new()));
    let n = notices.clone();
    let report = Arc::new(move |notice: Notice| {
        let text = match notice {
            Notice::Fenced(e) => format!("fenced: {e}"),
            other => format!("{other:?}"),
        };
        n.lock().unwrap().push(text);
    });
    let server =
        Server::start(plan, &cfg, Some(url), Some("127.0.0.1:0"), Some("127.0.0.1:0"), &mut |_, _| {}, report).unwrap();
    Node { server, notices, cfg }
}

fn batch(qty: &[i64]) -> Vec<u8> {
    let mut b = BatchBuilder::new(&[AttrType::String, AttrType::Long, AttrType::Long]);
    for (i, q) in qty.iter().enumerate() {
        b.push_values(&[Value::Str("wso2".into()), Value::Long(*q), Value::Long(1_000 + i as i64)]);
    }
    b.finish()
}

fn send(c: &mut Client, seq: u64, qty: &[i64]) {
    c.send_numbered(seq, "S", &batch(qty)).unwrap();
    c.flush().unwrap();
}

/// The total quantity in the store, all shards merged, as a query answers it.
fn total(cfg: &NodeConfig, store: &Store) -> i64 {
    let plan = crate::lang::plan::check(&store.app(), "t", cfg).unwrap();
    let text = format!("from {} within 0L, 100000000000L per 'seconds' select symbol, q", store.name("A"));
    let r = crate::query::run_on_store(&plan, cfg, Some(&store.url), &text).unwrap();
    let col = r.columns.iter().position(|c| c == "q").unwrap();
    r.records.iter().map(|row| row[col].as_i64().unwrap()).sum()
}

fn held(r: crate::error::Result<Client>) -> bool {
    matches!(r, Err(Error::ProducerHeld(_)))
}

/// Connects to `node` for `producer`, retrying while another node holds it.
fn connect_when_free(node: &Node, producer: &str) -> Client {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        match Client::connect_producer(node.server.ingest_addr(), None, producer) {
            Ok(c) => return c,
            Err(Error::ProducerHeld(_)) if Instant::now() < until => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn commit_then_die_a_resent_batch_is_answered_duplicate_and_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    for st in stores(&dir, "commit_then_") {
        commit_then_die_a_resent_batch_is_answered_duplicate_and_counted_once_on(&st);
    }
}

fn commit_then_die_a_resent_batch_is_answered_duplicate_and_counted_once_on(st: &Store) {
    let (a, b) = (start("ctd-a", st), start("ctd-b", st));
    let gate = fault::hold(&st.name("ctd-a"), Point::AfterCommit);
    let mut c = Client::connect_producer(a.server.ingest_addr(), None, &st.name("ctd")).unwrap();
    send(&mut c, 1, &[5]);
    assert!(gate.reached(1, Duration::from_secs(20)), "node a committed the batch");
    assert_eq!(total(&a.cfg, st), 5);
    // The client never reads the ACK: it gives up on node a.
    drop(c);
    assert!(
        held(Client::connect_producer(b.server.ingest_addr(), None, &st.name("ctd"))),
        "a is live and holds the producer"
    );
    st.presume_dead(&st.name("ctd-a"));
    let mut c = Client::connect_producer(b.server.ingest_addr(), None, &st.name("ctd")).unwrap();
    send(&mut c, 1, &[5]);
    send(&mut c, 2, &[7]);
    assert_eq!(c.recv().unwrap(), Reply::Duplicate { batch_id: 1, events: 1 });
    assert_eq!(c.recv().unwrap(), Reply::Ack { batch_id: 2, events: 1 });
    assert_eq!(total(&b.cfg, st), 12, "the resent batch once, the new one once");
    gate.open();
    drop(c);
    b.server.shutdown().unwrap();
    a.server.shutdown().unwrap();
    assert_eq!(total(&a.cfg, st), 12);
}

#[test]
fn a_slow_node_keeps_its_producer_until_it_commits_and_the_resend_is_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    for st in stores(&dir, "a_slow_node_") {
        a_slow_node_keeps_its_producer_until_it_commits_and_the_resend_is_a_duplicate_on(&st);
    }
}

fn a_slow_node_keeps_its_producer_until_it_commits_and_the_resend_is_a_duplicate_on(st: &Store) {
    let (a, b) = (start("slow-a", st), start("slow-b", st));
    let gate = fault::hold(&st.name("slow-a"), Point::BeforeCommit);
    let mut c = Client::connect_producer(a.server.ingest_addr(), None, &st.name("slow")).unwrap();
    send(&mut c, 1, &[5]);
    assert!(gate.reached(1, Duration::from_secs(20)), "node a aggregated the batch and holds it uncommitted");
    drop(c);
    // The client resends elsewhere while a may still commit: refused, not counted twice.
    assert!(held(Client::connect_producer(b.server.ingest_addr(), None, &st.name("slow"))));
    assert_eq!(total(&b.cfg, st), 0);
    gate.open();
    // a commits, then releases the producer; b then knows the batch is in.
    let mut c = connect_when_free(&b, &st.name("slow"));
    send(&mut c, 1, &[5]);
    assert_eq!(c.recv().unwrap(), Reply::Duplicate { batch_id: 1, events: 1 });
    assert_eq!(total(&b.cfg, st), 5);
    drop(c);
    a.server.shutdown().unwrap();
    b.server.shutdown().unwrap();
}

/// A node's flush must not hold its registry row for the whole transaction: the heartbeat
/// updates that row, and a node whose flushes keep being cut off (a store restarting again
/// and again, found by `--chaos store-restart` on MySQL) stopped beating for the lease and
/// lost its producers while alive. PostgreSQL and MySQL (SQLite has one writer at a time).
#[test]
fn a_flush_in_its_transaction_does_not_hold_up_the_heartbeat() {
    let dir = tempfile::tempdir().unwrap();
    for st in stores(&dir, "a_flush_in_i").iter().filter(|s| !s.url.starts_with("sqlite:")) {
        a_flush_in_its_transaction_does_not_hold_up_the_heartbeat_on(st);
    }
}

fn a_flush_in_its_transaction_does_not_hold_up_the_heartbeat_on(st: &Store) {
    let a = start("beat-a", st);
    let gate = fault::hold(&st.name("beat-a"), Point::InTransaction);
    let mut c = Client::connect_producer(a.server.ingest_addr(), None, &st.name("beat")).unwrap();
    send(&mut c, 1, &[5]);
    assert!(gate.reached(1, Duration::from_secs(20)), "node a's flush wrote its rows and has not committed");
    let (url, node) = (st.url.clone(), st.name("beat-a"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(Store::beat(&url, &node)));
    let beat = rx.recv_timeout(Duration::from_secs(5));
    gate.open();
    assert_eq!(beat, Ok(Ok(())), "the heartbeat waited for the flush's transaction");
    assert_eq!(c.recv().unwrap(), Reply::Ack { batch_id: 1, events: 1 });
    assert_eq!(total(&a.cfg, st), 5);
    drop(c);
    a.server.shutdown().unwrap();
}

#[test]
fn a_node_presumed_dead_cannot_commit_a_batch_another_node_took() {
    let dir = tempfile::tempdir().unwrap();
    for st in stores(&dir, "a_node_presu") {
        a_node_presumed_dead_cannot_commit_a_batch_another_node_took_on(&st);
    }
}

fn a_node_presumed_dead_cannot_commit_a_batch_another_node_took_on(st: &Store) {
    let (a, b) = (start("cut-a", st), start("cut-b", st));
    let gate = fault::hold(&st.name("cut-a"), Point::BeforeCommit);
    let mut c = Client::connect_producer(a.server.ingest_addr(), None, &st.name("cut")).unwrap();
    send(&mut c, 1, &[5]);
    assert!(gate.reached(1, Duration::from_secs(20)));
    drop(c);
    // a's heartbeat stopped for the lease (cut off from the store): b takes the producer
    // and the batch, which a has not committed.
    st.presume_dead(&st.name("cut-a"));
    let mut c = Client::connect_producer(b.server.ingest_addr(), None, &st.name("cut")).unwrap();
    send(&mut c, 1, &[5]);
    assert_eq!(c.recv().unwrap(), Reply::Ack { batch_id: 1, events: 1 });
    assert_eq!(total(&b.cfg, st), 5);
    // a comes back and tries to commit its copy: rolled back, and a fences itself off.
    gate.open();
    let until = Instant::now() + Duration::from_secs(20);
    while !a.notices.lock().unwrap().iter().any(|n| n.starts_with("fenced:")) {
        assert!(Instant::now() < until, "a never reported being fenced: {:?}", a.notices.lock().unwrap());
        std::thread::sleep(Duration::from_millis(10));
    }
    let fenced = a.notices.lock().unwrap().iter().find(|n| n.starts_with("fenced:")).cloned().unwrap();
    assert!(fenced.contains(&format!("lost producer `{}`", st.name("cut"))), "{fenced}");
    assert_eq!(total(&b.cfg, st), 5, "counted once, by b");
    assert!(a.server.shutdown().is_err(), "a's last flush is refused");
    drop(c);
    b.server.shutdown().unwrap();
    assert_eq!(total(&b.cfg, st), 5);
}

#[test]
fn numbers_must_increase_on_a_connection_and_a_reconnect_resends_under_the_same_numbers() {
    let dir = tempfile::tempdir().unwrap();
    for st in stores(&dir, "numbers_must") {
        numbers_must_increase_on_a_connection_and_a_reconnect_resends_under_the_same_numbers_on(&st);
    }
}

fn numbers_must_increase_on_a_connection_and_a_reconnect_resends_under_the_same_numbers_on(st: &Store) {
    let a = start("seq-a", st);
    let mut c = Client::connect_producer(a.server.ingest_addr(), None, &st.name("seq")).unwrap();
    send(&mut c, 3, &[1]);
    send(&mut c, 3, &[100]);
    send(&mut c, 2, &[100]);
    send(&mut c, 4, &[2]);
    // An error may overtake an ack still waiting for its flush: compared as a set.
    let replies: Vec<Reply> = (0..4).map(|_| c.recv().unwrap()).collect();
    let mut codes: Vec<String> = replies
        .iter()
        .map(|r| match r {
            Reply::Ack { batch_id, .. } => format!("ack {batch_id}"),
            Reply::Error { batch_id, code, retryable, .. } => format!("error {batch_id} {code} {retryable}"),
            other => format!("{other:?}"),
        })
        .collect();
    codes.sort();
    assert_eq!(codes, ["ack 3", "ack 4", "error 2 12 false", "error 3 12 false"]);
    drop(c);
    // A reconnect resends what it had no answer for, under the same numbers.
    let mut c = connect_when_free(&a, &st.name("seq"));
    send(&mut c, 3, &[1]);
    send(&mut c, 4, &[2]);
    send(&mut c, 5, &[4]);
    assert_eq!(c.recv().unwrap(), Reply::Duplicate { batch_id: 3, events: 1 });
    assert_eq!(c.recv().unwrap(), Reply::Duplicate { batch_id: 4, events: 1 });
    assert_eq!(c.recv().unwrap(), Reply::Ack { batch_id: 5, events: 1 });
    assert_eq!(total(&a.cfg, st), 7);
    // Version 1 clients are untouched: no producer, no duplicate check.
    let mut v1 = Client::connect(a.server.ingest_addr(), None).unwrap();
    v1.send_numbered(3, "S", &batch(&[8])).unwrap();
    v1.flush().unwrap();
    assert_eq!(v1.recv().unwrap(), Reply::Ack { batch_id: 3, events: 1 });
    assert_eq!(total(&a.cfg, st), 15);
    drop((c, v1));
    a.server.shutdown().unwrap();
}

/// Posts one event to `node`'s `POST /S` with an idempotency key; the status and body.
fn post(node: &Node, key: Option<&str>, qty: i64) -> (u16, String) {
    use std::io::{Read, Write};
    let body = format!(r#"{{"event": {{"symbol": "wso2", "qty": {qty}, "ts": 1000}}}}"#);
    let key = key.map(|k| format!("Idempotency-Key: {k}\r\n")).unwrap_or_default();
    let mut s = std::net::TcpStream::connect(node.server.http_addr()).unwrap();
    write!(
        s,
        "POST /S HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n{key}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let status = answer.split(' ').nth(1).unwrap().parse().unwrap();
    (status, answer.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
}

#[test]
fn an_http_request_with_an_idempotency_key_is_counted_once_wherever_it_is_resent() {
    let dir = tempfile::tempdir().unwrap();
    for st in stores(&dir, "http_key") {
        http_key_on(&st);
    }
}

fn http_key_on(st: &Store) {
    let (a, b) = (start("hk-a", st), start("hk-b", st));
    let key = |n: u32| format!("{}/{n}", st.name("hk"));
    assert_eq!(post(&a, Some(&key(1)), 5), (200, r#"{"accepted":1}"#.to_string()));
    // The answer was lost: the same request again, here.
    assert_eq!(post(&a, Some(&key(1)), 5), (200, r#"{"accepted":1,"duplicate":true}"#.to_string()));
    assert_eq!(total(&a.cfg, st), 5);
    // Elsewhere while a holds the producer (it keeps it while requests come).
    let (status, body) = post(&b, Some(&key(2)), 7);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("is held by node"), "{body}");
    // a is presumed dead: b takes the producer and knows what a committed.
    st.presume_dead(&st.name("hk-a"));
    assert_eq!(post(&b, Some(&key(1)), 5), (200, r#"{"accepted":1,"duplicate":true}"#.to_string()));
    assert_eq!(post(&b, Some(&key(2)), 7), (200, r#"{"accepted":1}"#.to_string()));
    assert_eq!(total(&b.cfg, st), 12);
    // Without a key, as before; a bad key is refused with what is wrong.
    assert_eq!(post(&b, None, 1).0, 200);
    let (status, body) = post(&b, Some("no-sequence"), 1);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("is not PRODUCER/SEQUENCE"), "{body}");
    assert_eq!(total(&b.cfg, st), 13);
    a.server.shutdown().unwrap();
    b.server.shutdown().unwrap();
}

#[test]
fn a_batch_resent_to_the_node_that_holds_it_uncommitted_is_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    for st in stores(&dir, "resent_same_") {
        a_batch_resent_to_the_node_that_holds_it_uncommitted_is_counted_once_on(&st);
    }
}

/// A client gives up on a connection whose batch the node took but has not committed (its
/// store is slow or down), reconnects to the same node and resends it under its number.
/// The store does not know the batch yet, so the new connection learns a lower committed
/// number: the node itself must recognise the batch, answer DUPLICATE once the first copy
/// is committed, and not count it again (the store-restart chaos run with 11 s outages
/// counted some events three times on one node).
fn a_batch_resent_to_the_node_that_holds_it_uncommitted_is_counted_once_on(st: &Store) {
    let a = start("resend-a", st);
    let gate = fault::hold(&st.name("resend-a"), Point::BeforeCommit);
    let producer = st.name("resend");
    let mut old = Client::connect_producer(a.server.ingest_addr(), None, &producer).unwrap();
    send(&mut old, 1, &[5]);
    send(&mut old, 2, &[7]);
    assert!(gate.reached(1, Duration::from_secs(20)), "node a took the batches and holds them uncommitted");
    drop(old);
    let mut new = Client::connect_producer(a.server.ingest_addr(), None, &producer).unwrap();
    send(&mut new, 1, &[5]);
    send(&mut new, 2, &[7]);
    send(&mut new, 3, &[1]);
    gate.open();
    assert_eq!(new.recv().unwrap(), Reply::Duplicate { batch_id: 1, events: 1 });
    assert_eq!(new.recv().unwrap(), Reply::Duplicate { batch_id: 2, events: 1 });
    assert_eq!(new.recv().unwrap(), Reply::Ack { batch_id: 3, events: 1 });
    assert_eq!(total(&a.cfg, st), 13, "each batch once");
    drop(new);
    a.server.shutdown().unwrap();
    assert_eq!(total(&a.cfg, st), 13);
}

#[test]
fn a_batch_resent_while_the_old_connection_still_routes_it_is_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    for st in stores(&dir, "resent_routing_") {
        a_batch_resent_while_the_old_connection_still_routes_it_is_counted_once_on(&st);
    }
}

/// The client's old connection has checked a batch's number (new) and not yet routed it
/// when the client, giving up on it, resends the batch on a new connection to the same
/// node. The two must not both find it new: the new connection waits for the old one to
/// note the batch, and answers DUPLICATE.
fn a_batch_resent_while_the_old_connection_still_routes_it_is_counted_once_on(st: &Store) {
    let a = start("routing-a", st);
    let gate = fault::hold(&st.name("routing-a"), Point::Routing);
    let producer = st.name("routing");
    let mut old = Client::connect_producer(a.server.ingest_addr(), None, &producer).unwrap();
    send(&mut old, 1, &[5]);
    assert!(gate.reached(1, Duration::from_secs(20)), "the old connection checked batch 1 and holds it");
    let mut new = Client::connect_producer(a.server.ingest_addr(), None, &producer).unwrap();
    send(&mut new, 1, &[5]);
    // Without the producer's gate the new connection checks batch 1 too, finds it new and
    // reaches the point: both would route it.
    assert!(!gate.reached(2, Duration::from_secs(1)), "the new connection checked batch 1 while the old one held it");
    gate.open();
    assert_eq!(old.recv().unwrap(), Reply::Ack { batch_id: 1, events: 1 });
    assert_eq!(new.recv().unwrap(), Reply::Duplicate { batch_id: 1, events: 1 });
    send(&mut new, 2, &[7]);
    assert_eq!(new.recv().unwrap(), Reply::Ack { batch_id: 2, events: 1 });
    assert_eq!(total(&a.cfg, st), 12, "batch 1 once");
    drop((old, new));
    a.server.shutdown().unwrap();
    assert_eq!(total(&a.cfg, st), 12);
}

#[test]
fn a_reconnect_to_the_same_node_keeps_the_producer_when_the_old_connection_lets_go() {
    let dir = tempfile::tempdir().unwrap();
    for st in stores(&dir, "reconnect_same_") {
        a_reconnect_to_the_same_node_keeps_the_producer_when_the_old_connection_lets_go_on(&st);
    }
}

/// A client gives up on a connection whose batch is committed but not yet answered, and
/// reconnects to the same node. The old connection lets go of the producer once its batch
/// is answered; that must not drop the hold under the new connection's batch, or its
/// flush finds the producer gone and the node stops (found by the store-restart chaos run
/// on MySQL, issue 14).
fn a_reconnect_to_the_same_node_keeps_the_producer_when_the_old_connection_lets_go_on(st: &Store) {
    let a = start("same-a", st);
    let gate = fault::hold(&st.name("same-a"), Point::AfterCommit);
    let producer = st.name("same");
    let mut old = Client::connect_producer(a.server.ingest_addr(), None, &producer).unwrap();
    send(&mut old, 1, &[5]);
    assert!(gate.reached(1, Duration::from_secs(20)), "node a committed the batch, not yet answered");
    drop(old);
    let mut new = Client::connect_producer(a.server.ingest_addr(), None, &producer).unwrap();
    send(&mut new, 2, &[7]);
    // The old connection's batch is answered now, and it lets go of the producer.
    gate.open();
    assert_eq!(new.recv().unwrap(), Reply::Ack { batch_id: 2, events: 1 });
    send(&mut new, 3, &[1]);
    assert_eq!(new.recv().unwrap(), Reply::Ack { batch_id: 3, events: 1 });
    assert_eq!(total(&a.cfg, st), 13);
    assert!(!a.notices.lock().unwrap().iter().any(|n| n.starts_with("fenced")), "{:?}", a.notices.lock().unwrap());
    drop(new);
    a.server.shutdown().unwrap();
}
