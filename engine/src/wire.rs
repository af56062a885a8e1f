//! The binary event encoding: how a batch of events of one stream is laid out in memory
//! and (from the node server on) on the wire.
//!
//! An event is a null bitmap of `ceil(n / 8)` bytes (bit `i % 8` of byte `i / 8` set when
//! attribute `i` is null), then each non-null attribute in order:
//! `int` i32 LE, `long` i64 LE, `float` f32 LE, `double` f64 LE, `bool` one byte (0 or 1),
//! `string` a u32 LE byte length and that many bytes of UTF-8. A batch is events back to back.
//!
//! Decoding fills a reusable [`DecodedRow`] (fixed-width values as 64-bit words, strings as
//! spans into the batch), so reading an event neither allocates nor copies.

use crate::expr::{Row, Scalar};
use crate::types::{AttrType, Value};

/// Why bytes could not be read as an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// The batch ends inside an event.
    Truncated { attribute: usize },
    /// A string attribute holds bytes that are not UTF-8.
    BadUtf8 { attribute: usize },
    /// A bool attribute holds a byte other than 0 or 1.
    BadBool { attribute: usize, byte: u8 },
}

impl WireError {
    pub fn describe(&self, names: &[&str]) -> String {
        let name = |i: &usize| names.get(*i).copied().unwrap_or("?");
        match self {
            WireError::Truncated { attribute } => {
                format!("the data ends inside attribute `{}`", name(attribute))
            }
            WireError::BadUtf8 { attribute } => {
                format!("attribute `{}` is not valid UTF-8", name(attribute))
            }
            WireError::BadBool { attribute, byte } => {
                format!("attribute `{}` is a bool but holds the byte {byte}", name(attribute))
            }
        }
    }
}

/// One decoded attribute: a null flag and either a 64-bit word (integers as i64, floats
/// as f64 bits, bools as 0/1) or the byte span of a string in the batch.
#[derive(Debug, Clone, Copy)]
struct Slot {
    ty: AttrType,
    null: bool,
    word: u64,
    start: u32,
    len: u32,
}

/// One decoded event.
#[derive(Debug, Clone)]
pub struct DecodedRow {
    // Speed: one vector of slots, walked by one iterator, so decoding an attribute costs a
    // dozen instructions instead of the fifty that four parallel vectors cost.
    slots: Vec<Slot>,
    bitmap_len: usize,
}

impl DecodedRow {
    pub fn new(types: &[AttrType]) -> DecodedRow {
        DecodedRow {
            slots: types.iter().map(|&ty| Slot { ty, null: true, word: 0, start: 0, len: 0 }).collect(),
            bitmap_len: types.len().div_ceil(8),
        }
    }

    /// Decodes the event starting at `*pos` of `buf`, and moves `*pos` past it.
    #[inline]
    pub fn decode(&mut self, buf: &[u8], pos: &mut usize) -> Result<(), WireError> {
        let mut p = *pos;
        let Some(bitmap) = buf.get(p..p + self.bitmap_len) else { return Err(WireError::Truncated { attribute: 0 }) };
        p += self.bitmap_len;
        // The null bits of up to 64 attributes in one word; wider streams read the bitmap.
        let wide = self.slots.len() > 64;
        let mut nulls = bitmap.iter().take(8).rev().fold(0u64, |acc, b| acc << 8 | *b as u64);
        for (i, slot) in self.slots.iter_mut().enumerate() {
            slot.null = if wide { bitmap[i >> 3] & (1 << (i & 7)) != 0 } else { nulls & 1 != 0 };
            nulls >>= 1;
            if slot.null {
                continue;
            }
            match slot.ty {
                AttrType::Long | AttrType::Double => {
                    let b: [u8; 8] = buf.get(p..p + 8).and_then(|b| b.try_into().ok()).ok_or_else(|| truncated(i))?;
                    slot.word = u64::from_le_bytes(b);
                    p += 8;
                }
                AttrType::Int => {
                    let b: [u8; 4] = buf.get(p..p + 4).and_then(|b| b.try_into().ok()).ok_or_else(|| truncated(i))?;
                    slot.word = i32::from_le_bytes(b) as i64 as u64;
                    p += 4;
                }
                AttrType::Float => {
                    // Speed: floats are widened once here, so aggregation only sees f64.
                    let b: [u8; 4] = buf.get(p..p + 4).and_then(|b| b.try_into().ok()).ok_or_else(|| truncated(i))?;
                    slot.word = (f32::from_le_bytes(b) as f64).to_bits();
                    p += 4;
                }
                AttrType::Bool => {
                    let b = *buf.get(p).ok_or_else(|| truncated(i))?;
                    if b > 1 {
                        return Err(WireError::BadBool { attribute: i, byte: b });
                    }
                    slot.word = b as u64;
                    p += 1;
                }
                AttrType::String => {
                    let b: [u8; 4] = buf.get(p..p + 4).and_then(|b| b.try_into().ok()).ok_or_else(|| truncated(i))?;
                    let len = u32::from_le_bytes(b) as usize;
                    p += 4;
                    if len > buf.len() - p {
                        return Err(truncated(i));
                    }
                    (slot.start, slot.len) = (p as u32, len as u32);
                    p += len;
                }
            }
        }
        *pos = p;
        Ok(())
    }

    /// Checks that the strings of the last decoded event are UTF-8 (done once, where
    /// events enter the node; workers trust it).
    pub fn check_utf8(&self, buf: &[u8]) -> Result<(), WireError> {
        for (i, slot) in self.slots.iter().enumerate() {
            if slot.ty == AttrType::String && !slot.null && std::str::from_utf8(self.str_bytes(buf, i)).is_err() {
                return Err(WireError::BadUtf8 { attribute: i });
            }
        }
        Ok(())
    }

    #[inline]
    pub fn is_null(&self, i: usize) -> bool {
        self.slots[i].null
    }

    /// The word of a fixed-width attribute (see the type's layout above).
    #[inline]
    pub fn word(&self, i: usize) -> u64 {
        self.slots[i].word
    }

    #[inline]
    pub fn str_bytes<'b>(&self, buf: &'b [u8], i: usize) -> &'b [u8] {
        let s = &self.slots[i];
        &buf[s.start as usize..(s.start + s.len) as usize]
    }

    pub fn attr_type(&self, i: usize) -> AttrType {
        self.slots[i].ty
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// A view of the row with its batch, for expression evaluation.
    pub fn with<'a>(&'a self, buf: &'a [u8]) -> RowRef<'a> {
        RowRef { row: self, buf }
    }

    /// The owned value of attribute `i` (off the hot path: messages, tests).
    pub fn value(&self, buf: &[u8], i: usize) -> Value {
        self.with(buf).get(i).to_value(self.slots[i].ty)
    }
}

/// A decoded row together with the batch its strings live in.
#[derive(Clone, Copy)]
pub struct RowRef<'a> {
    row: &'a DecodedRow,
    buf: &'a [u8],
}

impl Row for RowRef<'_> {
    #[inline]
    fn get(&self, i: usize) -> Scalar<'_> {
        let s = &self.row.slots[i];
        if s.null {
            return Scalar::Null;
        }
        match s.ty {
            AttrType::Int | AttrType::Long => Scalar::Int(s.word as i64),
            AttrType::Float | AttrType::Double => Scalar::Float(f64::from_bits(s.word)),
            AttrType::Bool => Scalar::Bool(s.word != 0),
            AttrType::String => Scalar::Str(self.row.str_bytes(self.buf, i)),
        }
    }
}

#[cold]
fn truncated(attribute: usize) -> WireError {
    WireError::Truncated { attribute }
}

/// Appends events to a batch buffer.
#[derive(Debug, Default)]
pub struct Encoder;

impl Encoder {
    /// Appends one event given as values; each value must be null or of its attribute's
    /// type (the caller has converted it).
    pub fn push_values(out: &mut Vec<u8>, types: &[AttrType], values: &[Value]) {
        debug_assert_eq!(types.len(), values.len());
        let start = out.len();
        out.resize(start + types.len().div_ceil(8), 0);
        for (i, (t, v)) in types.iter().zip(values).enumerate() {
            match (t, v) {
                (_, Value::Null) => out[start + (i >> 3)] |= 1 << (i & 7),
                (AttrType::Int, Value::Int(x)) => out.extend_from_slice(&x.to_le_bytes()),
                (AttrType::Long, Value::Long(x)) => out.extend_from_slice(&x.to_le_bytes()),
                (AttrType::Float, Value::Float(x)) => out.extend_from_slice(&x.to_le_bytes()),
                (AttrType::Double, Value::Double(x)) => out.extend_from_slice(&x.to_le_bytes()),
                (AttrType::Bool, Value::Bool(b)) => out.push(*b as u8),
                (AttrType::String, Value::Str(s)) => {
                    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                    out.extend_from_slice(s.as_bytes());
                }
                (t, v) => panic!("Encoder::push_values: {v:?} is not a {t}"),
            }
        }
    }

    /// Copies the encoded event `buf[start..end]` (from another batch) as it is.
    #[inline]
    pub fn push_raw(out: &mut Vec<u8>, event: &[u8]) {
        out.extend_from_slice(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPES: [AttrType; 6] =
        [AttrType::String, AttrType::Float, AttrType::Int, AttrType::Long, AttrType::Double, AttrType::Bool];

    #[test]
    fn round_trip_with_nulls() {
        let events = vec![
            vec![
                Value::Str("WSO2".into()),
                Value::Float(0.1),
                Value::Int(-6),
                Value::Long(1 << 40),
                Value::Double(2.5),
                Value::Bool(true),
            ],
            vec![Value::Null, Value::Null, Value::Int(7), Value::Null, Value::Double(-0.0), Value::Bool(false)],
            vec![Value::Str("é".into()), Value::Float(1.0), Value::Null, Value::Long(-1), Value::Null, Value::Null],
        ];
        let mut buf = Vec::new();
        for e in &events {
            Encoder::push_values(&mut buf, &TYPES, e);
        }
        let mut row = DecodedRow::new(&TYPES);
        let mut pos = 0;
        for e in &events {
            row.decode(&buf, &mut pos).unwrap();
            row.check_utf8(&buf).unwrap();
            let got: Vec<Value> = (0..TYPES.len()).map(|i| row.value(&buf, i)).collect();
            assert_eq!(&got, e);
        }
        assert_eq!(pos, buf.len());
    }

    #[test]
    fn streams_wider_than_64_attributes() {
        let types: Vec<AttrType> =
            (0..70).map(|i| if i % 3 == 0 { AttrType::String } else { AttrType::Long }).collect();
        let values: Vec<Value> = (0..70)
            .map(|i| match (i % 5 == 4, types[i]) {
                (true, _) => Value::Null,
                (false, AttrType::String) => Value::Str(format!("s{i}")),
                (false, _) => Value::Long(i as i64 * 1000),
            })
            .collect();
        let mut buf = Vec::new();
        Encoder::push_values(&mut buf, &types, &values);
        Encoder::push_values(&mut buf, &types, &values);
        let mut row = DecodedRow::new(&types);
        let mut pos = 0;
        for _ in 0..2 {
            row.decode(&buf, &mut pos).unwrap();
            let got: Vec<Value> = (0..70).map(|i| row.value(&buf, i)).collect();
            assert_eq!(got, values);
        }
        assert_eq!(pos, buf.len());
    }

    #[test]
    fn malformed_bytes_are_errors_not_panics() {
        let mut buf = Vec::new();
        Encoder::push_values(
            &mut buf,
            &TYPES,
            &[
                Value::Str("abc".into()),
                Value::Float(1.0),
                Value::Int(1),
                Value::Long(1),
                Value::Double(1.0),
                Value::Bool(true),
            ],
        );
        let mut row = DecodedRow::new(&TYPES);
        for cut in 0..buf.len() {
            let mut pos = 0;
            assert!(row.decode(&buf[..cut], &mut pos).is_err(), "cut at {cut}");
        }
        let mut bad = buf.clone();
        *bad.last_mut().unwrap() = 7;
        assert_eq!(row.decode(&bad, &mut 0), Err(WireError::BadBool { attribute: 5, byte: 7 }));
        let mut bad = buf.clone();
        bad[5] = 0xff;
        row.decode(&bad, &mut 0).unwrap();
        assert_eq!(row.check_utf8(&bad), Err(WireError::BadUtf8 { attribute: 0 }));
        let mut huge = buf;
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(row.decode(&huge, &mut 0), Err(WireError::Truncated { attribute: 0 })));
    }
}
