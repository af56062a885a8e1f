//! PostgreSQL values: how an engine value is bound as a column's type, and read back.

use crate::lang::types::{AttrType, Value};
use crate::store::rows::Field;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};

/// A value bound as the type of its column, borrowed from the row (no copy of strings:
/// this runs for every value of every flushed row).
#[derive(Debug)]
pub(super) enum Param<'a> {
    I32(Option<i32>),
    I64(Option<i64>),
    F32(Option<f32>),
    F64(Option<f64>),
    Text(Option<&'a str>),
    Bool(Option<bool>),
}

impl<'a> Param<'a> {
    pub(super) fn new(v: &'a Value, t: AttrType) -> Param<'a> {
        Param::from_field(Field::from(v), t)
    }

    /// `v` bound as column type `t` (numbers widened or narrowed, anything else null).
    pub(super) fn from_field(v: Field<'a>, t: AttrType) -> Param<'a> {
        match t {
            AttrType::Int => Param::I32(match v {
                Field::Int(i) => Some(i),
                Field::Long(i) => Some(i as i32),
                _ => None,
            }),
            AttrType::Long => Param::I64(v.as_i64()),
            AttrType::Float => Param::F32(v.as_f64().map(|f| f as f32)),
            AttrType::Double => Param::F64(v.as_f64()),
            AttrType::String => Param::Text(match v {
                Field::Str(s) => Some(s),
                _ => None,
            }),
            AttrType::Bool => Param::Bool(match v {
                Field::Bool(b) => Some(b),
                Field::Int(i) => Some(i != 0),
                Field::Long(i) => Some(i != 0),
                _ => None,
            }),
        }
    }
}

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Param::I32(v) => v.to_sql(ty, out),
            Param::I64(v) => v.to_sql(ty, out),
            Param::F32(v) => v.to_sql(ty, out),
            Param::F64(v) => v.to_sql(ty, out),
            Param::Text(v) => v.to_sql(ty, out),
            Param::Bool(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        [Type::INT4, Type::INT8, Type::FLOAT4, Type::FLOAT8, Type::TEXT, Type::BOOL].contains(ty)
    }

    to_sql_checked!();
}

pub(super) fn read_value(row: &postgres::Row, i: usize, t: AttrType) -> std::result::Result<Value, postgres::Error> {
    Ok(match t {
        AttrType::Int => row.try_get::<_, Option<i32>>(i)?.map(Value::Int),
        AttrType::Long => row.try_get::<_, Option<i64>>(i)?.map(Value::Long),
        AttrType::Float => row.try_get::<_, Option<f32>>(i)?.map(Value::Float),
        AttrType::Double => row.try_get::<_, Option<f64>>(i)?.map(Value::Double),
        AttrType::String => row.try_get::<_, Option<String>>(i)?.map(Value::Str),
        AttrType::Bool => row.try_get::<_, Option<bool>>(i)?.map(Value::Bool),
    }
    .unwrap_or(Value::Null))
}
