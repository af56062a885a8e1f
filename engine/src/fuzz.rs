//! What the fuzz targets run (fuzz/, scripts/fuzz.sh, docs/fuzzing.md): each takes any
//! bytes and feeds them to one way hostile input enters a node, exactly as the node does,
//! and asserts what must hold whatever the input: no panic, and where two paths decode the
//! same input, that they agree.
//!
//! It lives in the library, not in the fuzz crate, so that `cargo test` replays every seed
//! and every input a fuzzer ever found (fuzz/seeds, fuzz/regressions) on a stable toolchain
//! and without the fuzzer: a crash, once fixed, stays fixed.

use crate::config::NodeConfig;
use crate::ingest::wire::{BatchBuilder, BatchView};
use crate::lang::plan::{AppPlan, check};
use crate::server::protocol::{self, Body};
use std::sync::OnceLock;

/// The app the query, frame and JSON targets run against: a stream of every attribute type,
/// a partitioned aggregation over it and an unpartitioned one.
pub const APP: &str = "@App:name('Fuzz')
define stream S (symbol string, price double, qty long, n int, f float, ok bool, ts long);
@PartitionById
define aggregation A from S select symbol, sum(qty) as total, avg(price) as avgPrice, max(price) as hi,
  min(n) as lo, count() as c, distinctCount(symbol) as d, price as last
group by symbol aggregate by ts every sec ... year;
define aggregation B from S select ok, sum(f) as fs group by ok aggregate every min, hour;";

/// The largest frame the frame target reads (a node's default `tally.max_frame_bytes` is
/// larger; a fuzzer's inputs are far smaller).
const MAX_FRAME: usize = 1 << 20;

/// The largest number of events a JSON body may hold, as `tally.max_batch_events`.
const MAX_EVENTS: usize = 10_000;

/// A node with a shard id, so that partitioned apps are checked all the way.
fn config() -> &'static NodeConfig {
    static CONFIG: OnceLock<NodeConfig> = OnceLock::new();
    CONFIG.get_or_init(|| NodeConfig::parse("wso2.carbon: {id: fuzz}", "fuzz").expect("the fuzz node file is valid"))
}

fn plan() -> &'static AppPlan {
    static PLAN: OnceLock<AppPlan> = OnceLock::new();
    PLAN.get_or_init(|| check(APP, "fuzz", config()).expect("the fuzz app is valid"))
}

/// The app language: parse and check any text as an app. Errors are fine, panics are not.
pub fn app(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = check(text, "fuzz", config());
    }
}

/// The query language: compile any text as a store query against [`APP`].
pub fn query(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::query::compile_query(plan(), text);
    }
}

/// The binary protocol: read frames from the bytes as a connection does, decode HELLO and
/// BATCH bodies, and every batch of a known stream with [`BatchView::parse`]. A batch that
/// parses must read back event by event, and encode again to a batch that parses to the
/// same bytes once more.
pub fn frames(data: &[u8]) {
    let mut r = std::io::Cursor::new(data);
    let mut buf = Vec::new();
    while let Ok(Some(kind)) = protocol::read_frame(&mut r, &mut buf, MAX_FRAME) {
        let mut b = Body::new(&buf);
        match kind {
            protocol::HELLO => {
                let _ = (|| Some((b.u16()?, b.u16().and_then(|n| b.str(n as usize))?)))();
                let _ = b.u16().and_then(|n| b.str(n as usize));
            }
            protocol::BATCH => {
                let Some((_, name)) = (|| Some((b.u64()?, b.u16().and_then(|n| b.str(n as usize))?)))() else {
                    continue;
                };
                // The fuzzer cannot guess stream names: any name goes to S.
                let s = &plan().streams[plan().stream(name).unwrap_or(0)];
                batch(b.rest(), &s.types);
            }
            _ => {}
        }
    }
}

/// One batch body: parsed, read, encoded again and compared.
fn batch(bytes: &[u8], types: &[crate::lang::types::AttrType]) {
    let Ok(view) = BatchView::parse(bytes, types) else { return };
    let mut again = BatchBuilder::new(types);
    for e in 0..view.len() {
        let row = view.event(e);
        for a in 0..types.len() {
            let _ = row.value(a);
        }
        again.push_event(&row);
    }
    let once = again.finish();
    let view = BatchView::parse(&once, types).expect("a batch re-encoded from a parsed one parses");
    for e in 0..view.len() {
        again.push_event(&view.event(e));
    }
    assert_eq!(again.finish(), once, "encoding a parsed batch is stable");
}

/// HTTP/JSON ingest: any bytes as the body of `POST /S`. The fast path
/// ([`crate::ingest::body::events`]) and the tree path
/// ([`crate::ingest::json::request_events`]) must agree on every body the fast path
/// accepts; JSON event lines (`tally ingest`) are tried too.
pub fn json(data: &[u8]) {
    let plan = plan();
    let s = &plan.streams[0];
    let fast = crate::ingest::body::events(s, s.mapping, data, MAX_EVENTS);
    let tree = serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .map(|v| crate::ingest::json::request_events(plan, 0, &v));
    if let Some(fast) = fast {
        let fast_checked = fast.iter().all(|v| crate::ingest::check::check_event(plan, 0, v).is_ok());
        match tree {
            Some(Ok(tree)) => assert!(same_events(&fast, &tree), "the two JSON paths differ: {fast:?} and {tree:?}"),
            Some(Err((i, e))) => assert!(!fast_checked, "the fast path took a body the tree path refuses: {}", e.at(i)),
            None => panic!("the fast path took a body serde_json cannot parse"),
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        for line in text.lines() {
            let _ = crate::ingest::json::parse_line(plan, line);
        }
    }
}

/// Equal, with NaN equal to NaN (bit for bit).
fn same_events(a: &[Vec<crate::lang::types::Value>], b: &[Vec<crate::lang::types::Value>]) -> bool {
    use crate::lang::types::Value;
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.len() == y.len()
                && x.iter().zip(y).all(|(u, v)| match (u, v) {
                    (Value::Double(p), Value::Double(q)) => p.to_bits() == q.to_bits(),
                    (Value::Float(p), Value::Float(q)) => p.to_bits() == q.to_bits(),
                    _ => u == v,
                })
        })
}

/// A fuzz target: any bytes in, a panic on a bug.
pub type Target = fn(&[u8]);

/// The targets by name, for the replay test and the fuzz crate.
pub const TARGETS: [(&str, Target); 4] = [("app", app), ("query", query), ("frames", frames), ("json", json)];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every seed and every input a fuzzer found (fuzz/seeds/TARGET, fuzz/regressions/TARGET)
    /// runs through its target without a panic.
    #[test]
    fn every_seed_and_every_finding_runs_clean() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let mut ran = 0;
        for (name, target) in TARGETS {
            for dir in ["seeds", "regressions"] {
                let Ok(files) = std::fs::read_dir(root.join(dir).join(name)) else { continue };
                for f in files {
                    let path = f.unwrap().path();
                    let data = std::fs::read(&path).unwrap();
                    let outcome = std::panic::catch_unwind(|| target(&data));
                    assert!(outcome.is_ok(), "{} panicked on {}", name, path.display());
                    ran += 1;
                }
            }
        }
        assert!(ran >= 20, "only {ran} inputs under {}: the seeds are missing", root.display());
    }

    /// The frame seeds: binary, so built here rather than by hand. Run
    /// `cargo test -p tally --lib fuzz::tests::write_frame_seeds -- --ignored` after a
    /// change to the protocol, and commit what it writes.
    #[test]
    #[ignore = "writes fuzz/seeds/frames; run by hand after a protocol change"]
    fn write_frame_seeds() {
        use crate::lang::types::Value;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/frames");
        std::fs::create_dir_all(&dir).unwrap();
        let types = &plan().streams[0].types;
        let event = |sym: &str, price: f64, qty: i64| {
            vec![
                Value::Str(sym.into()),
                Value::Double(price),
                Value::Long(qty),
                Value::Int(7),
                Value::Float(1.5),
                Value::Bool(true),
                Value::Long(1_496_289_950_000i64.wrapping_add(qty)),
            ]
        };
        let batch = |events: &[Vec<Value>]| {
            let mut b = BatchBuilder::new(types);
            for e in events {
                b.push_values(e);
            }
            b.finish()
        };
        let one = batch(&[event("IBM", 10.5, 3)]);
        let many = batch(&(0..50).map(|i| event(&format!("k{}", i % 7), i as f64 / 3.0, i)).collect::<Vec<_>>());
        let nulls =
            batch(&[vec![Value::Null; 7], event("", f64::NAN, i64::MIN), event("é😀", f64::INFINITY, i64::MAX)]);
        let mut lying = one.clone();
        lying[..4].copy_from_slice(&1000u32.to_le_bytes());
        let seeds: Vec<(&str, Vec<u8>)> = vec![
            ("hello-v1", protocol::hello("secret")),
            ("hello-v2", protocol::hello_producer("secret", "producer-1")),
            ("v1-one-batch", [protocol::hello(""), protocol::batch(1, "S", &one)].concat()),
            (
                "v2-batches",
                [protocol::hello_producer("", "p"), protocol::batch(1, "S", &one), protocol::batch(2, "S", &many)]
                    .concat(),
            ),
            ("nulls-nan-inf", [protocol::hello(""), protocol::batch(9, "S", &nulls)].concat()),
            ("batch-count-lies", [protocol::hello(""), protocol::batch(3, "S", &lying)].concat()),
            ("batch-truncated", protocol::batch(4, "S", &many[..many.len() / 2])),
            ("frame-length-lies", {
                let mut f = protocol::batch(5, "S", &one);
                f.truncate(f.len() - 3);
                f
            }),
            ("unknown-stream", protocol::batch(6, "Nope", &one)),
            (
                "replies",
                [
                    protocol::ready(2),
                    protocol::ack(1, 1),
                    protocol::duplicate(2, 50),
                    protocol::error(3, protocol::Code::BadBatch, "bad"),
                ]
                .concat(),
            ),
        ];
        for (name, bytes) in seeds {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }

    #[test]
    fn the_fuzz_app_is_valid_and_targets_take_anything() {
        assert_eq!(plan().streams[0].types.len(), 7);
        for (_, target) in TARGETS {
            for data in [&b""[..], b"\0", b"\xff\xff\xff\xff", b"{", b"[", "é".as_bytes()] {
                target(data);
            }
        }
    }

    fn app_error(text: &str) -> String {
        match check(text, "hostile", config()) {
            Ok(_) => panic!("the app was accepted"),
            Err(e) => e.to_string(),
        }
    }

    /// Deep nesting is refused with its position, not a stack overflow that kills the node
    /// (each of these overflowed the stack before the parser bounded its depth).
    #[test]
    fn deep_nesting_is_a_clear_error_not_a_stack_overflow() {
        let d = 100_000;
        let q = format!("from A on {}symbol == 'x'{} within 0L, 1L per 'seconds'", "(".repeat(d), ")".repeat(d));
        let e = crate::query::compile_query(plan(), &q).unwrap_err().to_string();
        assert!(e.contains("nested more than 128 deep"), "{e}");
        let q = format!("from A on {}ok within 0L, 1L per 'seconds'", "not ".repeat(d));
        assert!(crate::query::compile_query(plan(), &q).unwrap_err().to_string().contains("nested more than 128"));
        let stream = "define stream S (a long, t long);\n";
        let e = app_error(&format!(
            "{stream}define aggregation X from S select sum({}a) as s aggregate by t every sec;",
            "- ".repeat(d)
        ));
        assert!(e.contains("nested more than 128"), "{e}");
        let e = app_error(&format!("{}{stream}", "@a(".repeat(d)));
        assert!(e.contains("line 1") && e.contains("nested more than 128"), "{e}");
        // A real app's depth is fine.
        let ok = format!(
            "{stream}define aggregation X from S select sum({}a{}) as s aggregate by t every sec;",
            "(".repeat(100),
            ")".repeat(100)
        );
        check(&ok, "deep", config()).unwrap();
    }

    /// An app of a million columns is refused at once (it took 24 minutes to check before
    /// lists were bounded), and so are ten thousand select items or group-by attributes.
    #[test]
    fn a_million_columns_is_refused_at_once() {
        let n = 1_000_000;
        let cols: Vec<String> = (0..n).map(|i| format!("a{i} long")).collect();
        let e = app_error(&format!("define stream S ({}, t long);", cols.join(", ")));
        assert!(e.contains("more than 1000 attributes in a stream"), "{e}");
        let items: Vec<String> = (0..n / 100).map(|i| format!("sum(a) as s{i}")).collect();
        let e = app_error(&format!(
            "define stream S (a long, t long);\ndefine aggregation X from S select {} aggregate by t every sec;",
            items.join(", ")
        ));
        assert!(e.contains("more than 1000 items in a `select`"), "{e}");
        let e = app_error(&format!(
            "define stream S (a long, t long);\ndefine aggregation X from S select count() as c group by {} aggregate by t every sec;",
            vec!["a"; n / 100].join(", ")
        ));
        assert!(e.contains("more than 1000 group-by attributes"), "{e}");
        // 1,000 attributes are still an app.
        let cols: Vec<String> = (0..999).map(|i| format!("a{i} long")).collect();
        let wide = format!(
            "define stream S ({}, t long);\ndefine aggregation X from S select sum(a998) as s aggregate by t every sec;",
            cols.join(", ")
        );
        check(&wide, "wide", config()).unwrap();
    }

    /// A frame that claims more than it holds ends in an error, and the node's buffer grows
    /// only with the bytes that came (not to the length claimed).
    #[test]
    fn a_frame_that_lies_about_its_length_is_an_error_with_bounded_memory() {
        let max = 1 << 30;
        let mut lying = ((max - 1) as u32).to_le_bytes().to_vec();
        lying.extend_from_slice(&[protocol::BATCH, 1, 2, 3]);
        let mut buf = Vec::new();
        let e = protocol::read_frame(&mut std::io::Cursor::new(&lying), &mut buf, max).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
        assert!(e.to_string().contains("the frame claims 1073741823 bytes, the connection ended after 4"), "{e}");
        assert!(buf.capacity() <= 1 << 21, "{} bytes reserved for 3 that came", buf.capacity());
        // Over the limit, and of length 0: refused before reading the body.
        for len in [u32::MAX, 0] {
            let e = protocol::read_frame(&mut std::io::Cursor::new(len.to_le_bytes()), &mut buf, 1 << 20).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
        }
        // A batch whose event count lies is refused by the decoder, naming what is wrong.
        let types = &plan().streams[0].types;
        let mut b = BatchBuilder::new(types);
        b.push_values(&vec![crate::lang::types::Value::Null; 7]);
        let mut bytes = b.finish();
        bytes[..4].copy_from_slice(&1000u32.to_le_bytes());
        assert!(BatchView::parse(&bytes, types).is_err());
    }

    /// A megabyte string, NaN and infinities: taken or refused as documented, never a panic.
    #[test]
    fn huge_strings_nan_and_infinities() {
        use crate::lang::types::Value;
        let s = &plan().streams[0];
        let big = "é".repeat(1 << 19);
        let body = format!(
            r#"{{"event": {{"symbol": "{big}", "price": 1.5, "qty": 1, "n": 1, "f": 1, "ok": true, "ts": 1}}}}"#
        );
        let events = crate::ingest::body::events(s, s.mapping, body.as_bytes(), MAX_EVENTS).unwrap();
        assert_eq!(events[0][0], Value::Str(big.clone()));
        // JSON has no NaN or infinity: 1e999 is out of range on both paths, not +inf.
        for bad in ["NaN", "Infinity", "1e999", "-1e999"] {
            let body = format!(
                r#"{{"event": {{"symbol": "x", "price": {bad}, "qty": 1, "n": 1, "f": 1, "ok": true, "ts": 1}}}}"#
            );
            assert!(crate::ingest::body::events(s, s.mapping, body.as_bytes(), MAX_EVENTS).is_none(), "{bad}");
            assert!(serde_json::from_str::<serde_json::Value>(&body).is_err(), "{bad}");
        }
        // The binary encoding carries them: NaN and infinities in a measure round-trip, a
        // huge string too; a NaN group-by key is refused by the event check.
        let types = &s.types;
        let mut b = BatchBuilder::new(types);
        let row = |sym: &str, price: f64| {
            vec![
                Value::Str(sym.into()),
                Value::Double(price),
                Value::Long(1),
                Value::Int(1),
                Value::Float(f32::NEG_INFINITY),
                Value::Bool(true),
                Value::Long(1),
            ]
        };
        b.push_values(&row(&big, f64::NAN));
        b.push_values(&row("x", f64::INFINITY));
        let bytes = b.finish();
        let view = BatchView::parse(&bytes, types).unwrap();
        assert_eq!(view.event(0).value(0), Value::Str(big));
        assert!(matches!(view.event(0).value(1), Value::Double(p) if p.is_nan()));
        assert_eq!(view.event(1).value(1), Value::Double(f64::INFINITY));
        assert_eq!(view.event(1).value(4), Value::Float(f32::NEG_INFINITY));
        frames(&[protocol::hello(""), protocol::batch(1, "S", &bytes)].concat());
    }
}
