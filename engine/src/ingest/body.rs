//! An SI JSON request body (`{"event": {…}}` or an array of those), parsed straight into
//! each event's values, without building a JSON tree first.
//!
//! Chosen for speed: the tree (`serde_json::Value`, an ordered map per event, a string per
//! key) was about a fifth of a node's CPU under HTTP load (profiled with 16 clients posting
//! 100 events each). This path only ever says "yes, these events" or "no": on anything
//! else than a valid body of valid events, the caller parses the body as a tree
//! ([`crate::ingest::json::event_values`]), which says exactly what is wrong, where, with
//! the same rules. So both paths must agree on every body this one accepts; a property test
//! below checks that they do.

use crate::lang::plan::{JsonMapping, StreamPlan};
use crate::lang::types::{AttrType, Value};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// The events of `body` for stream `s`, in attribute order; `None` unless the body is
/// valid JSON of at most `max` events that all convert (the caller then takes the tree
/// path for the answer).
pub fn events(s: &StreamPlan, mapping: JsonMapping, body: &[u8], max: usize) -> Option<Vec<Vec<Value>>> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let mut out = Vec::new();
    Body { s, mapping, max, out: &mut out }.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(out)
}

/// "Not this way": the tree path will say why.
fn no<E: de::Error>() -> E {
    E::custom("not a valid body of valid events")
}

struct Body<'a, 'o> {
    s: &'a StreamPlan,
    mapping: JsonMapping,
    max: usize,
    out: &'o mut Vec<Vec<Value>>,
}

impl<'de> DeserializeSeed<'de> for Body<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Body<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{\"event\": {…}} or an array of those")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if let Some(n) = seq.size_hint() {
            self.out.reserve(n.min(self.max));
        }
        while let Some(v) = seq.next_element_seed(Item { s: self.s, mapping: self.mapping })? {
            if self.out.len() >= self.max {
                return Err(no());
            }
            self.out.push(v);
        }
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        if self.max == 0 {
            return Err(no());
        }
        let v = Item { s: self.s, mapping: self.mapping }.visit_map(map)?;
        self.out.push(v);
        Ok(())
    }
}

/// One `{"event": {…}}` (other keys ignored, as the tree path does).
#[derive(Clone, Copy)]
struct Item<'a> {
    s: &'a StreamPlan,
    mapping: JsonMapping,
}

impl<'de> DeserializeSeed<'de> for Item<'_> {
    type Value = Vec<Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Value>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Item<'_> {
    type Value = Vec<Value>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{\"event\": {…}}")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<Value>, A::Error> {
        let mut values = None;
        while let Some(is_event) = map.next_key_seed(EventKey)? {
            if is_event {
                // A repeated key: the last one counts, as in the tree (so a bad value is
                // only remembered, and read past, until the object ends).
                values = Some(map.next_value_seed(Event(self))?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        values.flatten().ok_or_else(no)
    }
}

/// Whether a key is `"event"`.
struct EventKey;

impl<'de> DeserializeSeed<'de> for EventKey {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for EventKey {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v == "event")
    }
}

/// The `{"attribute": value, …}` of one event: `None` when it is not one this path takes
/// (read past, so that a later `"event"` key can still count).
struct Event<'a>(Item<'a>);

impl<'de> DeserializeSeed<'de> for Event<'_> {
    type Value = Option<Vec<Value>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<Vec<Value>>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Event<'_> {
    type Value = Option<Vec<Value>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of attributes")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Vec<Value>>, A::Error> {
        let s = self.0.s;
        // Per attribute: not seen, or its last value (`None`: not convertible).
        let mut slots: Vec<Option<Option<Value>>> = vec![None; s.attributes.len()];
        let mut unknown = false;
        while let Some(key) = map.next_key_seed(AttrKey(s))? {
            match key {
                Some(i) => slots[i] = Some(map.next_value_seed(AttrValue(s.attributes[i].ty))?),
                None => {
                    unknown = true;
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if unknown {
            return Ok(None);
        }
        Ok(slots
            .into_iter()
            .map(|v| match v {
                Some(v) => v,
                None if self.0.mapping.fail_on_missing_attribute => None,
                None => Some(Value::Null),
            })
            .collect())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Option<Vec<Value>>, A::Error> {
        IgnoredAny.visit_seq(seq).map(|_| None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Option<Vec<Value>>, E> {
        Ok(None)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Option<Vec<Value>>, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Option<Vec<Value>>, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Option<Vec<Value>>, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Option<Vec<Value>>, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Option<Vec<Value>>, E> {
        Ok(None)
    }
}

/// An attribute's index from its name; `None` for a name the stream does not have.
struct AttrKey<'a>(&'a StreamPlan);

impl<'de> DeserializeSeed<'de> for AttrKey<'_> {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for AttrKey<'_> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an attribute name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<usize>, E> {
        Ok(self.0.attribute(v))
    }
}

/// A value of an attribute of type `.0`, strictly (as [`crate::ingest::json::convert`]);
/// `None` when it does not convert (read past whatever it is).
struct AttrValue(AttrType);

impl<'de> DeserializeSeed<'de> for AttrValue {
    type Value = Option<Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<Value>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AttrValue {
    type Value = Option<Value>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a value of type {}", self.0)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Option<Value>, E> {
        Ok(Some(Value::Null))
    }
    fn visit_none<E: de::Error>(self) -> Result<Option<Value>, E> {
        Ok(Some(Value::Null))
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Option<Value>, E> {
        Ok((self.0 == AttrType::Bool).then_some(Value::Bool(b)))
    }
    fn visit_i64<E: de::Error>(self, x: i64) -> Result<Option<Value>, E> {
        Ok(match self.0 {
            AttrType::Int => i32::try_from(x).ok().map(Value::Int),
            AttrType::Long => Some(Value::Long(x)),
            AttrType::Float => Some(Value::Float(x as f64 as f32)),
            AttrType::Double => Some(Value::Double(x as f64)),
            _ => None,
        })
    }
    fn visit_u64<E: de::Error>(self, x: u64) -> Result<Option<Value>, E> {
        Ok(match self.0 {
            AttrType::Int => i32::try_from(x).ok().map(Value::Int),
            AttrType::Long => i64::try_from(x).ok().map(Value::Long),
            AttrType::Float => Some(Value::Float(x as f64 as f32)),
            AttrType::Double => Some(Value::Double(x as f64)),
            _ => None,
        })
    }
    fn visit_f64<E: de::Error>(self, x: f64) -> Result<Option<Value>, E> {
        Ok(match self.0 {
            AttrType::Float => Some(Value::Float(x as f32)),
            AttrType::Double => Some(Value::Double(x)),
            _ => None,
        })
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<Value>, E> {
        Ok((self.0 == AttrType::String).then(|| Value::Str(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Option<Value>, E> {
        Ok((self.0 == AttrType::String).then_some(Value::Str(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Option<Value>, A::Error> {
        IgnoredAny.visit_seq(seq).map(|_| None)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Option<Value>, A::Error> {
        IgnoredAny.visit_map(map).map(|_| None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeConfig;
    use crate::ingest::json::event_values;
    use crate::lang::plan::{AppPlan, check};
    use proptest::prelude::*;

    fn plan() -> AppPlan {
        check(
            "define stream S (symbol string, price float, qty int, volume long, ok bool, ts long, d double);
             define aggregation A from S select sum(qty) as q aggregate by ts every sec;",
            "a",
            &NodeConfig::default(),
        )
        .unwrap()
    }

    /// The tree path of `server::http`: the body as a tree, each item's `event` converted.
    fn by_tree(s: &StreamPlan, mapping: JsonMapping, body: &str, max: usize) -> Option<Vec<Vec<Value>>> {
        let tree: serde_json::Value = serde_json::from_str(body).ok()?;
        let items: Vec<&serde_json::Value> = match &tree {
            serde_json::Value::Array(a) => a.iter().collect(),
            one => vec![one],
        };
        if items.len() > max {
            return None;
        }
        items.iter().map(|i| event_values(s, i.get("event")?.as_object()?, mapping).ok()).collect()
    }

    #[test]
    fn takes_si_bodies_and_refuses_the_rest() {
        let p = plan();
        let s = &p.streams[0];
        let strict = JsonMapping { fail_on_missing_attribute: true };
        let one =
            r#"{"event": {"symbol": "I\"BM", "price": 1.5, "qty": 3, "volume": 4, "ok": true, "ts": 1000, "d": 2}}"#;
        let want = vec![
            Value::Str("I\"BM".into()),
            Value::Float(1.5),
            Value::Int(3),
            Value::Long(4),
            Value::Bool(true),
            Value::Long(1000),
            Value::Double(2.0),
        ];
        assert_eq!(events(s, strict, one.as_bytes(), 10), Some(vec![want.clone()]));
        assert_eq!(events(s, strict, format!("[{one}, {one}]").as_bytes(), 10), Some(vec![want.clone(), want]));
        for bad in [
            "[",
            "{}",
            r#"{"event": 1}"#,
            r#"{"event": {"symbol": "x"}}"#,
            r#"{"event": {"nope": 1}}"#,
            r#"[{"event": {"symbol": "x", "price": 1, "qty": 3.5, "volume": 4, "ok": true, "ts": 1, "d": 1}}]"#,
            r#"[{"event": {"symbol": "x", "price": 1, "qty": 3000000000, "volume": 4, "ok": true, "ts": 1, "d": 1}}]"#,
            r#"[{"event": {"symbol": 7, "price": 1, "qty": 3, "volume": 4, "ok": true, "ts": 1, "d": 1}}]"#,
            r#"[{"event": {"symbol": "x", "price": "1", "qty": 3, "volume": 4, "ok": true, "ts": 1, "d": 1}}]"#,
            r#"[{"event": {"symbol": "x", "price": 1, "qty": 3, "volume": 18446744073709551615, "ok": true, "ts": 1, "d": 1}}]"#,
            "\"event\"",
        ] {
            assert_eq!(events(s, strict, bad.as_bytes(), 10), None, "{bad}");
        }
        let lenient = JsonMapping { fail_on_missing_attribute: false };
        assert_eq!(
            events(s, lenient, br#"{"event": {"ts": 5}, "other": [1]}"#, 10),
            Some(vec![vec![
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Long(5),
                Value::Null
            ]])
        );
        assert_eq!(events(s, strict, format!("[{one}, {one}]").as_bytes(), 1), None, "over the limit");
    }

    fn json_value() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("null".to_string()),
            any::<bool>().prop_map(|b| b.to_string()),
            any::<i64>().prop_map(|i| i.to_string()),
            any::<u64>().prop_map(|i| i.to_string()),
            any::<i32>().prop_map(|i| i.to_string()),
            (-1e6f64..1e6).prop_map(|f| format!("{f:?}")),
            "[a-z\"\\\\é ]{0,6}".prop_map(|t| serde_json::to_string(&t).unwrap()),
            Just("[1]".to_string()),
            Just("{}".to_string()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
        /// Whatever this path accepts, the tree path accepts with the same values; and what
        /// the tree path accepts, this path accepts too.
        #[test]
        fn agrees_with_the_tree_path(
            events_in in prop::collection::vec(
                prop::collection::vec(
                    (prop::sample::select(vec!["symbol", "price", "qty", "volume", "ok", "ts", "d", "zz"]), json_value()),
                    0..9,
                ),
                0..4,
            ),
            array in any::<bool>(),
            lenient in any::<bool>(),
            max in 0usize..5,
        ) {
            let p = plan();
            let s = &p.streams[0];
            let mapping = JsonMapping { fail_on_missing_attribute: !lenient };
            let items: Vec<String> = events_in
                .iter()
                .map(|kv| {
                    let fields: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
                    format!("{{\"event\": {{{}}}}}", fields.join(", "))
                })
                .collect();
            let body = if array || items.len() != 1 { format!("[{}]", items.join(", ")) } else { items[0].clone() };
            prop_assert_eq!(events(s, mapping, body.as_bytes(), max), by_tree(s, mapping, &body, max), "{}", body);
        }
    }
}
