//! The rows one flush writes to one table, as the stores read them.
//!
//! A live node writes hundreds of thousands of rows a flush. Building each as a
//! `Vec<Value>` cost an allocation per row, one per string value and one for the key's
//! decoded values, most of them freed on another thread than the one that made them
//! (measured on the sparse stream, 10 M events at ~0.6 rows an event: building, sorting
//! and dropping such rows was ~40% of the node's CPU, on the flush thread). So a store
//! reads rows through [`Rows`]: [`Rows::visit`] hands a row's fields over borrowed, in the
//! table's column order, straight from whatever holds them (the node's partials), and
//! [`Rows::row`] builds an owned row only where a path needs one (a small flush, a row
//! with a null key).
//!
//! `Vec<Vec<Value>>` is a [`Rows`] too (tests, benches, tools).

use crate::lang::types::Value;
use crate::store::schema::TableSchema;

/// One value of a row, borrowed: what [`Rows::visit`] hands over. The store casts it to
/// the column's type as it would a [`Value`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Field<'a> {
    Null,
    Int(i32),
    Long(i64),
    Float(f32),
    Double(f64),
    Bool(bool),
    Str(&'a str),
}

impl Field<'_> {
    pub fn is_null(&self) -> bool {
        matches!(self, Field::Null)
    }

    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Field::Int(v) => Some(v as i64),
            Field::Long(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Field::Int(v) => Some(v as f64),
            Field::Long(v) => Some(v as f64),
            Field::Float(v) => Some(v as f64),
            Field::Double(v) => Some(v),
            _ => None,
        }
    }
}

impl<'a> From<&'a Value> for Field<'a> {
    fn from(v: &'a Value) -> Field<'a> {
        match v {
            Value::Null => Field::Null,
            Value::Int(i) => Field::Int(*i),
            Value::Long(i) => Field::Long(*i),
            Value::Float(f) => Field::Float(*f),
            Value::Double(f) => Field::Double(*f),
            Value::Bool(b) => Field::Bool(*b),
            Value::Str(s) => Field::Str(s),
        }
    }
}

/// The rows of one table in one flush. `t` is always the table they are written to.
pub trait Rows: Send + Sync + std::fmt::Debug {
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row `i`'s bucket (`AGG_TIMESTAMP`, the first column of every table).
    fn bucket(&self, i: usize) -> i64;

    /// Calls `f` with each value of row `i`, in `t`'s column order. Allocates nothing where
    /// the rows are held compactly (the hot path of large flushes).
    fn visit(&self, t: &TableSchema, i: usize, f: &mut dyn FnMut(Field<'_>));

    /// Row `i` as owned values, in `t`'s column order.
    fn row(&self, t: &TableSchema, i: usize) -> Vec<Value>;

    /// Whether a value of row `i`'s primary key (the first `t.key_len` columns) is null.
    fn key_has_null(&self, t: &TableSchema, i: usize) -> bool {
        let (mut seen, mut null) = (0, false);
        self.visit(t, i, &mut |v| {
            if seen < t.key_len && v.is_null() {
                null = true;
            }
            seen += 1;
        });
        null
    }
}

impl Rows for Vec<Vec<Value>> {
    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn bucket(&self, i: usize) -> i64 {
        self[i][0].as_i64().unwrap_or(i64::MIN)
    }

    fn visit(&self, _: &TableSchema, i: usize, f: &mut dyn FnMut(Field<'_>)) {
        self[i].iter().for_each(|v| f(Field::from(v)));
    }

    fn row(&self, _: &TableSchema, i: usize) -> Vec<Value> {
        self[i].clone()
    }

    fn key_has_null(&self, t: &TableSchema, i: usize) -> bool {
        self[i][..t.key_len].iter().any(Value::is_null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::types::AttrType;
    use crate::store::schema::{Column, Role};
    use crate::time::granularity::Granularity;

    fn table() -> TableSchema {
        TableSchema {
            name: "T".into(),
            aggregation: "A".into(),
            duration: Granularity::Seconds,
            columns: vec![
                Column { name: "AGG_TIMESTAMP".into(), ty: AttrType::Long, role: Role::Timestamp },
                Column { name: "s".into(), ty: AttrType::String, role: Role::Key(0) },
                Column { name: "n".into(), ty: AttrType::Long, role: Role::Cell(0, crate::lang::plan::CellKind::Sum) },
            ],
            key_len: 2,
            partitioned: false,
        }
    }

    #[test]
    fn owned_rows_visit_their_values_in_order() {
        let t = table();
        let rows = vec![
            vec![Value::Long(1000), Value::Str("a".into()), Value::Long(3)],
            vec![Value::Long(2000), Value::Null, Value::Double(1.5)],
        ];
        assert_eq!(Rows::len(&rows), 2);
        assert_eq!(rows.bucket(1), 2000);
        let mut seen = Vec::new();
        rows.visit(&t, 0, &mut |f| seen.push(format!("{f:?}")));
        assert_eq!(seen, ["Long(1000)", "Str(\"a\")", "Long(3)"]);
        assert!(!rows.key_has_null(&t, 0));
        assert!(rows.key_has_null(&t, 1));
        assert_eq!(rows.row(&t, 1), rows[1]);
    }

    #[test]
    fn the_default_null_check_looks_at_the_key_only() {
        #[derive(Debug)]
        struct One(Vec<Value>);
        impl Rows for One {
            fn len(&self) -> usize {
                1
            }
            fn bucket(&self, _: usize) -> i64 {
                0
            }
            fn visit(&self, _: &TableSchema, _: usize, f: &mut dyn FnMut(Field<'_>)) {
                self.0.iter().for_each(|v| f(Field::from(v)));
            }
            fn row(&self, _: &TableSchema, _: usize) -> Vec<Value> {
                self.0.clone()
            }
        }
        let t = table();
        assert!(!One(vec![Value::Long(0), Value::Str("a".into()), Value::Null]).key_has_null(&t, 0));
        assert!(One(vec![Value::Long(0), Value::Null, Value::Long(1)]).key_has_null(&t, 0));
    }
}
