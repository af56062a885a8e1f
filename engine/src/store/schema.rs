//! The physical tables of an aggregation (SEMANTICS.md §4) and the mapping between their
//! rows and partials. Both stores build their SQL from this, so the tables are defined once.
//!
//! One table per duration, `<Aggregation>_<DURATION>`, with the columns `AGG_TIMESTAMP`,
//! `SHARD_ID` (partitioned only), the group-by attributes, the latest-value columns,
//! `AGG_LAST_EVENT_TIMESTAMP` (with latest values only), then the stored aggregate cells.
//! The primary key is `AGG_TIMESTAMP`, `SHARD_ID`, the group-by attributes.

use crate::aggregate::partial::{CellValue, Latest, Num, Partial, SetValue};
use crate::lang::plan::{AggPlan, AppPlan, CellKind};
use crate::lang::types::{AttrType, Value};
use crate::time::granularity::Granularity;
use hashbrown::HashSet;

/// What a column holds, and so how a write merges into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Timestamp,
    Shard,
    /// The `i`-th group-by attribute.
    Key(usize),
    /// The `i`-th latest-value column (taken from the row with the newer time stamp).
    Latest(usize),
    LastEventTimestamp,
    /// Cell `i` of the plan: added, min, max, or set union by its kind.
    Cell(usize, CellKind),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    /// The value type; distinct sets are `String` (a JSON array).
    pub ty: AttrType,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TableSchema {
    pub name: String,
    pub aggregation: String,
    pub duration: Granularity,
    pub columns: Vec<Column>,
    /// The first `key_len` columns are the primary key.
    pub key_len: usize,
    pub partitioned: bool,
}

/// A row read back from a store.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRow {
    pub bucket: i64,
    pub shard: Option<String>,
    pub key: Vec<Value>,
    pub partial: Partial,
}

impl TableSchema {
    pub fn new(app: &AppPlan, agg: &AggPlan, duration: Granularity) -> TableSchema {
        let stream = &app.streams[agg.stream];
        let mut columns = vec![Column { name: "AGG_TIMESTAMP".into(), ty: AttrType::Long, role: Role::Timestamp }];
        if agg.partitioned {
            columns.push(Column { name: "SHARD_ID".into(), ty: AttrType::String, role: Role::Shard });
        }
        for (i, &a) in agg.group_by.iter().enumerate() {
            let attr = &stream.attributes[a];
            columns.push(Column { name: attr.name.clone(), ty: attr.ty, role: Role::Key(i) });
        }
        let key_len = columns.len();
        for (i, l) in agg.latest.iter().enumerate() {
            columns.push(Column { name: l.name.clone(), ty: l.ty, role: Role::Latest(i) });
        }
        if !agg.latest.is_empty() {
            columns.push(Column {
                name: "AGG_LAST_EVENT_TIMESTAMP".into(),
                ty: AttrType::Long,
                role: Role::LastEventTimestamp,
            });
        }
        for (i, c) in agg.cells.iter().enumerate() {
            if let Some(name) = &c.column {
                let ty = match c.kind {
                    CellKind::Set => AttrType::String,
                    CellKind::Min | CellKind::Max if c.is_integer() => AttrType::Long,
                    CellKind::Min | CellKind::Max => AttrType::Double,
                    _ => c.value_type(),
                };
                columns.push(Column { name: name.clone(), ty, role: Role::Cell(i, c.kind) });
            }
        }
        TableSchema {
            name: agg.table_name(duration),
            aggregation: agg.name.clone(),
            duration,
            columns,
            key_len,
            partitioned: agg.partitioned,
        }
    }

    /// Every table of every aggregation of the app.
    pub fn all(app: &AppPlan) -> Vec<Vec<TableSchema>> {
        app.aggregations.iter().map(|a| a.durations.iter().map(|d| TableSchema::new(app, a, *d)).collect()).collect()
    }

    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    pub fn last_event_timestamp(&self) -> Option<usize> {
        self.columns.iter().position(|c| c.role == Role::LastEventTimestamp)
    }

    /// Orders `a` and `b` (rows of this table) as its primary key does: by bucket, shard,
    /// then group-by values (strings bytewise, as the C collation and SQLite's BINARY do;
    /// nulls last, as PostgreSQL's index does).
    pub fn key_cmp(&self, a: &[Value], b: &[Value]) -> std::cmp::Ordering {
        a[..self.key_len]
            .iter()
            .zip(&b[..self.key_len])
            .map(|(x, y)| x.sort_cmp(y))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    }

    /// The row a partial is written as.
    pub fn to_row(&self, shard: Option<&str>, key: &[Value], bucket: i64, p: &Partial) -> Vec<Value> {
        self.columns
            .iter()
            .map(|c| match c.role {
                Role::Timestamp => Value::Long(bucket),
                Role::Shard => shard.map(|s| Value::Str(s.to_string())).unwrap_or(Value::Null),
                Role::Key(i) => key.get(i).cloned().unwrap_or(Value::Null),
                Role::Latest(i) => p.latest.as_ref().and_then(|l| l.values.get(i).cloned()).unwrap_or(Value::Null),
                Role::LastEventTimestamp => p.latest.as_ref().map(|l| Value::Long(l.ts)).unwrap_or(Value::Null),
                Role::Cell(i, _) => match &p.cells[i] {
                    CellValue::Num(Num::Null) => Value::Null,
                    CellValue::Num(Num::Int(v)) if c.ty == AttrType::Double => Value::Double(*v as f64),
                    CellValue::Num(Num::Int(v)) => Value::Long(*v),
                    CellValue::Num(Num::Float(v)) => Value::Double(*v),
                    CellValue::Set(s) => Value::Str(set_to_json(s)),
                },
            })
            .collect()
    }

    /// The partial a stored row holds. `agg` is the plan the table belongs to.
    pub fn from_row(&self, agg: &AggPlan, row: Vec<Value>) -> StoredRow {
        let mut out = StoredRow {
            bucket: 0,
            shard: None,
            key: vec![Value::Null; agg.group_by.len()],
            partial: Partial::empty(agg),
        };
        let mut latest_values = vec![Value::Null; agg.latest.len()];
        let mut latest_ts = None;
        for (c, v) in self.columns.iter().zip(row) {
            match c.role {
                Role::Timestamp => out.bucket = v.as_i64().unwrap_or(0),
                Role::Shard => {
                    out.shard = match v {
                        Value::Str(s) => Some(s),
                        _ => None,
                    }
                }
                Role::Key(i) => out.key[i] = v.cast(c.ty),
                Role::Latest(i) => latest_values[i] = v.cast(c.ty),
                Role::LastEventTimestamp => latest_ts = v.as_i64(),
                Role::Cell(i, kind) => {
                    out.partial.cells[i] = match kind {
                        CellKind::Set => CellValue::Set(Box::new(match &v {
                            Value::Str(s) => set_from_json(s, agg.cells[i].input.unwrap_or(AttrType::String)),
                            _ => HashSet::new(),
                        })),
                        _ => CellValue::Num(match (Num::from_value(&v), agg.cells[i].is_integer()) {
                            (Num::Float(f), true) => Num::Int(f as i64),
                            (n, _) => n,
                        }),
                    }
                }
            }
        }
        if let Some(ts) = latest_ts {
            out.partial.latest = Some(Latest { ts, seq: 0, values: latest_values });
        }
        out
    }
}

/// A distinct set as stored: a JSON array, sorted so equal sets are equal text.
pub fn set_to_json(set: &HashSet<SetValue>) -> String {
    let mut v: Vec<&SetValue> = set.iter().collect();
    v.sort();
    serde_json::Value::Array(v.into_iter().map(SetValue::to_json).collect()).to_string()
}

pub fn set_from_json(text: &str, input: AttrType) -> HashSet<SetValue> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Array(items)) => items.iter().filter_map(|i| SetValue::from_json(i, input)).collect(),
        _ => HashSet::new(),
    }
}

/// The union of two stored sets (the SQL function `tally_set_union` of the stores).
pub fn set_union_json(a: Option<&str>, b: Option<&str>) -> Option<String> {
    let parse = |t: &str| match serde_json::from_str::<serde_json::Value>(t) {
        Ok(serde_json::Value::Array(items)) => items,
        _ => Vec::new(),
    };
    match (a, b) {
        (None, None) => None,
        (Some(x), None) | (None, Some(x)) => Some(x.to_string()),
        (Some(x), Some(y)) => {
            let mut items = parse(x);
            items.extend(parse(y));
            let mut keyed: Vec<(String, serde_json::Value)> = items.into_iter().map(|v| (sort_key(&v), v)).collect();
            keyed.sort_by(|p, q| p.0.cmp(&q.0));
            keyed.dedup_by(|p, q| p.0 == q.0);
            let mut values: Vec<serde_json::Value> = keyed.into_iter().map(|(_, v)| v).collect();
            values.sort_by(json_order);
            Some(serde_json::Value::Array(values).to_string())
        }
    }
}

fn sort_key(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => format!("n{i}"),
            None => format!("n{}", n.as_f64().unwrap_or(0.0)),
        },
        other => other.to_string(),
    }
}

fn json_order(a: &serde_json::Value, b: &serde_json::Value) -> std::cmp::Ordering {
    use serde_json::Value as J;
    match (a, b) {
        (J::Number(x), J::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(p), Some(q)) => p.cmp(&q),
            _ => x.as_f64().unwrap_or(0.0).total_cmp(&y.as_f64().unwrap_or(0.0)),
        },
        (J::String(x), J::String(y)) => x.cmp(y),
        (J::Bool(x), J::Bool(y)) => x.cmp(y),
        _ => a.to_string().cmp(&b.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeConfig;
    use crate::lang::plan::check;

    #[test]
    fn seed_tables_columns_and_keys() {
        let cfg = NodeConfig::parse("wso2.carbon: {id: wso2-si-1}", "n").unwrap();
        let app = check(
            "define stream TradeStream (symbol string, price double, quantity long, timestamp long);
             @PartitionById define aggregation TradeAggregation from TradeStream
             select symbol, avg(price) as avgPrice, sum(quantity) as total, price as lastPrice, distinctCount(quantity) as dq
             group by symbol aggregate by timestamp every sec ... year;",
            "a",
            &cfg,
        )
        .unwrap();
        let tables = TableSchema::all(&app);
        assert_eq!(tables[0].len(), 6);
        let t = &tables[0][2];
        assert_eq!(t.name, "TradeAggregation_HOURS");
        let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "AGG_TIMESTAMP",
                "SHARD_ID",
                "symbol",
                "lastPrice",
                "AGG_LAST_EVENT_TIMESTAMP",
                "AGG_SUM_price",
                "AGG_COUNT_price",
                "AGG_SUM_quantity",
                "AGG_SET_quantity"
            ]
        );
        assert_eq!(t.key_len, 3);

        // A partial survives the trip through a row.
        let agg = &app.aggregations[0];
        let mut p = Partial::empty(agg);
        p.cells[0] = CellValue::Num(Num::Float(200.0));
        p.cells[1] = CellValue::Num(Num::Int(2));
        p.cells[2] = CellValue::Num(Num::Int(30));
        p.cells[3] = CellValue::Num(Num::Int(2));
        p.cells[4] = CellValue::Set(Box::new([SetValue::Int(20), SetValue::Int(10)].into_iter().collect()));
        p.latest = Some(Latest { ts: 7, seq: 0, values: vec![Value::Double(100.0)] });
        let row = t.to_row(Some("wso2-si-1"), &[Value::Str("wso2".into())], 1000, &p);
        assert_eq!(row[8], Value::Str("[10,20]".into()));
        let back = t.from_row(agg, row);
        assert_eq!(back.bucket, 1000);
        assert_eq!(back.shard.as_deref(), Some("wso2-si-1"));
        assert_eq!(back.key, vec![Value::Str("wso2".into())]);
        // The non-null count of quantity lives only in memory.
        p.cells[3] = CellValue::Num(Num::Null);
        assert_eq!(back.partial, p);
    }

    /// The tables of an aggregation grouped by one attribute of type `ty`.
    fn keyed_tables(ty: &str) -> Vec<TableSchema> {
        let cfg = NodeConfig::parse("wso2.carbon: {id: wso2-si-1}", "n").unwrap();
        let app = check(
            &format!(
                "define stream S (k {ty}, j long, v long, timestamp long);
                 @PartitionById define aggregation A from S select k, j, sum(v) as total
                 group by k, j aggregate by timestamp every sec ... min;"
            ),
            "a",
            &cfg,
        )
        .unwrap();
        TableSchema::all(&app).remove(0)
    }

    mod sort_order {
        use super::*;
        use crate::ingest::key;
        use proptest::prelude::*;

        fn value(ty: &'static str) -> BoxedStrategy<Value> {
            let v = match ty {
                "string" => prop_oneof![
                    "[a-c]{0,20}".prop_map(Value::Str),
                    "[\\x00-\\x7f\\u{80}-\\u{10ffff}]{0,18}".prop_map(Value::Str),
                ]
                .boxed(),
                "long" => prop_oneof![any::<i64>(), -3i64..3].prop_map(Value::Long).boxed(),
                "int" => any::<i32>().prop_map(Value::Int).boxed(),
                "double" => {
                    prop_oneof![any::<f64>(), Just(-0.0), Just(0.0), -2.0f64..2.0].prop_map(Value::Double).boxed()
                }
                _ => any::<bool>().prop_map(Value::Bool).boxed(),
            };
            prop_oneof![9 => v, 1 => Just(Value::Null)].boxed()
        }

        /// Flushed rows are sorted by their encoded keys (`ingest::key::sort_prefix` and
        /// `ingest::key::cmp`, see `node::partial_rows`): that order must be the one
        /// `key_cmp` gives the rows the store receives (built from the decoded keys).
        fn check_order(ty: &'static str) {
            let tables = keyed_tables(ty);
            let attr = match ty {
                "string" => AttrType::String,
                "long" => AttrType::Long,
                "int" => AttrType::Int,
                "double" => AttrType::Double,
                _ => AttrType::Bool,
            };
            let types = [attr, AttrType::Long];
            let row = (0i64..3, value(ty), prop_oneof![any::<i64>(), 0i64..2]);
            proptest!(ProptestConfig { cases: 400, ..ProptestConfig::default() }, |(a in row.clone(), b in row)| {
                for t in &tables {
                    let make = |(bucket, k, j): &(i64, Value, i64)| {
                        let mut bytes = Vec::new();
                        key::encode_values(&mut bytes, &[k.clone(), Value::Long(*j)]);
                        let mut r = vec![Value::Null; t.columns.len()];
                        r[0] = Value::Long(*bucket * 1000);
                        r[1] = Value::Str("wso2-si-1".into());
                        r.splice(2..4, key::decode(&bytes, &types));
                        (r, *bucket, bytes)
                    };
                    let ((ra, ba, ka), (rb, bb, kb)) = (make(&a), make(&b));
                    let want = t.key_cmp(&ra, &rb);
                    prop_assert_eq!(ba.cmp(&bb).then_with(|| key::cmp(&ka, &kb, &types)), want, "{:?} {:?}", ra, rb);
                    let (pa, pb) = ((ba, key::sort_prefix(&ka, &types)), (bb, key::sort_prefix(&kb, &types)));
                    // The prefix never contradicts the key's order: it may only tie.
                    if pa < pb {
                        prop_assert_ne!(want, std::cmp::Ordering::Greater, "{:?} {:?}", ra, rb);
                    }
                    if pa > pb {
                        prop_assert_ne!(want, std::cmp::Ordering::Less, "{:?} {:?}", ra, rb);
                    }
                    if want.is_eq() {
                        prop_assert_eq!(pa, pb);
                    }
                }
            });
        }

        #[test]
        fn string_keys() {
            check_order("string");
        }

        #[test]
        fn long_keys() {
            check_order("long");
        }

        #[test]
        fn int_keys() {
            check_order("int");
        }

        #[test]
        fn double_keys() {
            check_order("double");
        }

        #[test]
        fn bool_keys() {
            check_order("bool");
        }
    }

    #[test]
    fn set_union_is_sorted_and_distinct() {
        assert_eq!(set_union_json(Some("[3,1]"), Some("[2,3]")).as_deref(), Some("[1,2,3]"));
        assert_eq!(set_union_json(Some("[\"b\"]"), Some("[\"a\",\"b\"]")).as_deref(), Some("[\"a\",\"b\"]"));
        assert_eq!(set_union_json(None, Some("[1]")).as_deref(), Some("[1]"));
        assert_eq!(set_union_json(None, None), None);
        assert_eq!(
            set_union_json(Some("[1.5,1]"), Some("[1.0]")).as_deref(),
            Some("[1,1.5]"),
            "1 and 1.0 are one value"
        );
    }
}
