//! No way in: with `tally.token` every ingest and query path is closed to a caller without
//! it (and `/health`, `/metrics` unless opened), and hostile text in queries, group-by
//! values, stream and attribute names and `appName` reaches no table it should not, on
//! every store.

mod common;

use common::node::serve;
use common::{Dir, http_request, stores, unique};
use tally::ingest::wire::BatchBuilder;
use tally::lang::types::{AttrType, Value};
use tally::server::client::Client;
use tally::server::protocol::Reply;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

const BEARER: &str = "Authorization: Bearer s3cret\r\n";

#[test]
fn with_a_token_no_path_is_open_without_it() {
    let d = Dir::new();
    let port = free_port();
    let app = d.write(
        "app.siddhi",
        &format!(
            "@App:name('app')
@source(type='http', receiver.url='http://127.0.0.1:{port}/trades', @map(type='json'))
define stream TradeStream (symbol string, price double, quantity long, timestamp long);
@PartitionById @purge(enable='false')
define aggregation TradeAggregation from TradeStream select symbol, sum(quantity) as total
group by symbol aggregate by timestamp every sec ... day;
"
        ),
    );
    let node = d.node_with("tok", "tok", "tally:\n  token: s3cret\n");
    let srv = serve(&app, &node, &d.store());
    let event = r#"{"event": {"symbol": "a", "price": 1.0, "quantity": 2, "timestamp": 1000}}"#;
    let query =
        r#"{"appName": "app", "query": "from TradeAggregation within 0L, 4000000000000L per 'days' select total"}"#;
    let source = format!("127.0.0.1:{port}");
    let paths: [(&str, &str, &str, &str); 5] = [
        (&srv.http, "POST", "/TradeStream", event),
        (&source, "POST", "/trades", event),
        (&srv.http, "POST", "/stores/query", query),
        (&srv.http, "GET", "/health", ""),
        (&srv.http, "GET", "/metrics", ""),
    ];
    for (addr, method, path, body) in paths {
        for wrong in ["", "Authorization: Bearer s3cre\r\n", "Authorization: Basic YWRtaW46YWRtaW4=\r\n"] {
            let (status, _, answer) = http_request(addr, method, path, wrong, body);
            assert_eq!(status, 401, "{method} {path} with {wrong:?}: {answer}");
            assert!(answer.contains("tally.token"), "{answer}");
        }
        let (status, _, answer) = http_request(addr, method, path, BEARER, body);
        assert_eq!(status, 200, "{method} {path}: {answer}");
    }
    assert!(Client::connect(&srv.addr, None).unwrap_err().to_string().contains("wrong token"));
    assert!(Client::connect(&srv.addr, Some("s3cre")).unwrap_err().to_string().contains("wrong token"));
    // Both events posted with the token are in; none without it.
    let (_, _, answer) = http_request(&srv.http, "POST", "/stores/query", BEARER, query);
    assert_eq!(answer, r#"{"records":[[4]]}"#);
    let (code, err) = srv.stop();
    assert_eq!(code, Some(0), "{err}");

    // Opened by name: /health and /metrics only.
    let node = d.node_with("open", "open", "tally:\n  token: s3cret\n  open_endpoints: [health, metrics]\n");
    let srv = serve(&app, &node, &d.store());
    assert_eq!(http_request(&srv.http, "GET", "/health", "", "").0, 200);
    assert_eq!(http_request(&srv.http, "GET", "/metrics", "", "").0, 200);
    assert_eq!(http_request(&srv.http, "POST", "/stores/query", "", query).0, 401);
    drop(srv);
    let bad = d.node_with("bad", "bad", "tally:\n  open_endpoints: [stores]\n");
    let out = common::tally(&["check", "--app", common::s(&app), "--config", common::s(&bad)]);
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("`stores` is not an endpoint that can be opened"),
        "{}",
        common::stderr(&out)
    );
}

/// Hostile text everywhere a caller can put text: it is taken as data or refused, and the
/// tables are what they were. On SQLite and PostgreSQL (both flush paths: small flushes
/// write literals, large ones COPY).
#[test]
fn sql_injection_reaches_no_table() {
    let d = Dir::new();
    for store in stores(&d) {
        let agg = unique("Inj");
        let app = d.write(
            "app.siddhi",
            &common::SEED_APP
                .replace("TradeAggregation", &agg)
                .replace("@PartitionById\n", "@PartitionById @purge(enable='false')\n"),
        );
        let node = d.node_with(&unique("inj"), &unique("ij"), "");
        let srv = serve(&app, &node, &store);
        let hostile = [
            format!("x'); DROP TABLE \"{agg}_SECONDS\"; --"),
            format!("a\\'; DELETE FROM \"{agg}_DAYS\"; --"),
            "\\".to_string(),
            "\"; DROP TABLE TALLY_JOURNAL; --".to_string(),
            "' OR '1'='1".to_string(),
            "$1::text; SELECT pg_sleep(10)".to_string(),
            "é😀\u{1}".to_string(),
        ];
        let types = [AttrType::String, AttrType::Double, AttrType::Long, AttrType::Long];
        let mut c = Client::connect(&srv.addr, None).unwrap();
        // One small batch per value (literal path on PostgreSQL), then all in one big batch.
        for (i, sym) in hostile.iter().enumerate() {
            let mut b = BatchBuilder::new(&types);
            b.push_values(&[Value::Str(sym.clone()), Value::Double(1.0), Value::Long(1), Value::Long(1_000)]);
            c.send("TradeStream", &b.finish()).unwrap();
            c.flush().unwrap();
            assert_eq!(c.recv().unwrap(), Reply::Ack { batch_id: i as u64 + 1, events: 1 });
        }
        let mut b = BatchBuilder::new(&types);
        for sym in &hostile {
            for _ in 0..500 {
                b.push_values(&[Value::Str(sym.clone()), Value::Double(1.0), Value::Long(1), Value::Long(2_000)]);
            }
        }
        c.send("TradeStream", &b.finish()).unwrap();
        c.flush().unwrap();
        assert!(matches!(c.recv().unwrap(), Reply::Ack { events: 3500, .. }));
        // Over HTTP too, with a hostile attribute name that is not the stream's.
        let body = serde_json::json!({"event": {"symbol": hostile[0], "price": 1.0, "quantity": 1, "timestamp": 3000}});
        let (status, _, answer) = http_request(&srv.http, "POST", "/TradeStream", "", &body.to_string());
        assert_eq!(status, 200, "{answer}");
        let body = serde_json::json!({"event": {"symbol\"); DROP TABLE x; --": "a", "price": 1.0, "quantity": 1, "timestamp": 3000}});
        let (status, _, answer) = http_request(&srv.http, "POST", "/TradeStream", "", &body.to_string());
        assert_eq!(status, 400, "{answer}");
        // A hostile stream name is an unknown stream.
        let (status, _, answer) =
            http_request(&srv.http, "POST", "/TradeStream%22;DROP%20TABLE%20x;--", "", &body.to_string());
        assert_eq!(status, 404, "{answer}");

        let q = |query: &str, app: &str| {
            let body = serde_json::json!({"appName": app, "query": query});
            http_request(&srv.http, "POST", "/stores/query", "", &body.to_string())
        };
        // Every value comes back as it went, counted exactly: 1 + 500 (+1 over HTTP for the first).
        let all = format!("from {agg} within 0L, 4000000000000L per 'days' select symbol, total");
        let (status, _, answer) = q(&all, "app");
        assert_eq!(status, 200, "{answer}");
        let rows = symbols_and_totals(&answer);
        let mut want: Vec<(String, i64)> =
            hostile.iter().enumerate().map(|(i, s)| (s.clone(), if i == 0 { 502 } else { 501 })).collect();
        want.sort();
        assert_eq!(rows, want, "{store}");
        // Hostile query text: a value in a filter is a value; SQL after the query is a
        // syntax error; only the app's aggregations can be named.
        for value in &hostile {
            let text = format!(
                "from {agg} on symbol == {} within 0L, 4000000000000L per 'days' select total",
                json_str(value)
            );
            let (status, _, answer) = q(&text, "app");
            assert_eq!(status, 200, "{text}: {answer}");
            let want = if value == &hostile[0] { 502 } else { 501 };
            assert_eq!(answer, format!("{{\"records\":[[{want}]]}}"), "{text}");
        }
        for text in [
            format!("{all}; DROP TABLE \"{agg}_SECONDS\""),
            format!("from {agg}_SECONDS within 0L, 1L per 'days'"),
            "from TALLY_JOURNAL within 0L, 1L per 'days'".to_string(),
            format!("from \"{agg}\"; DROP TABLE x; -- within 0L, 1L per 'days'"),
            format!("from {agg} within 0L, 4000000000000L per 'days; DROP TABLE x' select total"),
            format!("from {agg} within 0L, 4000000000000L per 'days' select total as \"x; DROP TABLE y\""),
        ] {
            let (status, _, answer) = q(&text, "app");
            assert_eq!(status, 400, "{text}: {answer}");
        }
        for app_name in ["app'; DROP TABLE x; --", "app\"", "other"] {
            let (status, _, answer) = q(&all, app_name);
            assert_eq!(status, 404, "{app_name}: {answer}");
        }
        // Every table is still there and holds what it held.
        let (_, _, again) = q(&all, "app");
        assert_eq!(symbols_and_totals(&again), rows, "{store}");
        let (code, err) = srv.stop();
        assert_eq!(code, Some(0), "{err}");
        // A node that stops writes its open seconds: 7 values at 1 s and 2 s, one at 3 s.
        // The other tables are there (a dropped one would fail the count).
        assert_eq!(common::sql_i64(&store, &format!("SELECT count(*) FROM \"{agg}_SECONDS\"")), 15, "{store}");
        for table in ["MINUTES", "HOURS", "DAYS", "MONTHS", "YEARS"] {
            common::sql_i64(&store, &format!("SELECT count(*) FROM \"{agg}_{table}\""));
        }
        common::sql_i64(&store, "SELECT count(*) FROM \"TALLY_JOURNAL\"");
    }
}

/// A Siddhi string literal of `s` (double quotes, `\` and `"` escaped).
fn json_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `{"records": [[symbol, total], …]}`, sorted.
fn symbols_and_totals(answer: &str) -> Vec<(String, i64)> {
    let got: serde_json::Value = serde_json::from_str(answer).unwrap_or_else(|e| panic!("{e}: {answer}"));
    let mut rows: Vec<(String, i64)> = got["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_str().unwrap().to_string(), r[1].as_i64().unwrap()))
        .collect();
    rows.sort();
    rows
}
