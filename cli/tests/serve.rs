//! `tally serve`: real node processes, the binary protocol over loopback, every store.

mod common;

use common::node::serve;
use common::{Dir, query, stores, unique};

/// The seed app with retention off: these tests use 2024 time stamps, which Siddhi's
/// default retention (hours: 30 days) would purge at the node's first purge pass — and with
/// commit-driven flushes the first flush can come before that pass.
fn seed_app() -> String {
    common::SEED_APP.replace("@PartitionById\n", "@PartitionById @purge(enable='false')\n")
}
use std::io::BufReader;
use tally::ingest::wire::BatchBuilder;
use tally::lang::types::{AttrType, Value};
use tally::server::client::Client;
use tally::server::protocol::Reply;

const TYPES: [AttrType; 4] = [AttrType::String, AttrType::Double, AttrType::Long, AttrType::Long];

fn batch(trades: &[(&str, f64, i64, i64)]) -> Vec<u8> {
    let mut b = BatchBuilder::new(&TYPES);
    for (sym, price, qty, ts) in trades {
        b.push_values(&[Value::Str(sym.to_string()), Value::Double(*price), Value::Long(*qty), Value::Long(*ts)]);
    }
    b.finish()
}

/// Sends batches and waits for each one's reply.
fn send_all(addr: &str, batches: &[Vec<u8>]) -> Vec<Reply> {
    let mut c = Client::connect(addr, None).unwrap();
    for b in batches {
        c.send("TradeStream", b).unwrap();
    }
    c.flush().unwrap();
    batches.iter().map(|_| c.recv().unwrap()).collect()
}

#[test]
fn seed_over_the_binary_protocol_is_seventy_on_every_store() {
    let d = Dir::new();
    for store in stores(&d) {
        let name = unique("Srv");
        let app = d.write(&format!("{name}.siddhi"), &seed_app().replace("TradeAggregation", &name));
        // The seed's node and shard ids.
        let (n1, n2) = (d.node("wso2-si-1"), d.node("wso2-si-2"));
        let (a, b) = (serve(&app, &n1, &store), serve(&app, &n2, &store));
        let r1 = send_all(
            &a.addr,
            &[batch(&[("wso2", 100.0, 10, 1_710_496_805_000), ("wso2", 100.0, 20, 1_710_498_010_000)])],
        );
        let r2 = send_all(
            &b.addr,
            &[batch(&[("wso2", 100.0, 10, 1_710_496_805_000), ("wso2", 100.0, 30, 1_710_499_200_000)])],
        );
        assert_eq!(r1, vec![Reply::Ack { batch_id: 1, events: 2 }], "{store}");
        assert_eq!(r2, vec![Reply::Ack { batch_id: 1, events: 2 }], "{store}");
        // Acknowledged means committed: either node answers 70 while both still run.
        let q = format!("from {name} within \"2024-03-15 **:**:**\" per 'hours' select symbol, total, avgPrice");
        for n in [&n1, &n2] {
            assert_eq!(query(&app, n, &store, &q)["records"], serde_json::json!([["wso2", 70, 100.0]]), "{store}");
        }
        // An app without @App:name is named after its file, as in SI.
        let body = format!("{{\"appName\": \"{name}\", \"query\": \"{}\"}}", q.replace('"', "\\\""));
        for node in [&a, &b] {
            let (st, answer) = http(&node.http, "POST", "/stores/query", &body);
            assert_eq!((st, answer.as_str()), (200, "{\"records\":[[\"wso2\",70,100.0]]}"), "{store}");
        }
        for node in [a, b] {
            let (code, err) = node.stop();
            assert_eq!(code, Some(0), "{err}");
            assert!(err.contains("stopping") && err.contains("stopped"), "{err}");
        }
    }
}

#[test]
fn bad_input_gets_clear_errors_and_the_node_keeps_serving() {
    let d = Dir::new();
    let store = d.store();
    let app = d.write("app.siddhi", &seed_app());
    let node = d.node_with("bad1", "bad1", "tally:\n  max_frame_bytes: 4096\n");
    let srv = serve(&app, &node, &store);
    let mut c = Client::connect(&srv.addr, None).unwrap();
    let good = batch(&[("ibm", 1.0, 5, 1_000)]);
    c.send("NoSuchStream", &good).unwrap();
    c.send("TradeStream", &good[..good.len() - 3]).unwrap();
    // A null time stamp in the second event refuses the whole batch.
    let mut b = BatchBuilder::new(&TYPES);
    b.push_values(&[Value::Str("ibm".into()), Value::Double(1.0), Value::Long(100), Value::Long(1_000)]);
    b.push_values(&[Value::Str("ibm".into()), Value::Double(1.0), Value::Long(100), Value::Null]);
    c.send("TradeStream", &b.finish()).unwrap();
    c.send("TradeStream", &good).unwrap();
    c.flush().unwrap();
    let replies: Vec<Reply> = (0..4).map(|_| c.recv().unwrap()).collect();
    let err = |r: &Reply| match r {
        Reply::Error { code, retryable, message, .. } => (*code, *retryable, message.clone()),
        other => panic!("expected an error, got {other:?}"),
    };
    let (code, retry, m) = err(&replies[0]);
    assert_eq!((code, retry), (3, false));
    assert!(m.contains("unknown stream `NoSuchStream`; the app defines TradeStream"), "{m}");
    let (code, _, m) = err(&replies[1]);
    assert_eq!(code, 4);
    assert!(m.contains("stream `TradeStream`: the batch ends early"), "{m}");
    let (code, _, m) = err(&replies[2]);
    assert_eq!(code, 5);
    assert!(m.contains("event 1: the time stamp `timestamp` is null") && m.contains("not taken"), "{m}");
    assert_eq!(replies[3], Reply::Ack { batch_id: 4, events: 1 });

    // An oversized frame closes that connection only.
    let mut big = Client::connect(&srv.addr, None).unwrap();
    let many: Vec<(&str, f64, i64, i64)> = (0..1000).map(|i| ("ibm", 1.0, 1, 1_000 + i)).collect();
    big.send("TradeStream", &batch(&many)).unwrap();
    big.flush().unwrap();
    match big.recv().unwrap() {
        Reply::Error { code: 6, message, .. } => assert!(message.contains("tally.max_frame_bytes (4096)"), "{message}"),
        other => panic!("{other:?}"),
    }
    // A client that does not say HELLO is refused.
    use std::io::Write;
    let mut raw = std::net::TcpStream::connect(&srv.addr).unwrap();
    raw.write_all(&tally::server::protocol::batch(1, "TradeStream", &good)).unwrap();
    let mut rd = BufReader::new(raw);
    let mut buf = Vec::new();
    let kind = tally::server::protocol::read_frame(&mut rd, &mut buf, 1 << 20).unwrap().unwrap();
    match tally::server::protocol::parse_reply(kind, &buf).unwrap() {
        Reply::Error { code: 2, message, .. } => assert!(message.contains("first frame must be HELLO"), "{message}"),
        other => panic!("{other:?}"),
    }
    // A slow client: half a frame, then silence. It holds its own connection only.
    let mut slow = std::net::TcpStream::connect(&srv.addr).unwrap();
    slow.write_all(&tally::server::protocol::hello("")).unwrap();
    let frame = tally::server::protocol::batch(1, "TradeStream", &good);
    slow.write_all(&frame[..frame.len() / 2]).unwrap();
    // An unknown frame kind is refused and the connection goes on.
    let mut odd = Client::connect(&srv.addr, None).unwrap();
    let mut raw_frame = tally::server::protocol::batch(1, "TradeStream", &good);
    raw_frame[4] = 0x7f;
    {
        let mut s2 = std::net::TcpStream::connect(&srv.addr).unwrap();
        s2.write_all(&tally::server::protocol::hello("")).unwrap();
        s2.write_all(&raw_frame).unwrap();
        let mut rd = BufReader::new(s2);
        let mut buf = Vec::new();
        let k = tally::server::protocol::read_frame(&mut rd, &mut buf, 1 << 20).unwrap().unwrap();
        assert_eq!(tally::server::protocol::parse_reply(k, &buf), Some(Reply::Ready { version: 1 }));
        let k = tally::server::protocol::read_frame(&mut rd, &mut buf, 1 << 20).unwrap().unwrap();
        match tally::server::protocol::parse_reply(k, &buf).unwrap() {
            Reply::Error { code: 1, message, .. } => assert!(message.contains("unknown frame kind 0x7f"), "{message}"),
            other => panic!("{other:?}"),
        }
    }
    odd.send("TradeStream", &good).unwrap();
    odd.flush().unwrap();
    assert_eq!(odd.recv().unwrap(), Reply::Ack { batch_id: 1, events: 1 });
    // The first connection still works, and only the good batches counted.
    c.send("TradeStream", &good).unwrap();
    c.flush().unwrap();
    assert_eq!(c.recv().unwrap(), Reply::Ack { batch_id: 5, events: 1 });
    let q = "from TradeAggregation within 0L, 4000000000000L per 'days' select symbol, total";
    assert_eq!(query(&app, &node, &store, q)["records"], serde_json::json!([["ibm", 15]]));
    // The node stops cleanly even with the slow client still connected.
    let (code, err) = srv.stop();
    assert_eq!(code, Some(0), "{err}");
    drop(slow);
}

/// SIGTERM while a client streams batches: every acknowledged event is in the totals, and
/// nothing else (a batch the node did not take is refused, or never answered).
#[test]
fn sigterm_mid_load_keeps_every_acknowledged_event() {
    let d = Dir::new();
    for store in stores(&d) {
        let name = unique("Term");
        let app = d.write(&format!("{name}.siddhi"), &seed_app().replace("TradeAggregation", &name));
        let node = d.node_with(&unique("term"), &unique("shard"), "tally:\n  flush_interval: 50ms\n");
        let srv = serve(&app, &node, &store);
        let addr = srv.addr.clone();
        let sender = std::thread::spawn(move || {
            let mut c = Client::connect(&addr, None).unwrap();
            let mut qty_of = std::collections::HashMap::new();
            let (mut acked, mut answered, mut sent) = (0i64, 0u64, 0u64);
            let take = |r: Reply, acked: &mut i64, qty_of: &std::collections::HashMap<u64, i64>| {
                if let Reply::Ack { batch_id, .. } = r {
                    *acked += qty_of[&batch_id];
                }
            };
            for round in 0..1_000_000i64 {
                let trades: Vec<(&str, f64, i64, i64)> = (0..256)
                    .map(|i| (["a", "b", "c"][i % 3], 1.0, (i as i64 % 7) + 1, 1_000 + round * 1_000))
                    .collect();
                let Ok(id) = c.send("TradeStream", &batch(&trades)).and_then(|id| c.flush().map(|_| id)) else { break };
                qty_of.insert(id, trades.iter().map(|t| t.2).sum::<i64>());
                sent += 1;
                // At most 8 batches unanswered.
                let mut failed = false;
                while sent - answered > 8 {
                    match c.recv() {
                        Ok(r) => {
                            answered += 1;
                            take(r, &mut acked, &qty_of);
                        }
                        Err(_) => {
                            failed = true;
                            break;
                        }
                    }
                }
                if failed {
                    break;
                }
            }
            // The replies still to come, to the end of the stream.
            while let Ok(r) = c.recv() {
                take(r, &mut acked, &qty_of);
            }
            (acked, sent)
        });
        std::thread::sleep(std::time::Duration::from_millis(800));
        let (code, err) = srv.stop();
        assert_eq!(code, Some(0), "{err}");
        let (acked, sent) = sender.join().unwrap();
        eprintln!("{store}: sent {sent} batches, acknowledged events of quantity {acked}");
        assert!(acked > 0 && sent > 10, "{store}: the load was running when the node stopped");
        let got = query(
            &app,
            &node,
            &store,
            &format!("from {name} within 0L, 4000000000000L per 'years' select sum(total) as t"),
        );
        assert_eq!(got["records"], serde_json::json!([[acked]]), "{store}: sent {sent} batches");
    }
}

/// One HTTP/1.1 request; the status and the body.
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    http_with(addr, method, path, body, "")
}

/// The seed through SI-style HTTP: JSON events in, `POST /stores/query` out, on either node.
#[test]
fn seed_over_http_json_and_the_store_query_api() {
    let d = Dir::new();
    for store in stores(&d) {
        let name = unique("Http");
        let app = d.write(
            &format!("{name}.siddhi"),
            &format!("@app:name('Trades')\n{}", seed_app().replace("TradeAggregation", &name)),
        );
        let (n1, n2) = (d.node(&unique("h1")), d.node(&unique("h2")));
        let (a, b) = (serve(&app, &n1, &store), serve(&app, &n2, &store));
        let ev = |qty: i64, ts: i64| {
            format!(
                "{{\"event\": {{\"symbol\": \"wso2\", \"price\": 100.0, \"quantity\": {qty}, \"timestamp\": {ts}}}}}"
            )
        };
        let (st, body) = http(
            &a.http,
            "POST",
            "/TradeStream",
            &format!("[{}, {}]", ev(10, 1_710_496_805_000), ev(20, 1_710_498_010_000)),
        );
        assert_eq!((st, body.as_str()), (200, "{\"accepted\":2}"), "{store}");
        let (st, _) = http(&b.http, "POST", "/TradeStream", &ev(10, 1_710_496_805_000));
        assert_eq!(st, 200);
        let (st, _) = http(&b.http, "POST", "/TradeStream", &ev(30, 1_710_499_200_000));
        assert_eq!(st, 200);
        let q = format!(
            "{{\"appName\": \"Trades\", \"query\": \"from {name} within '2024-03-15 **:**:**' per 'hours' select symbol, total, avgPrice\", \"details\": true}}"
        );
        for node in [&a, &b] {
            let (st, body) = http(&node.http, "POST", "/stores/query", &q);
            assert_eq!(st, 200, "{body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["records"], serde_json::json!([["wso2", 70, 100.0]]), "{store}");
            assert_eq!(v["details"][1], serde_json::json!({"name": "total", "type": "LONG"}));
        }
        // Bad requests are refused whole, with the reason.
        let (st, body) =
            http(&a.http, "POST", "/TradeStream", &format!("[{}, {{\"event\": {{\"symbol\": 1}}}}]", ev(5, 1_000)));
        assert_eq!(st, 400);
        assert!(body.contains("event 1: attribute `symbol` is string and cannot take 1"), "{body}");
        let (st, body) = http(&a.http, "POST", "/NoStream", &ev(1, 1));
        assert_eq!(st, 404);
        assert!(body.contains("unknown stream `NoStream`"), "{body}");
        let (st, body) = http(
            &a.http,
            "POST",
            "/stores/query",
            "{\"appName\": \"Trades\", \"query\": \"from Nope within 0L, 1L per 'hours'\"}",
        );
        assert_eq!(st, 400, "{body}");
        let (st, body) = http(&a.http, "GET", "/health", "");
        assert_eq!(st, 200);
        assert!(body.contains("\"status\":\"ok\""), "{body}");
        let (st, metrics) = http(&a.http, "GET", "/metrics", "");
        assert_eq!(st, 200);
        assert!(metrics.contains("tally_events_in_total 2\n"), "{metrics}");
        assert!(metrics.contains("tally_batches_acked_total 1\n"), "{metrics}");
        assert!(metrics.contains("tally_worker_queue_batches{worker=\"0\"}"), "{metrics}");
        for series in [
            "tally_journal_rows_total ",
            "tally_rows_written_total{duration=\"SECONDS\",kind=\"new\"} ",
            "tally_rows_written_total{duration=\"YEARS\",kind=\"merge\"} ",
            "tally_flush_phase_seconds_total{phase=\"store\"} ",
        ] {
            assert!(metrics.contains(series), "{series}: {metrics}");
        }
        for node in [a, b] {
            let (code, err) = node.stop();
            assert_eq!(code, Some(0), "{err}");
        }
    }
}

/// With `tally.token` set, binary and HTTP clients without it are refused; with it, served.
#[test]
fn a_token_guards_ingest_and_queries() {
    let d = Dir::new();
    let store = d.store();
    let app = d.write("app.siddhi", &seed_app());
    let node = d.node_with("tok1", "tok1", "tally:\n  token: s3cret\n");
    let srv = serve(&app, &node, &store);
    let e = Client::connect(&srv.addr, None).unwrap_err().to_string();
    assert!(e.contains("wrong token"), "{e}");
    let mut c = Client::connect(&srv.addr, Some("s3cret")).unwrap();
    c.send("TradeStream", &batch(&[("ibm", 1.0, 5, 1_000)])).unwrap();
    c.flush().unwrap();
    assert_eq!(c.recv().unwrap(), Reply::Ack { batch_id: 1, events: 1 });
    let q = "{\"appName\": \"app\", \"query\": \"from TradeAggregation within 0L, 4000000000000L per 'days' select total\"}";
    let (st, body) = http(&srv.http, "POST", "/stores/query", q);
    assert_eq!(st, 401, "{body}");
    assert!(body.contains("Authorization: Bearer"), "{body}");
    let (st, body) = http_with(&srv.http, "POST", "/stores/query", q, "Authorization: Bearer s3cret\r\n");
    assert_eq!((st, body.as_str()), (200, "{\"records\":[[5]]}"));
    let (code, err) = srv.stop();
    assert_eq!(code, Some(0), "{err}");
}

/// The store goes away: the node keeps what it took (unacknowledged) up to its bound, then
/// answers "busy" (retryable); when the store is back, the held batches are acknowledged
/// and counted once.
#[test]
fn a_node_buffers_while_postgres_is_down_then_says_busy() {
    let Some(url) = common::postgres_or_skip() else { return };
    buffers_while_the_store_is_down_then_says_busy(&url);
}

/// The same with MySQL/MariaDB down.
#[test]
fn a_node_buffers_while_mysql_is_down_then_says_busy() {
    let Some(url) = common::mysql_or_skip() else { return };
    buffers_while_the_store_is_down_then_says_busy(&url);
}

fn buffers_while_the_store_is_down_then_says_busy(url: &str) {
    use common::proxy::{self, Proxy};
    let url = url.to_string();
    let d = Dir::new();
    let name = unique("Busy");
    let app = d.write(&format!("{name}.siddhi"), &seed_app().replace("TradeAggregation", &name));
    let p = Proxy::start(proxy::upstream(&url), true);
    let node = d.node_with(&unique("busy"), &unique("bs"), "tally:\n  flush_interval: 50ms\n  max_pending_rows: 50\n");
    let srv = serve(&app, &node, &p.url(&url));
    let mut c = Client::connect(&srv.addr, None).unwrap();
    c.send("TradeStream", &batch(&[("a", 1.0, 1, 1_000)])).unwrap();
    c.flush().unwrap();
    assert_eq!(c.recv().unwrap(), Reply::Ack { batch_id: 1, events: 1 });
    p.cut();
    // Each batch is a new symbol: 6 new rows (one per duration) the node must hold.
    let mut held = Vec::new();
    let mut busy = None;
    for i in 0..200i64 {
        let sym = format!("s{i}");
        c.send("TradeStream", &batch(&[(sym.as_str(), 1.0, 2, 1_000)])).unwrap();
        c.flush().unwrap();
        held.push(i + 2);
        std::thread::sleep(std::time::Duration::from_millis(60));
        // Replies that came (only refusals can, while the store is down).
        if let Some(r) = try_recv(&mut c) {
            busy = Some(r);
            break;
        }
    }
    match busy {
        Some(Reply::Error { code: 7, retryable: true, batch_id, message }) => {
            assert!(message.contains("max_pending_rows"), "{message}");
            held.retain(|&id| id as u64 != batch_id);
        }
        other => {
            let (_, err) = srv.stop();
            panic!("expected busy, got {other:?}; the node said:\n{err}")
        }
    }
    p.set_up(true);
    let mut acked = 0;
    while acked < held.len() {
        match c.recv().unwrap() {
            Reply::Ack { .. } => acked += 1,
            Reply::Error { code: 7, .. } => {}
            other => panic!("{other:?}"),
        }
    }
    let q = format!("from {name} within 0L, 4000000000000L per 'years' select sum(total) as t");
    let got = query(&app, &node, &url, &q);
    assert_eq!(got["records"], serde_json::json!([[1 + 2 * held.len() as i64]]));
    let (code, err) = srv.stop();
    assert_eq!(code, Some(0), "{err}");
}

/// A reply if one arrives within a short while.
fn try_recv(c: &mut Client) -> Option<Reply> {
    c.set_read_timeout(Some(std::time::Duration::from_millis(20))).unwrap();
    let r = c.recv().ok();
    c.set_read_timeout(None).unwrap();
    r
}

fn http_with(addr: &str, method: &str, path: &str, body: &str, headers: &str) -> (u16, String) {
    let (status, _, body) = common::http_request(addr, method, path, headers, body);
    (status, body)
}

/// Input that must never reach a store: `-0.0` and `0.0` are one group key (two rows with
/// one key in a flush would make PostgreSQL refuse the merge, and the flush would be
/// retried for ever), a NaN key is refused, and so is a string that is not UTF-8. Over the
/// binary protocol and HTTP, on every store; the node keeps flushing and stops cleanly.
#[test]
fn float_keys_are_normalised_and_bad_strings_refused_over_both_protocols() {
    const KEYS: [AttrType; 4] = [AttrType::Double, AttrType::String, AttrType::Long, AttrType::Long];
    let d = Dir::new();
    for store in stores(&d) {
        let name = unique("Keys");
        let app = d.write(
            &format!("{name}.siddhi"),
            &format!(
                "define stream K (k double, tag string, q long, ts long);
                 @PartitionById @purge(enable='false') define aggregation {name} from K select k, sum(q) as t
                 group by k aggregate by ts every sec ... hour;"
            ),
        );
        let node = d.node(&unique("k"));
        let srv = serve(&app, &node, &store);
        // One event; `tag` is one byte, put in place of the string "x" (so the offsets hold).
        let one = |k: f64, tag: u8, q: i64| {
            let mut b = BatchBuilder::new(&KEYS);
            b.push_values(&[Value::Double(k), Value::Str("x".into()), Value::Long(q), Value::Long(5_000)]);
            let mut raw = b.finish();
            let at: Vec<usize> = (0..raw.len()).filter(|&i| raw[i] == b'x').collect();
            assert_eq!(at.len(), 1, "the string byte is the only 'x' of the batch");
            raw[at[0]] = tag;
            raw
        };
        let mut c = Client::connect(&srv.addr, None).unwrap();
        for b in [one(-0.0, b'x', 1), one(0.0, b'x', 2)] {
            c.send("K", &b).unwrap();
        }
        c.flush().unwrap();
        assert!(matches!(c.recv().unwrap(), Reply::Ack { events: 1, .. }));
        assert!(matches!(c.recv().unwrap(), Reply::Ack { events: 1, .. }));
        c.send("K", &one(f64::NAN, b'x', 100)).unwrap();
        c.send("K", &one(1.0, 0xff, 100)).unwrap();
        c.flush().unwrap();
        match c.recv().unwrap() {
            Reply::Error { message, .. } => assert!(message.contains("`k` is NaN"), "{message}"),
            other => panic!("NaN taken: {other:?}"),
        }
        match c.recv().unwrap() {
            Reply::Error { message, .. } => {
                assert!(message.contains("`tag` of event 0 is not valid UTF-8"), "{message}")
            }
            other => panic!("bad UTF-8 taken: {other:?}"),
        }
        let ev = |k: &str, q: i64| format!("{{\"event\": {{\"k\": {k}, \"tag\": \"y\", \"q\": {q}, \"ts\": 6000}}}}");
        let (st, body) = http(&srv.http, "POST", "/K", &format!("[{}, {}]", ev("-0.0", 4), ev("0.0", 8)));
        assert_eq!(st, 200, "{body}");
        // A later flush merges into the stored rows of the same key; it must commit too.
        c.send("K", &one(-0.0, b'x', 16)).unwrap();
        c.flush().unwrap();
        assert!(matches!(c.recv().unwrap(), Reply::Ack { events: 1, .. }), "{store}");
        let got = query(&app, &node, &store, &format!("from {name} within 0L, 100000L per 'hours' select k, t"));
        assert_eq!(got["records"], serde_json::json!([[0.0, 31]]), "{store}");
        let (code, err) = srv.stop();
        assert_eq!(code, Some(0), "{store}: {err}");
    }
}

/// Group commit: with a flush interval of a minute, a waiting acknowledgement still starts a
/// flush at once, over both protocols; the events are in the store when it is answered.
#[test]
fn an_acknowledgement_waits_for_one_commit_not_for_the_flush_interval() {
    let d = Dir::new();
    for store in stores(&d) {
        let name = unique("Gc");
        let app = d.write(&format!("{name}.siddhi"), &seed_app().replace("TradeAggregation", &name));
        let node = d.node_with(&unique("gc"), &unique("gcs"), "tally:\n  flush_interval: 1m\n");
        let srv = serve(&app, &node, &store);
        let started = std::time::Instant::now();
        let replies = send_all(&srv.addr, &[batch(&[("wso2", 100.0, 10, 1_710_496_805_000)])]);
        assert_eq!(replies, vec![Reply::Ack { batch_id: 1, events: 1 }]);
        let ev =
            "{\"event\": {\"symbol\": \"wso2\", \"price\": 100.0, \"quantity\": 20, \"timestamp\": 1710498010000}}";
        let (st, body) = http(&srv.http, "POST", "/TradeStream", ev);
        assert_eq!((st, body.as_str()), (200, "{\"accepted\":1}"));
        let waited = started.elapsed();
        assert!(waited < std::time::Duration::from_secs(20), "{store}: acks took {waited:?}, not about one commit");
        let q = format!("from {name} within \"2024-03-15 **:**:**\" per 'days' select symbol, total");
        assert_eq!(query(&app, &node, &store, &q)["records"], serde_json::json!([["wso2", 30]]), "{store}");
        let (code, err) = srv.stop();
        assert_eq!(code, Some(0), "{err}");
    }
}

/// Lazy roll-up seen from outside (docs/rollup.md): two nodes roll closed minutes, hours
/// and days up while they run (a 1 ms delay), with late events among the live ones; after
/// every acknowledgement, a query per each duration answers exactly every acknowledged
/// event, bucket by bucket, and at the end the coarse tables hold rows the nodes rolled up.
#[test]
fn a_query_during_a_run_sees_every_acknowledged_event_in_every_duration() {
    use std::collections::BTreeMap;
    let d = Dir::new();
    for store in stores(&d) {
        let name = unique("Lazy");
        let app = d.write(&format!("{name}.siddhi"), &seed_app().replace("TradeAggregation", &name));
        let delay = "tally:\n  rollup_delay: 1ms\n";
        let ids = [unique("lz1"), unique("lz2")];
        let nodes = [d.node_with(&ids[0], &ids[0], delay), d.node_with(&ids[1], &ids[1], delay)];
        let served = [serve(&app, &nodes[0], &store), serve(&app, &nodes[1], &store)];
        let durations = [("seconds", 1_000i64), ("minutes", 60_000), ("hours", 3_600_000), ("days", 86_400_000)];
        let mut expected: Vec<BTreeMap<i64, i64>> = vec![BTreeMap::new(); durations.len()];
        let mut total = 0i64;
        let start = 1_710_496_805_000i64; // 2024-03-15 10:00:05 UTC
        for i in 0..30i64 {
            // 41 minutes a step: minutes, hours and a day boundary close during the run.
            let t = start + i * 41 * 60_000 + i * 1_000;
            let mut events = vec![("wso2", 100.0, 1 + i, t), ("ibm", 50.0, 2, t + 500)];
            if i % 4 == 3 {
                events.push(("wso2", 100.0, 100, t - 3 * 3_600_000)); // three hours late
            }
            let reply = send_all(&served[(i % 2) as usize].addr, &[batch(&events)]);
            assert!(matches!(reply[0], Reply::Ack { .. }), "{store}: {reply:?}");
            for (_, _, q, ts) in &events {
                total += q;
                for (k, (_, width)) in durations.iter().enumerate() {
                    *expected[k].entry(ts - ts.rem_euclid(*width)).or_default() += q;
                }
            }
            // Every duration, from the node that did not take the batch.
            let other = &nodes[((i + 1) % 2) as usize];
            for (k, (per, _)) in durations.iter().enumerate() {
                let q = format!(
                    "from {name} within 0L, 4000000000000L per '{per}' select AGG_TIMESTAMP, sum(total) as t \
                     group by AGG_TIMESTAMP"
                );
                let got: BTreeMap<i64, i64> = query(&app, other, &store, &q)["records"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| (r[0].as_i64().unwrap(), r[1].as_i64().unwrap()))
                    .collect();
                assert_eq!(got, expected[k], "{store}: per {per} after batch {i}");
            }
            for per in ["months", "years"] {
                let q = format!("from {name} within 0L, 4000000000000L per '{per}' select sum(total) as t");
                assert_eq!(query(&app, other, &store, &q)["records"], serde_json::json!([[total]]), "{store}: {per}");
            }
        }
        for s in served {
            let (code, err) = s.stop();
            assert_eq!(code, Some(0), "{err}");
        }
        for table in ["MINUTES", "HOURS", "DAYS"] {
            let rows = common::sql_i64(&store, &format!("SELECT count(*) FROM \"{name}_{table}\""));
            assert!(rows > 0, "{store}: {table} holds buckets rolled up during the run");
        }
        // Rolled up once each: no more coarse rows than (bucket, symbol, shard).
        let minutes = common::sql_i64(&store, &format!("SELECT count(*) FROM \"{name}_MINUTES\""));
        assert!(minutes <= 2 * 2 * expected[1].len() as i64, "{store}: {minutes} minute rows");
    }
}
