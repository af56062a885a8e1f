//! The binary batch encoding: how a batch of events of one stream is laid out in memory
//! and (from the node server on) on the wire. Columnar, so that reading an event is a few
//! indexed loads rather than a parse.
//!
//! ```text
//! batch   := events: u32 LE, then one column per attribute, in attribute order
//! column  := flags: u8 (bit 0: a null bitmap follows)
//!            [nulls: ceil(events / 8) bytes; bit i % 8 of byte i / 8 set when event i is null]
//!            values
//! values  := int: events × i32 LE | long: events × i64 LE | float: events × f32 LE
//!          | double: events × f64 LE | bool: events × u8 (0 or 1)
//!          | string: (events + 1) × u32 LE offsets (the first 0, never decreasing),
//!                    then offsets[events] bytes of UTF-8; event i is bytes offsets[i]..offsets[i+1]
//! ```
//!
//! A null event's fixed-width value is present (zero) so every column is indexed directly.
//! [`BatchView::parse`] checks the sizes of a whole batch once (O(attributes)); each
//! [`EventView`] then reads its values in place, with no allocation and no copy.
//!
//! Speed: the first encoding was row-wise, and decoding each event field by field was the
//! largest part of the per-event path.

use crate::lang::expr::{self, Scalar};
use crate::lang::types::{AttrType, Value};

/// Why bytes could not be read as a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// The batch ends inside column `attribute` (or has bytes after its last column).
    Truncated { attribute: usize },
    /// A string column's offsets decrease or point past its bytes.
    BadOffsets { attribute: usize },
    /// A string of column `attribute` (event `event`) is not UTF-8.
    BadUtf8 { attribute: usize, event: usize },
    /// A bool column holds a byte other than 0 or 1.
    BadBool { attribute: usize, event: usize, byte: u8 },
    /// More events than a batch may hold.
    TooManyEvents { events: usize },
}

/// The most events one batch may hold.
pub const MAX_BATCH_EVENTS: usize = 1 << 24;

impl WireError {
    pub fn describe(&self, names: &[&str]) -> String {
        let name = |i: &usize| names.get(*i).copied().unwrap_or("?");
        match self {
            WireError::Truncated { attribute } => {
                format!("the batch ends early or runs on, at attribute `{}`", name(attribute))
            }
            WireError::BadOffsets { attribute } => {
                format!("the string offsets of attribute `{}` are out of order or out of bounds", name(attribute))
            }
            WireError::BadUtf8 { attribute, event } => {
                format!("attribute `{}` of event {event} is not valid UTF-8", name(attribute))
            }
            WireError::BadBool { attribute, event, byte } => {
                format!("attribute `{}` of event {event} is a bool but holds the byte {byte}", name(attribute))
            }
            WireError::TooManyEvents { events } => {
                format!("{events} events in one batch; the limit is {MAX_BATCH_EVENTS}")
            }
        }
    }
}

fn width(t: AttrType) -> usize {
    match t {
        AttrType::Int | AttrType::Float => 4,
        AttrType::Long | AttrType::Double => 8,
        AttrType::Bool => 1,
        AttrType::String => 4,
    }
}

/// One column of a batch, as typed views of its bytes.
///
/// Speed: the values are viewed as arrays of fixed-size chunks, so reading event `e` is one
/// bounds check and one load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Column<'a> {
    ty: AttrType,
    nulls: Option<&'a [u8]>,
    /// long, double.
    w8: &'a [[u8; 8]],
    /// int, float; for strings the `events + 1` offsets.
    w4: &'a [[u8; 4]],
    /// bool.
    w1: &'a [u8],
    /// The string bytes.
    bytes: &'a [u8],
}

/// A parsed batch: the column positions, checked against the batch's length.
#[derive(Debug, Clone)]
pub struct BatchView<'a> {
    events: usize,
    columns: Vec<Column<'a>>,
}

fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    buf.get(at..at + 4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
}

impl<'a> BatchView<'a> {
    /// Checks the encoding of `buf` for a stream of `types` and locates its columns: every
    /// size, string offset, bool byte and string's UTF-8 (O(events); where batches enter
    /// the node, so that nothing a store would refuse reaches a flush).
    pub fn parse(buf: &'a [u8], types: &[AttrType]) -> Result<BatchView<'a>, WireError> {
        let view = Self::parse_checked(buf, types, true)?;
        view.check_utf8()?;
        Ok(view)
    }

    /// Locates the columns of a batch this node built or already checked with
    /// [`BatchView::parse`]: sizes only (O(attributes)), not each string offset and bool.
    /// Speed: the per-event checks were 6% of a worker's time. A batch that is not what it
    /// claims can still not cause undefined behaviour: reads stay bounds-checked.
    pub fn parse_trusted(buf: &'a [u8], types: &[AttrType]) -> Result<BatchView<'a>, WireError> {
        Self::parse_checked(buf, types, false)
    }

    fn parse_checked(buf: &'a [u8], types: &[AttrType], each_event: bool) -> Result<BatchView<'a>, WireError> {
        let events = read_u32(buf, 0).ok_or(WireError::Truncated { attribute: 0 })? as usize;
        if events > MAX_BATCH_EVENTS {
            return Err(WireError::TooManyEvents { events });
        }
        let mut p = 4usize;
        let mut columns = Vec::with_capacity(types.len());
        for (a, &ty) in types.iter().enumerate() {
            let truncated = WireError::Truncated { attribute: a };
            let flags = *buf.get(p).ok_or(truncated)?;
            p += 1;
            let nulls = if flags & 1 != 0 {
                let at = p;
                p += events.div_ceil(8);
                Some(at)
            } else {
                None
            };
            let values = p;
            let mut bytes = 0;
            if ty == AttrType::String {
                p += (events + 1) * 4;
                if p > buf.len() {
                    return Err(truncated);
                }
                bytes = p;
                let last = read_u32(buf, values + events * 4).ok_or(truncated)?;
                if each_event {
                    let mut prev = 0u32;
                    for e in 0..=events {
                        let o = read_u32(buf, values + e * 4).ok_or(truncated)?;
                        if o < prev || (e == 0 && o != 0) {
                            return Err(WireError::BadOffsets { attribute: a });
                        }
                        prev = o;
                    }
                }
                p += last as usize;
            } else {
                p += events * width(ty);
            }
            if p > buf.len() {
                return Err(truncated);
            }
            if each_event
                && ty == AttrType::Bool
                && let Some((e, &byte)) = buf[values..values + events].iter().enumerate().find(|(_, b)| **b > 1)
            {
                return Err(WireError::BadBool { attribute: a, event: e, byte });
            }
            let area = &buf[values..p];
            let mut c = Column {
                ty,
                nulls: nulls.map(|at| &buf[at..at + events.div_ceil(8)]),
                w8: &[],
                w4: &[],
                w1: &[],
                bytes: &[],
            };
            match ty {
                AttrType::Long | AttrType::Double => c.w8 = area.as_chunks::<8>().0,
                AttrType::Int | AttrType::Float => c.w4 = area.as_chunks::<4>().0,
                AttrType::Bool => c.w1 = area,
                AttrType::String => {
                    c.w4 = buf[values..bytes].as_chunks::<4>().0;
                    c.bytes = &buf[bytes..p];
                }
            }
            columns.push(c);
        }
        if p != buf.len() {
            return Err(WireError::Truncated { attribute: types.len().saturating_sub(1) });
        }
        Ok(BatchView { events, columns })
    }

    /// Checks that every string is UTF-8 (done once, where events enter the node; workers
    /// trust it).
    pub fn check_utf8(&self) -> Result<(), WireError> {
        for (a, c) in self.columns.iter().enumerate() {
            if c.ty != AttrType::String {
                continue;
            }
            // Speed: one validation of the column's bytes (std's fast path), then one byte
            // per event: valid text cut only where characters start is valid in every
            // piece. Checking each string on its own cost ~15 ns an event: a quarter of a
            // node's CPU per event on the binary path (measured under a CPU quota).
            let valid = std::str::from_utf8(c.bytes).is_ok()
                && (0..self.events).all(|e| {
                    let start = u32::from_le_bytes(c.w4[e]) as usize;
                    c.bytes.get(start).is_none_or(|b| b & 0xC0 != 0x80)
                });
            if !valid {
                // Name the first string that is not UTF-8 (a refusal: off the fast path).
                let bad = (0..self.events).find(|&e| std::str::from_utf8(self.str_bytes(a, e)).is_err());
                return Err(WireError::BadUtf8 { attribute: a, event: bad.unwrap_or(0) });
            }
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.events
    }

    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// Event `i`.
    #[inline]
    pub fn event(&self, i: usize) -> EventView<'_, 'a> {
        EventView { batch: self, i }
    }

    #[inline]
    fn is_null(&self, a: usize, e: usize) -> bool {
        match self.columns[a].nulls {
            None => false,
            Some(bits) => bits[e >> 3] & (1 << (e & 7)) != 0,
        }
    }

    #[inline]
    fn word(&self, a: usize, e: usize) -> u64 {
        let c = &self.columns[a];
        match c.ty {
            AttrType::Long | AttrType::Double => u64::from_le_bytes(c.w8[e]),
            AttrType::Int => i32::from_le_bytes(c.w4[e]) as i64 as u64,
            AttrType::Float => (f32::from_le_bytes(c.w4[e]) as f64).to_bits(),
            AttrType::Bool => c.w1[e] as u64,
            AttrType::String => 0,
        }
    }

    #[inline]
    fn str_bytes(&self, a: usize, e: usize) -> &'a [u8] {
        let c = &self.columns[a];
        let start = u32::from_le_bytes(c.w4[e]) as usize;
        let end = u32::from_le_bytes(c.w4[e + 1]) as usize;
        &c.bytes[start..end]
    }
}

/// One event of a batch, read in place.
#[derive(Debug, Clone, Copy)]
pub struct EventView<'v, 'a> {
    batch: &'v BatchView<'a>,
    i: usize,
}

impl<'a> EventView<'_, 'a> {
    #[inline]
    pub fn is_null(&self, a: usize) -> bool {
        self.batch.is_null(a, self.i)
    }

    /// A fixed-width attribute as a 64-bit word: integers as i64, floats as f64 bits (a
    /// `float` widened), bools as 0/1.
    #[inline]
    pub fn word(&self, a: usize) -> u64 {
        self.batch.word(a, self.i)
    }

    /// An 8-byte attribute (long, double) as its word, without dispatching on the type.
    #[inline]
    pub fn word8(&self, a: usize) -> u64 {
        u64::from_le_bytes(self.batch.columns[a].w8[self.i])
    }

    #[inline]
    pub fn str_bytes(&self, a: usize) -> &'a [u8] {
        self.batch.str_bytes(a, self.i)
    }

    pub fn attr_type(&self, a: usize) -> AttrType {
        self.batch.columns[a].ty
    }

    /// The owned value of attribute `a` (off the hot path: messages, tests).
    pub fn value(&self, a: usize) -> Value {
        expr::Row::get(self, a).to_value(self.attr_type(a))
    }
}

impl expr::Row for EventView<'_, '_> {
    #[inline]
    fn get(&self, a: usize) -> Scalar<'_> {
        if self.is_null(a) {
            return Scalar::Null;
        }
        match self.attr_type(a) {
            AttrType::Int | AttrType::Long => Scalar::Int(self.word(a) as i64),
            AttrType::Float | AttrType::Double => Scalar::Float(f64::from_bits(self.word(a))),
            AttrType::Bool => Scalar::Bool(self.word(a) != 0),
            AttrType::String => Scalar::Str(self.str_bytes(a)),
        }
    }
}

/// Builds a batch event by event.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    types: Vec<AttrType>,
    events: usize,
    columns: Vec<ColumnBuilder>,
}

#[derive(Debug, Clone, Default)]
struct ColumnBuilder {
    nulls: Vec<u8>,
    has_null: bool,
    values: Vec<u8>,
    /// Strings: the end offset of each event's bytes.
    ends: Vec<u32>,
}

impl BatchBuilder {
    pub fn new(types: &[AttrType]) -> BatchBuilder {
        BatchBuilder { types: types.to_vec(), events: 0, columns: vec![ColumnBuilder::default(); types.len()] }
    }

    pub fn len(&self) -> usize {
        self.events
    }

    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    fn push_null_bit(c: &mut ColumnBuilder, e: usize, null: bool) {
        if e.is_multiple_of(8) {
            c.nulls.push(0);
        }
        if null {
            c.has_null = true;
            *c.nulls.last_mut().expect("pushed above") |= 1 << (e % 8);
        }
    }

    /// Appends one event given as values; each value must be null or of its attribute's
    /// type, and there must be one per attribute (the router checks both).
    pub fn push_values(&mut self, values: &[Value]) {
        assert_eq!(values.len(), self.types.len(), "one value per attribute");
        let e = self.events;
        for ((c, t), v) in self.columns.iter_mut().zip(&self.types).zip(values) {
            Self::push_null_bit(c, e, v.is_null());
            match (t, v) {
                (AttrType::String, Value::Str(s)) => {
                    c.values.extend_from_slice(s.as_bytes());
                    c.ends.push(c.values.len() as u32);
                }
                (AttrType::String, _) => c.ends.push(c.values.len() as u32),
                (AttrType::Int, Value::Int(x)) => c.values.extend_from_slice(&x.to_le_bytes()),
                (AttrType::Long, Value::Long(x)) => c.values.extend_from_slice(&x.to_le_bytes()),
                (AttrType::Float, Value::Float(x)) => c.values.extend_from_slice(&x.to_le_bytes()),
                (AttrType::Double, Value::Double(x)) => c.values.extend_from_slice(&x.to_le_bytes()),
                (AttrType::Bool, Value::Bool(b)) => c.values.push(*b as u8),
                (t, Value::Null) => c.values.extend(std::iter::repeat_n(0, width(*t))),
                (t, v) => panic!("BatchBuilder::push_values: {v:?} is not a {t}"),
            }
        }
        self.events += 1;
    }

    /// Appends event `row` of another batch of the same stream, as it is.
    pub fn push_event(&mut self, row: &EventView<'_, '_>) {
        let e = self.events;
        for (a, (c, t)) in self.columns.iter_mut().zip(&self.types).enumerate() {
            Self::push_null_bit(c, e, row.is_null(a));
            match t {
                AttrType::String => {
                    if !row.is_null(a) {
                        c.values.extend_from_slice(row.str_bytes(a));
                    }
                    c.ends.push(c.values.len() as u32);
                }
                AttrType::Long | AttrType::Double => c.values.extend_from_slice(&row.word(a).to_le_bytes()),
                AttrType::Int => c.values.extend_from_slice(&(row.word(a) as i64 as i32).to_le_bytes()),
                AttrType::Float => c.values.extend_from_slice(&(f64::from_bits(row.word(a)) as f32).to_le_bytes()),
                AttrType::Bool => c.values.push(row.word(a) as u8),
            }
        }
        self.events += 1;
    }

    /// The encoded batch; the builder is left empty for reuse.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            4 + self.columns.iter().map(|c| 1 + c.nulls.len() + c.values.len() + 4 * (c.ends.len() + 1)).sum::<usize>(),
        );
        out.extend_from_slice(&(self.events as u32).to_le_bytes());
        for (c, t) in self.columns.iter_mut().zip(&self.types) {
            out.push(c.has_null as u8);
            if c.has_null {
                out.extend_from_slice(&c.nulls);
            }
            if *t == AttrType::String {
                out.extend_from_slice(&0u32.to_le_bytes());
                for end in &c.ends {
                    out.extend_from_slice(&end.to_le_bytes());
                }
            }
            out.extend_from_slice(&c.values);
            c.nulls.clear();
            c.has_null = false;
            c.values.clear();
            c.ends.clear();
        }
        self.events = 0;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPES: [AttrType; 6] =
        [AttrType::String, AttrType::Float, AttrType::Int, AttrType::Long, AttrType::Double, AttrType::Bool];

    fn events() -> Vec<Vec<Value>> {
        vec![
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
        ]
    }

    fn encode(evs: &[Vec<Value>]) -> Vec<u8> {
        let mut b = BatchBuilder::new(&TYPES);
        for e in evs {
            b.push_values(e);
        }
        b.finish()
    }

    #[test]
    fn round_trip_with_nulls() {
        let evs = events();
        let buf = encode(&evs);
        let view = BatchView::parse(&buf, &TYPES).unwrap();
        view.check_utf8().unwrap();
        assert_eq!(view.len(), 3);
        for (i, e) in evs.iter().enumerate() {
            let row = view.event(i);
            let got: Vec<Value> = (0..TYPES.len()).map(|a| row.value(a)).collect();
            assert_eq!(&got, e);
        }
        // Copying rows into another batch keeps them.
        let mut b = BatchBuilder::new(&TYPES);
        for i in (0..3).rev() {
            b.push_event(&view.event(i));
        }
        let copy = b.finish();
        let v2 = BatchView::parse(&copy, &TYPES).unwrap();
        assert_eq!((0..6).map(|a| v2.event(0).value(a)).collect::<Vec<_>>(), evs[2]);
        // The builder is reusable and an empty batch is valid.
        let empty = b.finish();
        assert_eq!(BatchView::parse(&empty, &TYPES).unwrap().len(), 0);
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
        let mut b = BatchBuilder::new(&types);
        for _ in 0..10 {
            b.push_values(&values);
        }
        let buf = b.finish();
        let view = BatchView::parse(&buf, &types).unwrap();
        for e in 0..10 {
            assert_eq!((0..70).map(|a| view.event(e).value(a)).collect::<Vec<_>>(), values);
        }
    }

    #[test]
    fn malformed_bytes_are_errors_not_panics() {
        let buf = encode(&events());
        for cut in 0..buf.len() {
            assert!(BatchView::parse(&buf[..cut], &TYPES).is_err(), "cut at {cut}");
        }
        let mut longer = buf.clone();
        longer.push(0);
        assert!(BatchView::parse(&longer, &TYPES).is_err(), "trailing bytes");
        let mut bad = buf.clone();
        let last = bad.len() - 1;
        bad[last] = 7; // the third bool (null) is stored as 0; make it 7
        assert_eq!(BatchView::parse(&bad, &TYPES).unwrap_err(), WireError::BadBool { attribute: 5, event: 2, byte: 7 });
        // Offsets out of order.
        let mut bad = buf.clone();
        bad[4 + 1 + 1 + 4..4 + 1 + 1 + 8].copy_from_slice(&9u32.to_le_bytes());
        assert!(matches!(BatchView::parse(&bad, &TYPES), Err(WireError::BadOffsets { attribute: 0 })));
        // Invalid UTF-8 is found by check_utf8.
        let mut b = BatchBuilder::new(&[AttrType::String]);
        b.push_values(&[Value::Str("ab".into())]);
        let mut raw = b.finish();
        let n = raw.len();
        raw[n - 1] = 0xff;
        assert_eq!(
            BatchView::parse(&raw, &[AttrType::String]).unwrap_err(),
            WireError::BadUtf8 { attribute: 0, event: 0 }
        );
        let view = BatchView::parse_trusted(&raw, &[AttrType::String]).unwrap();
        assert_eq!(view.check_utf8(), Err(WireError::BadUtf8 { attribute: 0, event: 0 }));
        // Valid text as a whole, cut inside a character: each piece is refused.
        let mut b = BatchBuilder::new(&[AttrType::String]);
        b.push_values(&[Value::Str("a\u{e9}".into())]);
        b.push_values(&[Value::Str("b".into())]);
        let mut raw = b.finish();
        assert_eq!(raw[9..13], 3u32.to_le_bytes(), "the second string starts after 'a' and the two bytes of 'é'");
        raw[9..13].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(
            BatchView::parse(&raw, &[AttrType::String]).unwrap_err(),
            WireError::BadUtf8 { attribute: 0, event: 0 }
        );
        // A huge event count is refused before anything is read.
        let mut huge = buf;
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(BatchView::parse(&huge, &TYPES).is_err());
    }
}
