//! Partial aggregates: plain data with one associative, commutative `merge`.
//!
//! A [`Partial`] holds one bucket of one group: a value per cell of the plan (count, sum,
//! non-null count, min, max, distinct set) and the latest-value columns with the time
//! stamp that chose them. It is what roll-up merges finer buckets into, what the store
//! rows hold, and what a query merges across shards. Integer sums stay integers, so merged
//! totals are exact.

use crate::lang::plan::{AggFunc, AggPlan, CellKind, OutputKind};
use crate::lang::types::{AttrType, Value};
use hashbrown::HashSet;

/// A numeric cell value; `Null` is the identity of every merge (no non-null input yet).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    Null,
    Int(i64),
    Float(f64),
}

impl Num {
    fn add(self, o: Num) -> Num {
        match (self, o) {
            (Num::Null, x) | (x, Num::Null) => x,
            // Wraps like Java's long, as Siddhi's sums do.
            (Num::Int(a), Num::Int(b)) => Num::Int(a.wrapping_add(b)),
            (a, b) => Num::Float(a.as_f64() + b.as_f64()),
        }
    }

    fn pick(self, o: Num, want_min: bool) -> Num {
        match (self, o) {
            (Num::Null, x) | (x, Num::Null) => x,
            (Num::Int(a), Num::Int(b)) => Num::Int(if want_min { a.min(b) } else { a.max(b) }),
            (a, b) => {
                let (x, y) = (a.as_f64(), b.as_f64());
                Num::Float(if want_min { x.min(y) } else { x.max(y) })
            }
        }
    }

    pub fn as_f64(self) -> f64 {
        match self {
            Num::Null => 0.0,
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    pub fn is_null(self) -> bool {
        matches!(self, Num::Null)
    }

    /// The value with static type `ty`.
    pub fn to_value(self, ty: AttrType) -> Value {
        match self {
            Num::Null => Value::Null,
            Num::Int(i) => Value::Long(i).cast(ty),
            Num::Float(f) => Value::Double(f).cast(ty),
        }
    }

    /// From a stored value (integer or real column).
    pub fn from_value(v: &Value) -> Num {
        match v {
            Value::Int(i) => Num::Int(*i as i64),
            Value::Long(i) => Num::Int(*i),
            Value::Float(f) => Num::Float(*f as f64),
            Value::Double(f) => Num::Float(*f),
            _ => Num::Null,
        }
    }
}

/// A distinct value of a distinctCount set.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SetValue {
    Int(i64),
    /// f64 bits, with -0.0 folded into 0.0 and every NaN into one.
    Float(u64),
    Bool(bool),
    Str(String),
}

impl SetValue {
    pub fn float(f: f64) -> SetValue {
        let f = if f == 0.0 {
            0.0
        } else if f.is_nan() {
            f64::NAN
        } else {
            f
        };
        SetValue::Float(f.to_bits())
    }

    pub fn from_value(v: &Value) -> Option<SetValue> {
        Some(match v {
            Value::Null => return None,
            Value::Int(i) => SetValue::Int(*i as i64),
            Value::Long(i) => SetValue::Int(*i),
            Value::Float(f) => SetValue::float(*f as f64),
            Value::Double(f) => SetValue::float(*f),
            Value::Bool(b) => SetValue::Bool(*b),
            Value::Str(s) => SetValue::Str(s.clone()),
        })
    }

    pub fn to_json(&self) -> serde_json::Value {
        match self {
            SetValue::Int(i) => serde_json::Value::from(*i),
            SetValue::Float(b) => serde_json::Number::from_f64(f64::from_bits(*b))
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            SetValue::Bool(b) => serde_json::Value::Bool(*b),
            SetValue::Str(s) => serde_json::Value::String(s.clone()),
        }
    }

    pub fn from_json(v: &serde_json::Value, input: AttrType) -> Option<SetValue> {
        use serde_json::Value as J;
        Some(match (v, input) {
            (J::Number(n), AttrType::Int | AttrType::Long) => SetValue::Int(n.as_i64()?),
            (J::Number(n), _) => SetValue::float(n.as_f64()?),
            (J::Null, AttrType::Float | AttrType::Double) => SetValue::float(f64::NAN),
            (J::Bool(b), _) => SetValue::Bool(*b),
            (J::String(s), _) => SetValue::Str(s.clone()),
            _ => return None,
        })
    }
}

/// One cell of a partial. The set is boxed (for memory: a node holds one partial per key
/// and open bucket, millions with many keys, and an unboxed set made every cell, numbers
/// included, three times the size of a number).
#[derive(Debug, Clone, PartialEq)]
pub enum CellValue {
    Num(Num),
    Set(Box<HashSet<SetValue>>),
}

/// The latest-value columns of a bucket and the (time stamp, arrival) that chose them.
#[derive(Debug, Clone, PartialEq)]
pub struct Latest {
    pub ts: i64,
    /// Arrival order within a node; breaks ties of `ts` (the later arrival wins).
    pub seq: u64,
    pub values: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Partial {
    pub cells: Vec<CellValue>,
    pub latest: Option<Latest>,
}

impl Partial {
    /// The empty partial of `plan` (merging it changes nothing).
    pub fn empty(plan: &AggPlan) -> Partial {
        Partial {
            cells: plan
                .cells
                .iter()
                .map(|c| match c.kind {
                    CellKind::Set => CellValue::Set(Box::default()),
                    _ => CellValue::Num(Num::Null),
                })
                .collect(),
            latest: None,
        }
    }

    /// Merges `other` into `self`. `kinds` are the plan's cell kinds, in order.
    pub fn merge(&mut self, other: &Partial, kinds: &[CellKind]) {
        for ((mine, theirs), kind) in self.cells.iter_mut().zip(&other.cells).zip(kinds) {
            match (mine, theirs) {
                (CellValue::Num(a), CellValue::Num(b)) => {
                    *a = match kind {
                        CellKind::Min => a.pick(*b, true),
                        CellKind::Max => a.pick(*b, false),
                        _ => a.add(*b),
                    }
                }
                (CellValue::Set(a), CellValue::Set(b)) => a.extend(b.iter().cloned()),
                _ => debug_assert!(false, "cell kinds differ"),
            }
        }
        if let Some(theirs) = &other.latest {
            let take = match &self.latest {
                None => true,
                Some(mine) => (theirs.ts, theirs.seq) >= (mine.ts, mine.seq),
            };
            if take {
                self.latest = Some(theirs.clone());
            }
        }
    }

    /// Merges an owned `other` (saves clones of sets and latest values).
    pub fn merge_owned(&mut self, other: Partial, kinds: &[CellKind]) {
        if self.cells.iter().all(|c| matches!(c, CellValue::Num(Num::Null))) && self.latest.is_none() {
            let only_nums = self.cells.iter().all(|c| matches!(c, CellValue::Num(_)));
            if only_nums {
                *self = other;
                return;
            }
        }
        self.merge(&other, kinds);
    }

    pub fn num(&self, cell: usize) -> Num {
        match &self.cells[cell] {
            CellValue::Num(n) => *n,
            CellValue::Set(_) => Num::Null,
        }
    }

    pub fn set(&self, cell: usize) -> Option<&HashSet<SetValue>> {
        match &self.cells[cell] {
            CellValue::Set(s) => Some(s),
            CellValue::Num(_) => None,
        }
    }

    /// The value of output `index` of the plan (after AGG_TIMESTAMP), given the group-by
    /// values of the row.
    pub fn output(&self, plan: &AggPlan, index: usize, key: &[Value]) -> Value {
        let out = &plan.outputs[index];
        match &out.kind {
            OutputKind::Key(k) => key.get(*k).cloned().unwrap_or(Value::Null),
            OutputKind::Latest(l) => {
                self.latest.as_ref().and_then(|x| x.values.get(*l).cloned()).unwrap_or(Value::Null)
            }
            OutputKind::Agg(f) => match *f {
                AggFunc::Sum { sum, .. } => self.num(sum).to_value(out.ty),
                AggFunc::Count { count } => Value::Long(match self.num(count) {
                    Num::Int(i) => i,
                    _ => 0,
                }),
                AggFunc::Avg { sum, nonnull } => match (self.num(sum), self.num(nonnull)) {
                    (s, Num::Int(n)) if n > 0 && !s.is_null() => Value::Double(s.as_f64() / n as f64),
                    _ => Value::Null,
                },
                AggFunc::Min { cell } | AggFunc::Max { cell } => self.num(cell).to_value(out.ty),
                AggFunc::DistinctCount { set } => Value::Long(self.set(set).map(|s| s.len() as i64).unwrap_or(0)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A node holds a partial per key and open bucket (millions with many keys): a numeric
    /// cell stays the size of a number and its tag, whatever a set costs.
    #[test]
    fn a_cell_is_two_words() {
        assert_eq!(std::mem::size_of::<CellValue>(), 16);
        assert_eq!(std::mem::size_of::<Num>(), 16);
    }

    const KINDS: [CellKind; 6] =
        [CellKind::Count, CellKind::NonNull, CellKind::Sum, CellKind::Min, CellKind::Max, CellKind::Set];

    /// A partial with integer-valued inputs (so float sums are exact and merges can be
    /// compared with `==`), as one event or nothing would make it.
    fn partial() -> impl Strategy<Value = Partial> {
        (
            0i64..5,
            prop::option::of(-1000i64..1000),
            prop::bool::ANY,
            prop::collection::hash_set(0i64..20, 0..4),
            prop::option::of((0i64..50, 0u64..1000, -5i64..5)),
        )
            .prop_map(|(count, value, as_float, set, latest)| {
                let (nonnull, sum, min, max) = match value {
                    None => (Num::Null, Num::Null, Num::Null, Num::Null),
                    Some(v) => {
                        let n = if as_float { Num::Float(v as f64) } else { Num::Int(v) };
                        (Num::Int(1), n, n, n)
                    }
                };
                Partial {
                    cells: vec![
                        CellValue::Num(if count == 0 { Num::Null } else { Num::Int(count) }),
                        CellValue::Num(nonnull),
                        CellValue::Num(sum),
                        CellValue::Num(min),
                        CellValue::Num(max),
                        CellValue::Set(Box::new(set.into_iter().map(SetValue::Int).collect())),
                    ],
                    latest: latest.map(|(ts, seq, v)| Latest { ts, seq, values: vec![Value::Long(v)] }),
                }
            })
    }

    fn merged(a: &Partial, b: &Partial) -> Partial {
        let mut x = a.clone();
        x.merge(b, &KINDS);
        x
    }

    /// Latest values tie only when (ts, seq) tie, which one node never produces; make seq
    /// unique so the comparison is a total order, as in the engine.
    fn distinct_seqs(ps: &mut [&mut Partial]) {
        for (i, p) in ps.iter_mut().enumerate() {
            if let Some(l) = &mut p.latest {
                l.seq = l.seq * 8 + i as u64;
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn merge_is_commutative(mut a in partial(), mut b in partial()) {
            distinct_seqs(&mut [&mut a, &mut b]);
            prop_assert_eq!(merged(&a, &b), merged(&b, &a));
        }

        #[test]
        fn merge_is_associative(mut a in partial(), mut b in partial(), mut c in partial()) {
            distinct_seqs(&mut [&mut a, &mut b, &mut c]);
            prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
        }

        #[test]
        fn empty_is_the_identity(a in partial()) {
            let empty = Partial {
                cells: KINDS.iter().map(|k| if *k == CellKind::Set { CellValue::Set(Box::default()) } else { CellValue::Num(Num::Null) }).collect(),
                latest: None,
            };
            prop_assert_eq!(merged(&a, &empty), a.clone());
            prop_assert_eq!(merged(&empty, &a), a.clone());
            let mut owned = empty.clone();
            owned.merge_owned(a.clone(), &KINDS);
            prop_assert_eq!(owned, a);
        }

        /// Merging partials of any split of a list of events gives the partial of the
        /// whole list: what makes per-core, per-flush and per-node partials add up.
        #[test]
        fn any_split_gives_the_same_totals(values in prop::collection::vec(prop::option::of(-1_000_000i64..1_000_000), 1..60), cut in 0usize..60) {
            let one = |v: Option<i64>, ts: i64| Partial {
                cells: vec![
                    CellValue::Num(Num::Int(1)),
                    CellValue::Num(if v.is_some() { Num::Int(1) } else { Num::Null }),
                    CellValue::Num(v.map(Num::Int).unwrap_or(Num::Null)),
                    CellValue::Num(v.map(Num::Int).unwrap_or(Num::Null)),
                    CellValue::Num(v.map(Num::Int).unwrap_or(Num::Null)),
                    CellValue::Set(Box::new(v.map(|x| SetValue::Int(x % 7)).into_iter().collect())),
                ],
                latest: Some(Latest { ts, seq: ts as u64, values: vec![v.map(Value::Long).unwrap_or(Value::Null)] }),
            };
            let cut = cut.min(values.len());
            let fold = |vs: &[Option<i64>], offset: usize| {
                let mut p = one(vs[0], offset as i64);
                for (i, v) in vs.iter().enumerate().skip(1) {
                    p.merge(&one(*v, (offset + i) as i64), &KINDS);
                }
                p
            };
            let whole = fold(&values, 0);
            if cut > 0 && cut < values.len() {
                let mut left = fold(&values[..cut], 0);
                let right = fold(&values[cut..], cut);
                left.merge(&right, &KINDS);
                prop_assert_eq!(&left, &whole);
            }
            let non_null: Vec<i64> = values.iter().flatten().copied().collect();
            prop_assert_eq!(whole.num(0), Num::Int(values.len() as i64));
            prop_assert_eq!(whole.num(2), if non_null.is_empty() { Num::Null } else { Num::Int(non_null.iter().sum()) });
            prop_assert_eq!(whole.num(3), non_null.iter().min().map(|m| Num::Int(*m)).unwrap_or(Num::Null));
            prop_assert_eq!(&whole.latest.as_ref().unwrap().values[0], &values.last().unwrap().map(Value::Long).unwrap_or(Value::Null));
        }
    }

    #[test]
    fn later_arrival_wins_a_time_stamp_tie() {
        let p = |seq, v| Partial { cells: vec![], latest: Some(Latest { ts: 5, seq, values: vec![Value::Long(v)] }) };
        let mut a = p(1, 10);
        a.merge(&p(2, 20), &[]);
        assert_eq!(a.latest.unwrap().values[0], Value::Long(20));
        let mut b = p(2, 20);
        b.merge(&p(1, 10), &[]);
        assert_eq!(b.latest.unwrap().values[0], Value::Long(20));
    }

    #[test]
    fn nulls_merge_like_sql() {
        let mut a = Partial { cells: vec![CellValue::Num(Num::Null), CellValue::Num(Num::Null)], latest: None };
        let b = Partial { cells: vec![CellValue::Num(Num::Float(2.5)), CellValue::Num(Num::Null)], latest: None };
        a.merge(&b, &[CellKind::Sum, CellKind::Min]);
        assert_eq!(a.cells, vec![CellValue::Num(Num::Float(2.5)), CellValue::Num(Num::Null)]);
        assert_eq!(Num::Int(i64::MAX).add(Num::Int(1)), Num::Int(i64::MIN), "wraps like Java's long");
    }
}
