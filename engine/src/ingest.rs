//! Feeding events from JSON lines: `{"stream": "S", "data": [v1, v2, …]}` in attribute
//! order, or `{"stream": "S", "event": {"attr": v, …}}` (SI's JSON event shape).
//!
//! A bad line is reported with its line number and skipped; every other line is kept.

use crate::error::{Error, Result};
use crate::flush::FlushStats;
use crate::node::Node;
use crate::plan::{AppPlan, StreamPlan};
use crate::router::Router;
use crate::types::{AttrType, Value};
use serde::Deserialize;
use std::io::BufRead;
use std::time::{Duration as StdDuration, Instant};

/// A line that was not taken, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// 1-based line number in the input.
    pub line: u64,
    pub message: String,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// What an ingest run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngestReport {
    pub lines: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Rows written by all flushes.
    pub rows_written: usize,
    pub flushes: u64,
}

#[derive(Deserialize)]
struct Line {
    stream: Option<String>,
    data: Option<Vec<serde_json::Value>>,
    event: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Converts one JSON line into (stream index, values in attribute order).
pub fn parse_line(plan: &AppPlan, text: &str) -> std::result::Result<(usize, Vec<Value>), String> {
    let line: Line = serde_json::from_str(text).map_err(|e| {
        let what = if e.is_data() { "not the shape of an event" } else { "not valid JSON" };
        format!(
            "{what} ({e}); expected {{\"stream\": \"S\", \"data\": [...]}} or {{\"stream\": \"S\", \"event\": {{...}}}}"
        )
    })?;
    let Some(name) = line.stream else {
        return Err("the event has no \"stream\"".into());
    };
    let Some(si) = plan.stream(&name) else {
        let known: Vec<&str> = plan.streams.iter().map(|s| s.name.as_str()).collect();
        return Err(format!("unknown stream `{name}` (the app defines: {})", known.join(", ")));
    };
    let s = &plan.streams[si];
    let values = match (line.data, line.event) {
        (Some(data), None) => {
            if data.len() != s.attributes.len() {
                return Err(format!(
                    "stream `{}` has {} attributes ({}), the event has {} values",
                    s.name,
                    s.attributes.len(),
                    attribute_list(s),
                    data.len()
                ));
            }
            data.iter().enumerate().map(|(i, v)| convert(s, i, v)).collect::<std::result::Result<Vec<_>, _>>()?
        }
        (None, Some(map)) => event_values(s, &map)?,
        _ => return Err("the event needs either \"data\": [...] or \"event\": {...}".into()),
    };
    Ok((si, values))
}

/// The values of an event given as `{"attr": value, …}` (SI's `{"event": {…}}`), in
/// attribute order; a missing attribute is null, an unknown one an error.
pub fn event_values(
    s: &StreamPlan,
    map: &serde_json::Map<String, serde_json::Value>,
) -> std::result::Result<Vec<Value>, String> {
    if let Some(unknown) = map.keys().find(|k| s.attribute(k).is_none()) {
        return Err(format!("stream `{}` has no attribute `{unknown}` (it has {})", s.name, attribute_list(s)));
    }
    (0..s.attributes.len())
        .map(|i| map.get(&s.attributes[i].name).map(|v| convert(s, i, v)).unwrap_or(Ok(Value::Null)))
        .collect()
}

fn attribute_list(s: &StreamPlan) -> String {
    s.attributes.iter().map(|a| format!("{} {}", a.name, a.ty)).collect::<Vec<_>>().join(", ")
}

/// Converts a JSON value to attribute `i`'s type, strictly (no strings as numbers, no
/// fractions as integers).
pub fn convert(s: &StreamPlan, i: usize, v: &serde_json::Value) -> std::result::Result<Value, String> {
    use serde_json::Value as J;
    let a = &s.attributes[i];
    let bad = || format!("attribute `{}` is {} and cannot take {v}", a.name, a.ty);
    Ok(match (a.ty, v) {
        (_, J::Null) => Value::Null,
        (AttrType::Int, J::Number(n)) => Value::Int(n.as_i64().and_then(|x| i32::try_from(x).ok()).ok_or_else(bad)?),
        (AttrType::Long, J::Number(n)) => Value::Long(n.as_i64().ok_or_else(bad)?),
        (AttrType::Float, J::Number(n)) => Value::Float(n.as_f64().ok_or_else(bad)? as f32),
        (AttrType::Double, J::Number(n)) => Value::Double(n.as_f64().ok_or_else(bad)?),
        (AttrType::String, J::String(t)) => Value::Str(t.clone()),
        (AttrType::Bool, J::Bool(b)) => Value::Bool(*b),
        _ => return Err(bad()),
    })
}

/// Reads JSON lines from `input`, routes every good event into `node`, and flushes every
/// `flush_interval` of wall time so memory stays bounded however long the input. Bad
/// lines go to `on_reject`. Does not do the final flush (see [`finish`]).
pub fn feed(
    node: &mut Node,
    router: &mut Router,
    input: impl BufRead,
    flush_interval: StdDuration,
    on_reject: &mut dyn FnMut(Rejection),
    on_flush_error: &mut dyn FnMut(&Error),
) -> Result<IngestReport> {
    let plan = node.plan().clone();
    let mut report = IngestReport::default();
    let mut last_flush = Instant::now();
    for (n, line) in input.lines().enumerate() {
        let line_no = n as u64 + 1;
        let text = line.map_err(|e| Error::io(format!("cannot read line {line_no}"), e))?;
        report.lines = line_no;
        if text.trim().is_empty() {
            continue;
        }
        let outcome = parse_line(&plan, &text).and_then(|(si, values)| {
            router.push(si, &values).map_err(|e| match e {
                Error::Event(m) => m,
                other => other.to_string(),
            })
        });
        match outcome {
            Ok(()) => report.accepted += 1,
            Err(message) => {
                if message.contains("shutting down") {
                    return Err(Error::Closed);
                }
                report.rejected += 1;
                on_reject(Rejection { line: line_no, message });
            }
        }
        if line_no.is_multiple_of(4096) && last_flush.elapsed() >= flush_interval {
            router.send_all()?;
            match node.flush() {
                Ok(stats) => add(&mut report, &stats),
                // Kept pending and retried at the next flush.
                Err(e) if e.is_retryable() => on_flush_error(&e),
                Err(e) => return Err(e),
            }
            last_flush = Instant::now();
        }
    }
    Ok(report)
}

fn add(report: &mut IngestReport, stats: &FlushStats) {
    report.rows_written += stats.rows;
    report.flushes += 1;
}

/// Sends what the router holds, stops the workers and writes everything to the store, then
/// releases the node's registration. A retryable store error (busy, locked, down) is retried
/// with back-off up to `patience` (`None`: for ever), calling `on_retry` before each wait;
/// nothing is dropped while retrying.
pub fn finish(
    mut node: Node,
    mut router: Router,
    report: &mut IngestReport,
    patience: Option<StdDuration>,
    on_retry: &mut dyn FnMut(&Error, StdDuration),
) -> Result<()> {
    router.send_all()?;
    drop(router);
    node.stop_workers()?;
    let stats = crate::backoff::retry(patience, on_retry, || node.write_pending())?;
    add(report, &stats);
    crate::backoff::retry(patience, on_retry, || node.release())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeConfig;
    use crate::plan::check;

    fn plan() -> AppPlan {
        check(
            "define stream S (symbol string, price float, qty int, volume long, ok bool, ts long);
             define aggregation A from S select sum(qty) as q aggregate by ts every sec;",
            "a",
            &NodeConfig::default(),
        )
        .unwrap()
    }

    #[test]
    fn both_line_shapes() {
        let p = plan();
        let (s, v) = parse_line(&p, r#"{"stream":"S","data":["IBM", 1.5, 3, 4, true, 1000]}"#).unwrap();
        assert_eq!(s, 0);
        assert_eq!(
            v,
            vec![
                Value::Str("IBM".into()),
                Value::Float(1.5),
                Value::Int(3),
                Value::Long(4),
                Value::Bool(true),
                Value::Long(1000)
            ]
        );
        let (_, v) = parse_line(&p, r#"{"stream":"S","event":{"ts": 5, "symbol": "X", "price": null}}"#).unwrap();
        assert_eq!(v, vec![Value::Str("X".into()), Value::Null, Value::Null, Value::Null, Value::Null, Value::Long(5)]);
    }

    #[test]
    fn every_kind_of_bad_line_is_explained() {
        let p = plan();
        let cases = [
            (r#"{"stream":"S","data":["IBM", 1.5, 3]"#, "not valid JSON"),
            (r#"["S"]"#, "not the shape of an event"),
            (r#"{"data":[1]}"#, "no \"stream\""),
            (r#"{"stream":"T","data":[1]}"#, "unknown stream `T` (the app defines: S)"),
            (r#"{"stream":"S","data":[1]}"#, "has 6 attributes (symbol string, price float"),
            (
                r#"{"stream":"S","data":["IBM", "1.5", 3, 4, true, 1000]}"#,
                "attribute `price` is float and cannot take \"1.5\"",
            ),
            (r#"{"stream":"S","data":["IBM", 1.5, 3.5, 4, true, 1000]}"#, "attribute `qty` is int and cannot take 3.5"),
            (r#"{"stream":"S","data":["IBM", 1.5, 3000000000, 4, true, 1000]}"#, "attribute `qty` is int"),
            (r#"{"stream":"S","data":[7, 1.5, 3, 4, true, 1000]}"#, "attribute `symbol` is string"),
            (r#"{"stream":"S","data":["IBM", 1.5, 3, 4, 1, 1000]}"#, "attribute `ok` is bool"),
            (r#"{"stream":"S","event":{"nope": 1}}"#, "no attribute `nope`"),
            (r#"{"stream":"S"}"#, "either \"data\""),
        ];
        for (line, needle) in cases {
            let e = parse_line(&p, line).unwrap_err();
            assert!(e.contains(needle), "{line}\n  gave: {e}\n  wanted: {needle}");
        }
    }
}

#[cfg(test)]
mod never_panics {
    use super::*;
    use crate::config::NodeConfig;
    use crate::plan::check;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Any line is either an event or a message; JSON-ish noise included.
        #[test]
        fn any_line_is_taken_or_explained(
            values in prop::collection::vec(prop::sample::select(vec![
                "null", "1", "-1", "1.5", "1e308", "9223372036854775808", "\"IBM\"", "true", "[]", "{}", "\"2017-06-01 04:05:50\"",
            ]), 0..7),
            shape in 0u8..4,
            noise in ".{0,40}",
        ) {
            let plan = check(
                "define stream S (symbol string, price float, qty int, ts long, t string, ok bool);
                 define aggregation A from S select sum(qty) as q aggregate by ts every sec;",
                "a",
                &NodeConfig::default(),
            ).unwrap();
            let line = match shape {
                0 => format!("{{\"stream\":\"S\",\"data\":[{}]}}", values.join(",")),
                1 => format!("{{\"stream\":\"S\",\"event\":{{\"qty\":{}}}}}", values.first().copied().unwrap_or("null")),
                2 => noise.clone(),
                _ => format!("{{\"stream\":{},\"data\":{}}}", values.first().copied().unwrap_or("1"), noise),
            };
            match parse_line(&plan, &line) {
                Ok((_, v)) => prop_assert_eq!(v.len(), 6),
                Err(m) => prop_assert!(!m.is_empty()),
            }
        }
    }
}
