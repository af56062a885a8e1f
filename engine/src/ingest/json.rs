//! Events as JSON: `{"stream": "S", "data": [v1, v2, …]}` in attribute order, or
//! `{"stream": "S", "event": {"attr": v, …}}` (SI's JSON event shape), converted strictly
//! to the stream's attribute types.

use crate::error::BadEvent;
use crate::lang::plan::{AppPlan, JsonMapping, StreamPlan};
use crate::lang::types::{AttrType, Value};
use serde::Deserialize;

#[derive(Deserialize)]
struct Line {
    stream: Option<String>,
    data: Option<Vec<serde_json::Value>>,
    event: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Converts one JSON line into (stream index, values in attribute order).
pub fn parse_line(plan: &AppPlan, text: &str) -> Result<(usize, Vec<Value>), BadEvent> {
    let line: Line = serde_json::from_str(text).map_err(|e| {
        let what = if e.is_data() { "not the shape of an event" } else { "not valid JSON" };
        BadEvent::from(format!(
            "{what} ({e}); expected {{\"stream\": \"S\", \"data\": [...]}} or {{\"stream\": \"S\", \"event\": {{...}}}}"
        ))
    })?;
    let Some(name) = line.stream else {
        return Err("the event has no \"stream\"".into());
    };
    let Some(si) = plan.stream(&name) else {
        let known: Vec<&str> = plan.streams.iter().map(|s| s.name.as_str()).collect();
        return Err(format!("unknown stream `{name}` (the app defines: {})", known.join(", ")).into());
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
                )
                .into());
            }
            data.iter().enumerate().map(|(i, v)| convert(s, i, v)).collect::<Result<Vec<_>, _>>()?
        }
        // JSON lines keep their long-standing rule: a missing attribute is null.
        (None, Some(map)) => event_values(s, &map, JsonMapping { fail_on_missing_attribute: false })?,
        _ => return Err("the event needs either \"data\": [...] or \"event\": {...}".into()),
    };
    Ok((si, values))
}

/// The values of an event given as `{"attr": value, …}` (SI's `{"event": {…}}`), in
/// attribute order. An unknown attribute is an error; a missing one is an error too when
/// `mapping` says so (SI's `fail.on.missing.attribute`, true by default), else null.
pub fn event_values(
    s: &StreamPlan,
    map: &serde_json::Map<String, serde_json::Value>,
    mapping: JsonMapping,
) -> Result<Vec<Value>, BadEvent> {
    if let Some(unknown) = map.keys().find(|k| s.attribute(k).is_none()) {
        return Err(format!("stream `{}` has no attribute `{unknown}` (it has {})", s.name, attribute_list(s)).into());
    }
    (0..s.attributes.len())
        .map(|i| match map.get(&s.attributes[i].name) {
            Some(v) => convert(s, i, v),
            None if mapping.fail_on_missing_attribute => Err(BadEvent::from(format!(
                "attribute `{}` is missing (the stream's @map has fail.on.missing.attribute='true', SI's \
                 default; send it as null, or set it to 'false' to take a missing attribute as null)",
                s.attributes[i].name
            ))),
            None => Ok(Value::Null),
        })
        .collect()
}

/// The events of an SI HTTP request body given as a JSON tree (`{"event": {…}}` or an
/// array of those), converted with the stream's `@map` rules and checked, all or nothing:
/// otherwise the index of the first bad event and what is wrong with it. The HTTP front
/// takes this path when [`crate::ingest::body::events`] says no, and the two must agree on
/// every body that one accepts (a property test there, and the `json` fuzz target).
pub fn request_events(
    plan: &AppPlan,
    stream: usize,
    body: &serde_json::Value,
) -> Result<Vec<Vec<Value>>, (usize, BadEvent)> {
    let s = &plan.streams[stream];
    let one = std::slice::from_ref(body);
    let items = match body {
        serde_json::Value::Array(a) => a.as_slice(),
        _ => one,
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            item.get("event")
                .and_then(|e| e.as_object())
                .ok_or_else(|| BadEvent::from("expected {\"event\": {\"attribute\": value, …}}"))
                .and_then(|map| event_values(s, map, s.mapping))
                .and_then(|v| crate::ingest::check::check_event(plan, stream, &v).map(|_| v))
                .map_err(|m| (i, m))
        })
        .collect()
}

fn attribute_list(s: &StreamPlan) -> String {
    s.attributes.iter().map(|a| format!("{} {}", a.name, a.ty)).collect::<Vec<_>>().join(", ")
}

/// Converts a JSON value to attribute `i`'s type, strictly (no strings as numbers, no
/// fractions as integers).
pub fn convert(s: &StreamPlan, i: usize, v: &serde_json::Value) -> Result<Value, BadEvent> {
    use serde_json::Value as J;
    let a = &s.attributes[i];
    let bad = || BadEvent::from(format!("attribute `{}` is {} and cannot take {v}", a.name, a.ty));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeConfig;
    use crate::lang::plan::check;

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
            let e = parse_line(&p, line).unwrap_err().message;
            assert!(e.contains(needle), "{line}\n  gave: {e}\n  wanted: {needle}");
        }
    }
}

#[cfg(test)]
mod never_panics {
    use super::*;
    use crate::config::NodeConfig;
    use crate::lang::plan::check;
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
                Err(m) => prop_assert!(!m.message.is_empty()),
            }
        }
    }
}
