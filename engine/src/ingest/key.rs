//! Group keys: the group-by values of an event, encoded as bytes so that a key can be
//! interned and hashed without building owned values per event.
//!
//! Per group-by attribute: `0` for null, else `1` and the value (integers as i64 LE,
//! floats as f64 bits LE, bools as one byte, strings as u32 LE length and the bytes).
//!
//! A float key is normalised first: `-0.0` is `0.0`. The stores compare keys by value, so
//! two bit patterns of one value would be two groups here and one row there; inside one
//! flush that is a key merged twice, which PostgreSQL refuses (the flush would be retried
//! for ever). NaN, which no store orders like a number, is refused before it gets here
//! (`ingest::check`).

use crate::ingest::wire::EventView;
use crate::lang::types::{AttrType, Value};
use std::sync::Arc;

/// A group key in its encoded form, shared between durations during roll-up.
pub type KeyBytes = Arc<[u8]>;

/// Appends the key of `row` over `attrs` to `out` (cleared first). No allocation once `out`
/// has grown to the largest key.
#[inline]
pub fn encode(out: &mut Vec<u8>, row: &EventView<'_, '_>, attrs: &[usize]) {
    out.clear();
    for &a in attrs {
        if row.is_null(a) {
            out.push(0);
            continue;
        }
        out.push(1);
        match row.attr_type(a) {
            AttrType::String => {
                let s = row.str_bytes(a);
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s);
            }
            AttrType::Bool => out.push(row.word(a) as u8),
            AttrType::Float | AttrType::Double => out.extend_from_slice(&float_key(row.word(a)).to_le_bytes()),
            AttrType::Int | AttrType::Long => out.extend_from_slice(&row.word(a).to_le_bytes()),
        }
    }
}

/// The key word of a float (f64 bits): `-0.0` becomes `0.0`; every other value keeps its
/// bits.
#[inline]
pub fn float_key(bits: u64) -> u64 {
    if f64::from_bits(bits) == 0.0 { 0 } else { bits }
}

/// Decodes a key back into values of the given types.
pub fn decode(bytes: &[u8], types: &[AttrType]) -> Vec<Value> {
    let mut out = Vec::with_capacity(types.len());
    let mut p = 0usize;
    let take = |p: &mut usize, n: usize| -> &[u8] {
        let s = bytes.get(*p..*p + n).unwrap_or(&[]);
        *p += n;
        s
    };
    for t in types {
        if take(&mut p, 1) != [1] {
            out.push(Value::Null);
            continue;
        }
        let v = match t {
            AttrType::String => {
                let len = u32::from_le_bytes(take(&mut p, 4).try_into().unwrap_or([0; 4])) as usize;
                Value::Str(String::from_utf8_lossy(take(&mut p, len)).into_owned())
            }
            AttrType::Bool => Value::Bool(take(&mut p, 1) == [1]),
            _ => {
                let w = u64::from_le_bytes(take(&mut p, 8).try_into().unwrap_or([0; 8]));
                match t {
                    AttrType::Int => Value::Int(w as i64 as i32),
                    AttrType::Long => Value::Long(w as i64),
                    AttrType::Float => Value::Float(f64::from_bits(w) as f32),
                    _ => Value::Double(f64::from_bits(w)),
                }
            }
        };
        out.push(v);
    }
    out
}

/// Encodes owned values the same way as [`encode`] (for keys read back from a store).
pub fn encode_values(out: &mut Vec<u8>, values: &[Value]) {
    out.clear();
    values.iter().for_each(|v| push_value(out, v));
}

/// Encodes `values[i]` for each `i` of `attrs`, the same way as [`encode`].
pub fn encode_values_at(out: &mut Vec<u8>, values: &[Value], attrs: &[usize]) {
    out.clear();
    attrs.iter().for_each(|&i| push_value(out, &values[i]));
}

fn push_value(out: &mut Vec<u8>, v: &Value) {
    if v.is_null() {
        out.push(0);
        return;
    }
    out.push(1);
    match v {
        Value::Str(s) => {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        Value::Bool(b) => out.push(*b as u8),
        Value::Int(i) => out.extend_from_slice(&(*i as i64).to_le_bytes()),
        Value::Long(i) => out.extend_from_slice(&i.to_le_bytes()),
        Value::Float(f) => out.extend_from_slice(&float_key((*f as f64).to_bits()).to_le_bytes()),
        Value::Double(f) => out.extend_from_slice(&float_key(f.to_bits()).to_le_bytes()),
        Value::Null => unreachable!("handled above"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn negative_zero_is_the_key_of_zero() {
        use super::*;
        let (mut a, mut b) = (Vec::new(), Vec::new());
        encode_values(&mut a, &[Value::Double(-0.0), Value::Float(-0.0)]);
        encode_values(&mut b, &[Value::Double(0.0), Value::Float(0.0)]);
        assert_eq!(a, b);
        assert_eq!(decode(&a, &[AttrType::Double, AttrType::Float]), vec![Value::Double(0.0), Value::Float(0.0)]);
        assert!(decode(&a, &[AttrType::Double])[0].as_f64().unwrap().is_sign_positive());
        assert_ne!(float_key(1.5f64.to_bits()), float_key((-1.5f64).to_bits()));
    }

    use super::*;
    use crate::ingest::wire::{BatchBuilder, BatchView};

    #[test]
    fn round_trip_matches_owned_encoding() {
        let types = [AttrType::String, AttrType::Int, AttrType::Float, AttrType::Bool, AttrType::Long];
        let values = vec![Value::Str("IBM".into()), Value::Int(-3), Value::Float(1.5), Value::Null, Value::Long(9)];
        let mut b = BatchBuilder::new(&types);
        b.push_values(&values);
        let buf = b.finish();
        let view = BatchView::parse(&buf, &types).unwrap();
        let row = view.event(0);
        let mut k = Vec::new();
        encode(&mut k, &row, &[0, 1, 2, 3, 4]);
        assert_eq!(decode(&k, &types), values);
        let mut k2 = Vec::new();
        encode_values(&mut k2, &values);
        assert_eq!(k, k2);
        // Only the chosen attributes, in the chosen order.
        encode(&mut k, &row, &[4, 0]);
        assert_eq!(decode(&k, &[AttrType::Long, AttrType::String]), vec![Value::Long(9), Value::Str("IBM".into())]);
    }
}
