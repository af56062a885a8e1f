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
use crate::store::rows::Field;

pub use super::key_bytes::KeyBytes;

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

/// One group-by value of an encoded key, read in place.
enum Part<'a> {
    Null,
    Str(&'a [u8]),
    Bool(bool),
    Word(u64),
}

/// The values of key `bytes` (of `types`), in order, without building them.
fn parts<'a>(bytes: &'a [u8], types: &'a [AttrType]) -> impl Iterator<Item = (AttrType, Part<'a>)> + 'a {
    let mut p = 0usize;
    types.iter().map(move |&t| {
        let mut take = |n: usize| -> &'a [u8] {
            let s = bytes.get(p..p + n).unwrap_or(&[]);
            p += n;
            s
        };
        if take(1) != [1] {
            return (t, Part::Null);
        }
        let part = match t {
            AttrType::String => {
                let len = u32::from_le_bytes(take(4).try_into().unwrap_or([0; 4])) as usize;
                Part::Str(take(len))
            }
            AttrType::Bool => Part::Bool(take(1) == [1]),
            _ => Part::Word(u64::from_le_bytes(take(8).try_into().unwrap_or([0; 8]))),
        };
        (t, part)
    })
}

/// Calls `f` with each value of key `bytes` (of `types`) as a [`Field`], as [`decode`]
/// would make them but borrowed: no allocation (this runs for every row of a flush).
pub fn visit(bytes: &[u8], types: &[AttrType], f: &mut dyn FnMut(Field<'_>)) {
    for (t, part) in parts(bytes, types) {
        match part {
            Part::Null => f(Field::Null),
            Part::Str(s) => match std::str::from_utf8(s) {
                Ok(s) => f(Field::Str(s)),
                // Keys come from checked UTF-8; decode's lossy reading, just in case.
                Err(_) => f(Field::Str(&String::from_utf8_lossy(s))),
            },
            Part::Bool(b) => f(Field::Bool(b)),
            Part::Word(w) => f(match t {
                AttrType::Int => Field::Int(w as i64 as i32),
                AttrType::Long => Field::Long(w as i64),
                AttrType::Float => Field::Float(f64::from_bits(w) as f32),
                _ => Field::Double(f64::from_bits(w)),
            }),
        }
    }
}

/// Whether a value of key `bytes` (of `types`) is null, read in place.
pub fn has_null(bytes: &[u8], types: &[AttrType]) -> bool {
    parts(bytes, types).any(|(_, p)| matches!(p, Part::Null))
}

/// The first value of key `bytes` packed into 128 bits so that packed values order as
/// [`cmp`] orders keys, as far as they go (strings by their first 16 bytes; nulls last).
/// Flushed rows are sorted by it, with [`cmp`] for ties only.
pub fn sort_prefix(bytes: &[u8], types: &[AttrType]) -> u128 {
    match parts(bytes, types).next() {
        None => 0,
        Some((_, Part::Null)) => u128::MAX,
        Some((_, Part::Str(s))) => {
            let mut b = [0u8; 16];
            let n = s.len().min(16);
            b[..n].copy_from_slice(&s[..n]);
            u128::from_be_bytes(b)
        }
        Some((_, Part::Bool(b))) => b as u128,
        Some((t, Part::Word(w))) => {
            let ordered = match t {
                AttrType::Int | AttrType::Long => w ^ (1 << 63),
                // The total order of floats as unsigned bits.
                _ if w >> 63 == 1 => !w,
                _ => w | (1 << 63),
            };
            (ordered as u128) << 64
        }
    }
}

/// Orders two keys of `types` as the stores' primary keys order their values: strings
/// bytewise (the C collation, SQLite's BINARY), numbers by value, nulls last (as
/// PostgreSQL's index does): [`Value::sort_cmp`] on the decoded values, without decoding.
pub fn cmp(a: &[u8], b: &[u8], types: &[AttrType]) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    for ((t, x), (_, y)) in parts(a, types).zip(parts(b, types)) {
        let o = match (x, y) {
            (Part::Null, Part::Null) => Ordering::Equal,
            (Part::Null, _) => Ordering::Greater,
            (_, Part::Null) => Ordering::Less,
            (Part::Str(x), Part::Str(y)) => x.cmp(y),
            (Part::Bool(x), Part::Bool(y)) => x.cmp(&y),
            (Part::Word(x), Part::Word(y)) => match t {
                AttrType::Int | AttrType::Long => (x as i64).cmp(&(y as i64)),
                _ => f64::from_bits(x).total_cmp(&f64::from_bits(y)),
            },
            _ => Ordering::Equal,
        };
        if o.is_ne() {
            return o;
        }
    }
    Ordering::Equal
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

    #[test]
    fn visit_hands_over_what_decode_builds() {
        let types =
            [AttrType::String, AttrType::Int, AttrType::Float, AttrType::Bool, AttrType::Long, AttrType::Double];
        let values = vec![
            Value::Str("IBM".into()),
            Value::Int(-3),
            Value::Float(1.5),
            Value::Null,
            Value::Long(9),
            Value::Double(-2.25),
        ];
        let mut k = Vec::new();
        encode_values(&mut k, &values);
        let mut seen = Vec::new();
        visit(&k, &types, &mut |f| seen.push(format!("{f:?}")));
        let want: Vec<String> = values.iter().map(|v| format!("{:?}", Field::from(v))).collect();
        assert_eq!(seen, want);
        assert!(has_null(&k, &types));
        encode_values(&mut k, &values[..3]);
        assert!(!has_null(&k, &types[..3]));
    }

    mod order {
        use super::*;
        use proptest::prelude::*;

        fn value(t: AttrType) -> BoxedStrategy<Value> {
            let v = match t {
                AttrType::String => "[a-c]{0,20}".prop_map(Value::Str).boxed(),
                AttrType::Int => (-3i32..3).prop_map(Value::Int).boxed(),
                AttrType::Long => prop_oneof![Just(i64::MIN), Just(i64::MAX), -3i64..3].prop_map(Value::Long).boxed(),
                AttrType::Float => (-2i8..2).prop_map(|f| Value::Float(f as f32 / 2.0)).boxed(),
                AttrType::Double => {
                    prop_oneof![Just(f64::INFINITY), Just(f64::NEG_INFINITY), (-2i8..2).prop_map(|f| f as f64 / 2.0)]
                        .prop_map(Value::Double)
                        .boxed()
                }
                AttrType::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
            };
            prop_oneof![1 => Just(Value::Null), 6 => v].boxed()
        }

        fn keys() -> impl Strategy<Value = (Vec<AttrType>, Vec<Value>, Vec<Value>)> {
            let ty = prop_oneof![
                Just(AttrType::String),
                Just(AttrType::Int),
                Just(AttrType::Long),
                Just(AttrType::Float),
                Just(AttrType::Double),
                Just(AttrType::Bool)
            ];
            proptest::collection::vec(ty, 1..4).prop_flat_map(|types| {
                let a: Vec<_> = types.iter().map(|&t| value(t)).collect();
                let b: Vec<_> = types.iter().map(|&t| value(t)).collect();
                (Just(types), a, b)
            })
        }

        proptest! {
            /// The encoded order is the decoded values' order, and the prefix never
            /// contradicts it.
            #[test]
            fn encoded_keys_order_as_their_values((types, a, b) in keys()) {
                let (mut ka, mut kb) = (Vec::new(), Vec::new());
                encode_values(&mut ka, &a);
                encode_values(&mut kb, &b);
                let (da, db) = (decode(&ka, &types), decode(&kb, &types));
                let want = da.iter().zip(&db).map(|(x, y)| x.sort_cmp(y)).find(|o| o.is_ne()).unwrap_or(std::cmp::Ordering::Equal);
                prop_assert_eq!(cmp(&ka, &kb, &types), want);
                let (pa, pb) = (sort_prefix(&ka, &types), sort_prefix(&kb, &types));
                if pa < pb {
                    prop_assert_ne!(want, std::cmp::Ordering::Greater);
                }
                if pa > pb {
                    prop_assert_ne!(want, std::cmp::Ordering::Less);
                }
            }
        }
    }
}
