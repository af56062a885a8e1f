//! MySQL values: how an engine value is bound as a column's type, and read back (typed
//! from a prepared statement's result, or as text).

use crate::lang::types::{AttrType, Value};
use mysql::Params;

/// Parameters `:p1`, `:p2`, … (see [`sql::placeholder`]).
pub(super) fn named(values: Vec<mysql::Value>) -> Params {
    if values.is_empty() {
        return Params::Empty;
    }
    Params::Named(values.into_iter().enumerate().map(|(i, v)| (format!("p{}", i + 1).into_bytes(), v)).collect())
}

pub(super) fn text(s: &str) -> mysql::Value {
    mysql::Value::Bytes(s.as_bytes().to_vec())
}

pub(super) fn int(i: i64) -> mysql::Value {
    mysql::Value::Int(i)
}

/// An engine value bound as column type `ty`.
pub(super) fn bind(v: &Value, ty: AttrType) -> mysql::Value {
    match (v, ty) {
        (Value::Null, _) => mysql::Value::NULL,
        (Value::Str(s), _) => text(s),
        (Value::Bool(b), _) => int(i64::from(*b)),
        (v, AttrType::Float | AttrType::Double) => v.as_f64().map(mysql::Value::Double).unwrap_or(mysql::Value::NULL),
        (v, _) => v.as_i64().map(int).unwrap_or(mysql::Value::NULL),
    }
}

/// A flushed row's field bound as column type `ty` (numbers widened or narrowed as the
/// load does).
pub(super) fn bind_field(v: crate::store::Field<'_>, ty: AttrType) -> mysql::Value {
    use crate::store::Field;
    match (v, ty) {
        (Field::Null, _) => mysql::Value::NULL,
        (Field::Str(s), _) => text(s),
        (Field::Bool(b), _) => int(i64::from(b)),
        (v, AttrType::Float | AttrType::Double) => v.as_f64().map(mysql::Value::Double).unwrap_or(mysql::Value::NULL),
        (v, _) => v.as_i64().map(int).unwrap_or(mysql::Value::NULL),
    }
}

/// A value read back as column type `ty`: typed (a prepared statement's result) or text.
pub(super) fn read_value(v: mysql::Value, ty: AttrType) -> std::result::Result<Value, String> {
    use mysql::Value as M;
    let bad = |v: &M| format!("a {ty:?} column holds {v:?}");
    Ok(match (v, ty) {
        (M::NULL, _) => Value::Null,
        (M::Bytes(b), AttrType::String) => Value::Str(String::from_utf8(b).map_err(|e| format!("not UTF-8: {e}"))?),
        (M::Bytes(b), _) => {
            let s = std::str::from_utf8(&b).map_err(|_| bad(&M::Bytes(b.clone())))?;
            let parsed = match ty {
                AttrType::Int => s.parse().ok().map(Value::Int),
                AttrType::Long => s.parse().ok().map(Value::Long),
                AttrType::Bool => s.parse::<i64>().ok().map(|i| Value::Bool(i != 0)),
                AttrType::Float => s.parse().ok().map(Value::Float),
                AttrType::Double => s.parse().ok().map(Value::Double),
                AttrType::String => unreachable!("matched above"),
            };
            parsed.ok_or_else(|| bad(&M::Bytes(b.clone())))?
        }
        (M::Int(i), t) => number(i as f64, Some(i), t),
        (M::UInt(u), t) => number(u as f64, i64::try_from(u).ok(), t),
        (M::Float(f), t) => number(f64::from(f), None, t),
        (M::Double(f), t) => number(f, None, t),
        (v, _) => return Err(bad(&v)),
    })
}

fn number(f: f64, i: Option<i64>, ty: AttrType) -> Value {
    match ty {
        AttrType::Int => Value::Int(i.unwrap_or(f as i64) as i32),
        AttrType::Long => Value::Long(i.unwrap_or(f as i64)),
        AttrType::Bool => Value::Bool(i.map(|i| i != 0).unwrap_or(f != 0.0)),
        AttrType::Float => Value::Float(f as f32),
        AttrType::Double => Value::Double(f),
        AttrType::String => Value::Str(i.map(|i| i.to_string()).unwrap_or_else(|| f.to_string())),
    }
}

/// A text column of a result row.
pub(super) fn read_text(v: mysql::Value) -> Option<String> {
    match v {
        mysql::Value::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        mysql::Value::NULL => None,
        other => Some(other.as_sql(true)),
    }
}

pub(super) fn read_int(v: mysql::Value) -> i64 {
    match read_value(v, AttrType::Long) {
        Ok(Value::Long(i)) => i,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_back_typed_or_as_text() {
        use mysql::Value as M;
        assert_eq!(read_value(M::Bytes(b"12".to_vec()), AttrType::Long), Ok(Value::Long(12)));
        assert_eq!(read_value(M::Bytes(b"1".to_vec()), AttrType::Bool), Ok(Value::Bool(true)));
        assert_eq!(read_value(M::Int(0), AttrType::Bool), Ok(Value::Bool(false)));
        assert_eq!(read_value(M::Float(1.5), AttrType::Float), Ok(Value::Float(1.5)));
        assert_eq!(read_value(M::Double(0.1), AttrType::Double), Ok(Value::Double(0.1)));
        assert_eq!(read_value(M::Bytes("é".as_bytes().to_vec()), AttrType::String), Ok(Value::Str("é".into())));
        assert_eq!(read_value(M::NULL, AttrType::Int), Ok(Value::Null));
        assert!(read_value(M::Bytes(b"x".to_vec()), AttrType::Int).is_err());
    }

    #[test]
    fn no_parameters_bind_as_none() {
        assert!(matches!(named(vec![]), Params::Empty));
        assert!(matches!(named(vec![int(1)]), Params::Named(_)));
    }
}
