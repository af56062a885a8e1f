//! Attribute types and the owned value used off the hot path (store rows, query results).

use std::cmp::Ordering;
use std::fmt;

/// The attribute types of the app language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttrType {
    Int,
    Long,
    Float,
    Double,
    String,
    Bool,
}

impl AttrType {
    /// Parses a type keyword (case-insensitive, as Siddhi does).
    pub fn parse(word: &str) -> Option<AttrType> {
        Some(match word.to_ascii_lowercase().as_str() {
            "int" => AttrType::Int,
            "long" => AttrType::Long,
            "float" => AttrType::Float,
            "double" => AttrType::Double,
            "string" => AttrType::String,
            "bool" => AttrType::Bool,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            AttrType::Int => "int",
            AttrType::Long => "long",
            AttrType::Float => "float",
            AttrType::Double => "double",
            AttrType::String => "string",
            AttrType::Bool => "bool",
        }
    }

    pub fn is_numeric(self) -> bool {
        matches!(self, AttrType::Int | AttrType::Long | AttrType::Float | AttrType::Double)
    }

    pub fn is_integer(self) -> bool {
        matches!(self, AttrType::Int | AttrType::Long)
    }

    /// Siddhi's numeric promotion: int < long < float < double.
    pub fn promote(a: AttrType, b: AttrType) -> Option<AttrType> {
        fn rank(t: AttrType) -> Option<u8> {
            match t {
                AttrType::Int => Some(0),
                AttrType::Long => Some(1),
                AttrType::Float => Some(2),
                AttrType::Double => Some(3),
                _ => None,
            }
        }
        let r = rank(a)?.max(rank(b)?);
        Some([AttrType::Int, AttrType::Long, AttrType::Float, AttrType::Double][r as usize])
    }
}

impl fmt::Display for AttrType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An owned, typed value. `Float` keeps `f32` so that a `float` attribute prints as the
/// user wrote it (`0.1`, not `0.10000000149011612`).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i32),
    Long(i64),
    Float(f32),
    Double(f64),
    Bool(bool),
    Str(String),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn attr_type(&self) -> Option<AttrType> {
        Some(match self {
            Value::Null => return None,
            Value::Int(_) => AttrType::Int,
            Value::Long(_) => AttrType::Long,
            Value::Float(_) => AttrType::Float,
            Value::Double(_) => AttrType::Double,
            Value::Bool(_) => AttrType::Bool,
            Value::Str(_) => AttrType::String,
        })
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Int(v) => Some(v as f64),
            Value::Long(v) => Some(v as f64),
            Value::Float(v) => Some(v as f64),
            Value::Double(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Int(v) => Some(v as i64),
            Value::Long(v) => Some(v),
            _ => None,
        }
    }

    /// Converts to `ty` where Siddhi would (widening numerics, or narrowing a stored
    /// value back to its declared type); anything else becomes null.
    pub fn cast(self, ty: AttrType) -> Value {
        match (ty, self) {
            (_, Value::Null) => Value::Null,
            (AttrType::Int, Value::Int(v)) => Value::Int(v),
            (AttrType::Int, Value::Long(v)) => Value::Int(v as i32),
            (AttrType::Long, v @ (Value::Int(_) | Value::Long(_))) => Value::Long(v.as_i64().unwrap_or(0)),
            (AttrType::Float, v) => v.as_f64().map(|x| Value::Float(x as f32)).unwrap_or(Value::Null),
            (AttrType::Double, v) => v.as_f64().map(Value::Double).unwrap_or(Value::Null),
            (AttrType::Bool, Value::Bool(b)) => Value::Bool(b),
            (AttrType::Bool, Value::Long(v)) => Value::Bool(v != 0),
            (AttrType::Bool, Value::Int(v)) => Value::Bool(v != 0),
            (AttrType::String, Value::Str(s)) => Value::Str(s),
            _ => Value::Null,
        }
    }

    /// A total order for sorting: numbers numerically (across int/float kinds), strings
    /// bytewise, `false < true`; `Null` is handled by the caller (its place depends on the
    /// sort direction). Values of unrelated kinds order by kind.
    pub fn sort_cmp(&self, other: &Value) -> Ordering {
        match (self, other) {
            (Value::Null, Value::Null) => Ordering::Equal,
            (Value::Null, _) => Ordering::Greater,
            (_, Value::Null) => Ordering::Less,
            (Value::Str(a), Value::Str(b)) => a.cmp(b),
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (a, b) => match (a.as_i64(), b.as_i64()) {
                (Some(x), Some(y)) => x.cmp(&y),
                _ => match (a.as_f64(), b.as_f64()) {
                    (Some(x), Some(y)) => x.total_cmp(&y),
                    _ => a.kind_rank().cmp(&b.kind_rank()),
                },
            },
        }
    }

    fn kind_rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Int(_) | Value::Long(_) | Value::Float(_) | Value::Double(_) => 2,
            Value::Str(_) => 3,
        }
    }

    /// The JSON form of query results: numbers are numbers, non-finite floats are null.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Int(v) => J::from(*v),
            Value::Long(v) => J::from(*v),
            Value::Float(v) => {
                if v.is_finite() {
                    // Go through the shortest f32 text so 0.1f prints as 0.1.
                    v.to_string().parse::<f64>().map(J::from).unwrap_or(J::Null)
                } else {
                    J::Null
                }
            }
            Value::Double(v) => serde_json::Number::from_f64(*v).map(J::Number).unwrap_or(J::Null),
            Value::Bool(b) => J::Bool(*b),
            Value::Str(s) => J::String(s.clone()),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Int(v) => write!(f, "{v}"),
            Value::Long(v) => write!(f, "{v}"),
            Value::Float(v) => write!(f, "{v:?}"),
            Value::Double(v) => write!(f, "{v:?}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::Str(s) => f.write_str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promotion_follows_siddhi() {
        assert_eq!(AttrType::promote(AttrType::Float, AttrType::Int), Some(AttrType::Float));
        assert_eq!(AttrType::promote(AttrType::Int, AttrType::Long), Some(AttrType::Long));
        assert_eq!(AttrType::promote(AttrType::Long, AttrType::Double), Some(AttrType::Double));
        assert_eq!(AttrType::promote(AttrType::String, AttrType::Int), None);
    }

    #[test]
    fn floats_print_as_written() {
        assert_eq!(Value::Float(0.1).to_json().to_string(), "0.1");
        assert_eq!(Value::Double(60.0).to_json().to_string(), "60.0");
        assert_eq!(Value::Double(f64::NAN).to_json(), serde_json::Value::Null);
        assert_eq!(Value::Long(70).to_json().to_string(), "70");
    }

    #[test]
    fn sort_order_puts_null_last_and_compares_numbers_across_kinds() {
        let mut v = [Value::Null, Value::Double(2.5), Value::Long(2), Value::Int(3)];
        v.sort_by(|a, b| a.sort_cmp(b));
        assert_eq!(v, [Value::Long(2), Value::Double(2.5), Value::Int(3), Value::Null]);
    }
}
