//! The per-event path: one aggregation's partials for the finest duration, owned by one
//! worker thread.
//!
//! Layout (chosen for speed): a partial is a fixed run of 64-bit words in one flat vector
//! (`stride` words per (group, bucket)), addressed by a dense slot number. Group keys and
//! strings are interned to dense ids. Each group keeps its buckets in a small sorted list
//! and remembers the bucket it touched last, so the common case (the next event of a group
//! falls in the same second) updates the words directly, and a group moving on to a new
//! second appends to its own list. There is no global (group, bucket) hash map: inserting
//! into one was a cache miss per new bucket, which cost more than everything else the path
//! does. A late event finds its bucket by binary search in its group's list. Nothing here
//! locks, allocates (once the lists have grown) or formats per event.
//!
//! At a flush the worker swaps its [`State`] for an empty one and hands the full one to
//! the flusher, which turns it into owned [`Partial`]s off the hot path.

use crate::bucket::Bucketer;
use crate::expr::{Compiled, Row, Scalar};
use crate::intern::{Interner, NULL_KEY, pack};
use crate::key::{self, KeyBytes};
use crate::partial::{CellValue, Latest, Num, Partial, SetValue};
use crate::plan::{AggPlan, CellKind, StreamPlan, TimeSource};
use crate::timestamp;
use crate::types::{AttrType, Value};
use crate::wire::DecodedRow;
use foldhash::fast::FixedState;
use hashbrown::{HashMap, HashSet};
use std::sync::Arc;

/// One cell's update, with its word offset inside the partial.
#[derive(Debug, Clone, Copy)]
enum Op {
    Count {
        w: usize,
    },
    NonNull {
        attr: usize,
        w: usize,
    },
    SumInt {
        attr: usize,
        w: usize,
    },
    SumFloat {
        attr: usize,
        w: usize,
    },
    MinInt {
        attr: usize,
        w: usize,
    },
    MaxInt {
        attr: usize,
        w: usize,
    },
    MinFloat {
        attr: usize,
        w: usize,
    },
    MaxFloat {
        attr: usize,
        w: usize,
    },
    Set {
        attr: usize,
        w: usize,
    },
    /// A sum fused with its attribute's non-null count (one null check for both).
    SumIntCounted {
        attr: usize,
        w: usize,
        n: usize,
    },
    SumFloatCounted {
        attr: usize,
        w: usize,
        n: usize,
    },
}

#[derive(Debug, Clone)]
enum LatestOp {
    /// A bare attribute: copied as it is.
    Attr(usize),
    Expr(Compiled),
}

/// Tags of a latest value's type word.
const TAG_NULL: u64 = 0;
const TAG_INT: u64 = 1;
const TAG_FLOAT: u64 = 2;
const TAG_BOOL: u64 = 3;
const TAG_STR: u64 = 4;
const NO_SET: u64 = u64::MAX;

/// How an event's group key is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyMode {
    /// No group by: one group.
    Constant,
    /// One string attribute: its bytes are packed straight into an integer key.
    String(usize),
    /// One fixed-width attribute: its word is the key.
    Word(usize),
    /// Several attributes: encoded, then interned.
    General,
}

/// The per-event ops: each sum takes over its attribute's non-null count, whose own op
/// is dropped (speed: half the null checks and dispatches for sum and avg).
fn fuse(ops: &[Op]) -> Vec<Op> {
    let count_of = |attr: usize| {
        ops.iter().find_map(|o| match *o {
            Op::NonNull { attr: a, w } if a == attr => Some(w),
            _ => None,
        })
    };
    let summed = |attr: usize| {
        ops.iter().any(|o| matches!(*o, Op::SumInt { attr: a, .. } | Op::SumFloat { attr: a, .. } if a == attr))
    };
    ops.iter()
        .filter_map(|o| match *o {
            Op::NonNull { attr, .. } if summed(attr) => None,
            Op::SumInt { attr, w } => Some(count_of(attr).map_or(*o, |n| Op::SumIntCounted { attr, w, n })),
            Op::SumFloat { attr, w } => Some(count_of(attr).map_or(*o, |n| Op::SumFloatCounted { attr, w, n })),
            other => Some(other),
        })
        .collect()
}

/// What is fixed for an aggregation: compiled once at start.
#[derive(Debug, Clone)]
pub struct Layout {
    group_by: Vec<usize>,
    key_mode: KeyMode,
    time: TimeSource,
    filter: Option<Compiled>,
    /// One op per cell, in cell order (for reading the words back).
    ops: Vec<Op>,
    /// What runs per event: `ops` with each sum fused with its non-null count.
    update: Vec<Op>,
    /// For each cell, the word of its attribute's non-null count (sum/min/max use it to
    /// tell "no input" from 0).
    nonnull_of: Vec<Option<usize>>,
    kinds: Vec<CellKind>,
    inputs: Vec<Option<AttrType>>,
    latest: Vec<(LatestOp, AttrType)>,
    latest_at: usize,
    stride: usize,
    init: Vec<u64>,
    key_types: Vec<AttrType>,
}

impl Layout {
    pub fn new(plan: &AggPlan, stream: &StreamPlan) -> Layout {
        let mut init = Vec::new();
        let mut ops = Vec::new();
        for (w, c) in plan.cells.iter().enumerate() {
            let attr = c.attr.unwrap_or(0);
            let float = c.input.is_some_and(|t| !t.is_integer());
            let (op, start) = match c.kind {
                CellKind::Count => (Op::Count { w }, 0u64),
                CellKind::NonNull => (Op::NonNull { attr, w }, 0),
                CellKind::Sum if float => (Op::SumFloat { attr, w }, 0f64.to_bits()),
                CellKind::Sum => (Op::SumInt { attr, w }, 0),
                CellKind::Min if float => (Op::MinFloat { attr, w }, f64::INFINITY.to_bits()),
                CellKind::Min => (Op::MinInt { attr, w }, i64::MAX as u64),
                CellKind::Max if float => (Op::MaxFloat { attr, w }, f64::NEG_INFINITY.to_bits()),
                CellKind::Max => (Op::MaxInt { attr, w }, i64::MIN as u64),
                CellKind::Set => (Op::Set { attr, w }, NO_SET),
            };
            ops.push(op);
            init.push(start);
        }
        let update = fuse(&ops);
        let nonnull_of = plan
            .cells
            .iter()
            .map(|c| {
                matches!(c.kind, CellKind::Sum | CellKind::Min | CellKind::Max)
                    .then(|| plan.cells.iter().position(|n| n.kind == CellKind::NonNull && n.attr == c.attr))
                    .flatten()
            })
            .collect();
        let latest_at = init.len();
        let latest: Vec<(LatestOp, AttrType)> = plan
            .latest
            .iter()
            .map(|l| {
                let op = match l.expr {
                    Compiled::Column(i) => LatestOp::Attr(i),
                    ref e => LatestOp::Expr(e.clone()),
                };
                (op, l.ty)
            })
            .collect();
        if !latest.is_empty() {
            init.push(i64::MIN as u64); // time stamp: none yet
            init.push(0); // arrival sequence
            for _ in &latest {
                init.push(TAG_NULL);
                init.push(0);
            }
        }
        let key_mode = match plan.group_by[..] {
            [] => KeyMode::Constant,
            [a] if stream.attributes[a].ty == AttrType::String => KeyMode::String(a),
            [a] => KeyMode::Word(a),
            _ => KeyMode::General,
        };
        Layout {
            group_by: plan.group_by.clone(),
            key_mode,
            time: plan.time,
            filter: plan.filter.clone(),
            stride: init.len().max(1),
            ops,
            update,
            nonnull_of,
            kinds: plan.cells.iter().map(|c| c.kind).collect(),
            inputs: plan.cells.iter().map(|c| c.input).collect(),
            latest,
            latest_at,
            init: if init.is_empty() { vec![0] } else { init },
            key_types: plan.group_by.iter().map(|&i| stream.attributes[i].ty).collect(),
        }
    }

    pub fn key_types(&self) -> &[AttrType] {
        &self.key_types
    }
}

/// A group found by its packed key, with the bucket it touched last.
#[derive(Debug, Clone, Copy)]
struct Hot {
    id: u32,
    bucket: i64,
    slot: u32,
}

/// The partials gathered since the last flush.
#[derive(Debug, Default)]
pub struct State {
    /// Every group's stored key bytes, by group id.
    keys: Interner,
    /// Groups whose key packs into 128 bits (most: one symbol, one id, no group by), with
    /// their current bucket's slot: one lookup per event finds where to add.
    hot: HashMap<u128, Hot, FixedState>,
    /// Per group id: (bucket, slot) of the bucket it last updated.
    current: Vec<(i64, u32)>,
    /// Per group id: its (bucket, slot) pairs, sorted by bucket. Kept (cleared) across
    /// flushes up to the largest number of groups seen, so their memory is reused.
    buckets: Vec<Vec<(i64, u32)>>,
    /// Per slot: its (group id, bucket).
    owners: Vec<(u32, i64)>,
    words: Vec<u64>,
    sets: Vec<HashSet<u64, FixedState>>,
    strings: Interner,
    /// Events taken into this state.
    pub events: u64,
}

impl State {
    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }

    /// Partials held.
    pub fn len(&self) -> usize {
        self.owners.len()
    }

    /// Empties the state but keeps its memory, for the next swap.
    pub fn clear(&mut self) {
        self.keys.clear();
        self.hot.clear();
        self.current.clear();
        for list in &mut self.buckets {
            list.clear();
        }
        self.owners.clear();
        self.words.clear();
        self.sets.clear();
        self.strings.clear();
        self.events = 0;
    }

    /// The partials as owned data: (group key, finest bucket start, partial).
    pub fn drain_into(&self, layout: &Layout, out: &mut Vec<(KeyBytes, i64, Partial)>) {
        let keys: Vec<KeyBytes> = self.keys.iter().map(Arc::from).collect();
        out.reserve(self.owners.len());
        for (slot, &(key, bucket)) in self.owners.iter().enumerate() {
            let w = &self.words[slot * layout.stride..(slot + 1) * layout.stride];
            out.push((keys[key as usize].clone(), bucket, self.partial(layout, w)));
        }
    }

    fn partial(&self, layout: &Layout, w: &[u64]) -> Partial {
        let cells = layout
            .ops
            .iter()
            .enumerate()
            .map(|(c, op)| {
                let empty = layout.nonnull_of[c].is_some_and(|n| w[n] == 0);
                let num = |x: Num| CellValue::Num(if empty { Num::Null } else { x });
                match *op {
                    Op::Count { w: i } | Op::NonNull { w: i, .. } => CellValue::Num(Num::Int(w[i] as i64)),
                    Op::SumInt { w: i, .. }
                    | Op::MinInt { w: i, .. }
                    | Op::MaxInt { w: i, .. }
                    | Op::SumIntCounted { w: i, .. } => num(Num::Int(w[i] as i64)),
                    Op::SumFloat { w: i, .. }
                    | Op::MinFloat { w: i, .. }
                    | Op::MaxFloat { w: i, .. }
                    | Op::SumFloatCounted { w: i, .. } => num(Num::Float(f64::from_bits(w[i]))),
                    Op::Set { w: i, .. } => {
                        let input = layout.inputs[c].unwrap_or(AttrType::Long);
                        let set = if w[i] == NO_SET { None } else { self.sets.get(w[i] as usize) };
                        CellValue::Set(
                            set.into_iter()
                                .flatten()
                                .map(|&v| match input {
                                    AttrType::Int | AttrType::Long => SetValue::Int(v as i64),
                                    AttrType::Float | AttrType::Double => SetValue::Float(v),
                                    AttrType::Bool => SetValue::Bool(v != 0),
                                    AttrType::String => {
                                        SetValue::Str(String::from_utf8_lossy(self.strings.get(v as u32)).into_owned())
                                    }
                                })
                                .collect(),
                        )
                    }
                }
            })
            .collect();
        let latest = (!layout.latest.is_empty() && w[layout.latest_at] as i64 != i64::MIN).then(|| {
            let at = layout.latest_at;
            Latest {
                ts: w[at] as i64,
                seq: w[at + 1],
                values: layout
                    .latest
                    .iter()
                    .enumerate()
                    .map(|(j, (_, ty))| {
                        let (tag, bits) = (w[at + 2 + 2 * j], w[at + 3 + 2 * j]);
                        match tag {
                            TAG_INT => Value::Long(bits as i64).cast(*ty),
                            TAG_FLOAT => Value::Double(f64::from_bits(bits)).cast(*ty),
                            TAG_BOOL => Value::Bool(bits != 0),
                            TAG_STR => Value::Str(String::from_utf8_lossy(self.strings.get(bits as u32)).into_owned()),
                            _ => Value::Null,
                        }
                    })
                    .collect(),
            }
        });
        Partial { cells, latest }
    }
}

/// The per-group sorted bucket lists and the slots they point to.
struct Lists<'a> {
    buckets: &'a mut Vec<Vec<(i64, u32)>>,
    owners: &'a mut Vec<(u32, i64)>,
    words: &'a mut Vec<u64>,
    init: &'a [u64],
}

impl Lists<'_> {
    /// The slot of (group, bucket), made when new.
    #[inline]
    fn slot(&mut self, id: u32, bucket: i64) -> u32 {
        let k = id as usize;
        while self.buckets.len() <= k {
            self.buckets.push(Vec::new());
        }
        let list = &mut self.buckets[k];
        let at = match list.last() {
            // In time order: a new bucket at the end.
            None => 0,
            Some(&(last, _)) if last < bucket => list.len(),
            // Late: find it, or insert it in order.
            Some(_) => match list.binary_search_by_key(&bucket, |e| e.0) {
                Ok(i) => return list[i].1,
                Err(i) => i,
            },
        };
        let slot = self.owners.len() as u32;
        self.owners.push((id, bucket));
        self.words.extend_from_slice(self.init);
        list.insert(at, (bucket, slot));
        slot
    }
}

/// One aggregation's accumulator in one worker.
#[derive(Debug)]
pub struct Accumulator {
    layout: Arc<Layout>,
    state: State,
    bucketer: Bucketer,
    scratch: Vec<u8>,
}

impl Accumulator {
    pub fn new(plan: &AggPlan, layout: Arc<Layout>) -> Accumulator {
        Accumulator {
            layout,
            state: State::default(),
            bucketer: Bucketer::new(plan.zone.clone(), plan.finest()),
            scratch: Vec::new(),
        }
    }

    pub fn layout(&self) -> &Arc<Layout> {
        &self.layout
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// Hands over the gathered partials, continuing with `spare` (an empty, cleared state
    /// whose memory is reused).
    pub fn swap(&mut self, spare: State) -> State {
        std::mem::replace(&mut self.state, spare)
    }

    /// The event's time stamp, or `None` when it has none (the caller has validated events,
    /// so this only guards).
    #[inline]
    fn time_of(&self, row: &DecodedRow, buf: &[u8], arrival_ms: i64) -> Option<i64> {
        match self.layout.time {
            TimeSource::Millis(i) => (!row.is_null(i)).then(|| row.word(i) as i64),
            TimeSource::Text(i) => {
                if row.is_null(i) {
                    return None;
                }
                std::str::from_utf8(row.str_bytes(buf, i)).ok().and_then(timestamp::parse)
            }
            TimeSource::Arrival => Some(arrival_ms),
        }
    }

    /// Adds one decoded event. `seq` orders arrivals (ties of the time stamp go to the
    /// later arrival); `arrival_ms` is used when the aggregation has no `aggregate by`.
    #[inline]
    pub fn add(&mut self, row: &DecodedRow, buf: &[u8], arrival_ms: i64, seq: u64) {
        let layout = &*self.layout;
        if let Some(f) = &layout.filter
            && !f.holds(&row.with(buf))
        {
            return;
        }
        let Some(ts) = self.time_of(row, buf, arrival_ms) else {
            return;
        };
        let bucket = self.bucketer.start(ts);
        let st = &mut self.state;
        st.events += 1;
        // Speed: keys of one attribute (or none) pack into an integer, and one lookup in
        // `hot` gives the slot of their current bucket. Others are encoded and interned.
        let packed = match layout.key_mode {
            KeyMode::Constant => Some(0),
            KeyMode::String(a) | KeyMode::Word(a) if row.is_null(a) => Some(NULL_KEY),
            KeyMode::String(a) => pack(row.str_bytes(buf, a)),
            // A word and a null flag; the top nibble stays clear, unlike NULL_KEY.
            KeyMode::Word(a) => Some(row.word(a) as u128 | 1 << 64),
            KeyMode::General => None,
        };
        let State { keys, hot, current, buckets, owners, words, .. } = st;
        let mut lists = Lists { buckets, owners, words, init: &layout.init };
        let slot = if let Some(packed) = packed {
            match hot.get_mut(&packed) {
                Some(h) if h.bucket == bucket => h.slot,
                Some(h) => {
                    let slot = lists.slot(h.id, bucket);
                    (h.bucket, h.slot) = (bucket, slot);
                    slot
                }
                None => {
                    let id = keys.push_with(|out| key::encode(out, row, buf, &layout.group_by));
                    let slot = lists.slot(id, bucket);
                    hot.insert(packed, Hot { id, bucket, slot });
                    slot
                }
            }
        } else {
            key::encode(&mut self.scratch, row, buf, &layout.group_by);
            let id = keys.intern(&self.scratch);
            let k = id as usize;
            if k >= current.len() {
                current.resize(k + 1, (i64::MIN, u32::MAX));
            }
            match current[k] {
                (b, slot) if b == bucket && slot != u32::MAX => slot,
                _ => {
                    let slot = lists.slot(id, bucket);
                    current[k] = (bucket, slot);
                    slot
                }
            }
        };
        let base = slot as usize * layout.stride;
        let State { words, sets, strings, .. } = st;
        let w = &mut words[base..base + layout.stride];
        for op in &layout.update {
            match *op {
                Op::Count { w: i } => w[i] += 1,
                Op::SumIntCounted { attr, w: i, n } => {
                    if !row.is_null(attr) {
                        w[i] = (w[i] as i64).wrapping_add(row.word(attr) as i64) as u64;
                        w[n] += 1;
                    }
                }
                Op::SumFloatCounted { attr, w: i, n } => {
                    if !row.is_null(attr) {
                        w[i] = (f64::from_bits(w[i]) + f64::from_bits(row.word(attr))).to_bits();
                        w[n] += 1;
                    }
                }
                Op::NonNull { attr, w: i } => w[i] += !row.is_null(attr) as u64,
                Op::SumInt { attr, w: i } => {
                    if !row.is_null(attr) {
                        w[i] = (w[i] as i64).wrapping_add(row.word(attr) as i64) as u64;
                    }
                }
                Op::SumFloat { attr, w: i } => {
                    if !row.is_null(attr) {
                        w[i] = (f64::from_bits(w[i]) + f64::from_bits(row.word(attr))).to_bits();
                    }
                }
                Op::MinInt { attr, w: i } => {
                    if !row.is_null(attr) {
                        w[i] = (w[i] as i64).min(row.word(attr) as i64) as u64;
                    }
                }
                Op::MaxInt { attr, w: i } => {
                    if !row.is_null(attr) {
                        w[i] = (w[i] as i64).max(row.word(attr) as i64) as u64;
                    }
                }
                Op::MinFloat { attr, w: i } => {
                    if !row.is_null(attr) {
                        w[i] = f64::from_bits(w[i]).min(f64::from_bits(row.word(attr))).to_bits();
                    }
                }
                Op::MaxFloat { attr, w: i } => {
                    if !row.is_null(attr) {
                        w[i] = f64::from_bits(w[i]).max(f64::from_bits(row.word(attr))).to_bits();
                    }
                }
                Op::Set { attr, w: i } => {
                    if !row.is_null(attr) {
                        let v = match row.attr_type(attr) {
                            AttrType::String => strings.intern(row.str_bytes(buf, attr)) as u64,
                            AttrType::Float | AttrType::Double => {
                                match SetValue::float(f64::from_bits(row.word(attr))) {
                                    SetValue::Float(b) => b,
                                    _ => unreachable!(),
                                }
                            }
                            _ => row.word(attr),
                        };
                        if w[i] == NO_SET {
                            w[i] = sets.len() as u64;
                            sets.push(HashSet::default());
                        }
                        sets[w[i] as usize].insert(v);
                    }
                }
            }
        }
        if !layout.latest.is_empty() {
            let at = layout.latest_at;
            if (ts, seq) >= (w[at] as i64, w[at + 1]) {
                w[at] = ts as u64;
                w[at + 1] = seq;
                let r = row.with(buf);
                for (j, (op, _)) in layout.latest.iter().enumerate() {
                    let value = match op {
                        LatestOp::Attr(i) => r.get(*i),
                        LatestOp::Expr(e) => e.eval(&r),
                    };
                    let (tag, bits) = match value {
                        Scalar::Null => (TAG_NULL, 0),
                        Scalar::Int(i) => (TAG_INT, i as u64),
                        Scalar::Float(f) => (TAG_FLOAT, f.to_bits()),
                        Scalar::Bool(b) => (TAG_BOOL, b as u64),
                        Scalar::Str(s) => (TAG_STR, strings.intern(s) as u64),
                    };
                    w[at + 2 + 2 * j] = tag;
                    w[at + 3 + 2 * j] = bits;
                }
            }
        }
    }

    /// The cell kinds, for merging this aggregation's partials.
    pub fn kinds(&self) -> &[CellKind] {
        &self.layout.kinds
    }
}

impl Layout {
    pub fn kinds(&self) -> &[CellKind] {
        &self.kinds
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeConfig;
    use crate::plan::check;
    use crate::wire::Encoder;

    fn run(app: &str, events: &[Vec<Value>]) -> (crate::plan::AppPlan, Vec<(Vec<Value>, i64, Partial)>) {
        let plan = check(app, "t", &NodeConfig::default()).unwrap();
        let s = &plan.streams[0];
        let types: Vec<AttrType> = s.attributes.iter().map(|a| a.ty).collect();
        let layout = Arc::new(Layout::new(&plan.aggregations[0], s));
        let mut acc = Accumulator::new(&plan.aggregations[0], layout.clone());
        let mut buf = Vec::new();
        for e in events {
            Encoder::push_values(&mut buf, &types, e);
        }
        let mut row = DecodedRow::new(&types);
        let mut pos = 0;
        let mut seq = 0;
        while pos < buf.len() {
            row.decode(&buf, &mut pos).unwrap();
            acc.add(&row, &buf, 42_000, seq);
            seq += 1;
        }
        let state = acc.swap(State::default());
        assert!(state.events <= events.len() as u64);
        let mut out = Vec::new();
        state.drain_into(&layout, &mut out);
        let mut decoded: Vec<(Vec<Value>, i64, Partial)> =
            out.into_iter().map(|(k, b, p)| (key::decode(&k, layout.key_types()), b, p)).collect();
        decoded.sort_by(|a, b| (a.1, format!("{:?}", a.0)).cmp(&(b.1, format!("{:?}", b.0))));
        (plan, decoded)
    }

    fn ev(sym: &str, price: Option<f32>, qty: i32, ts: i64) -> Vec<Value> {
        vec![Value::Str(sym.into()), price.map(Value::Float).unwrap_or(Value::Null), Value::Int(qty), Value::Long(ts)]
    }

    #[test]
    fn sums_counts_min_max_latest_per_group_and_second() {
        let (plan, out) = run(
            "define stream S (symbol string, price float, quantity int, timestamp long);
             define aggregation A from S select symbol, avg(price) as avgPrice, sum(quantity) as q, min(price) as lo,
               max(price) as hi, count() as n, (price * quantity) as last, distinctCount(quantity) as dq
             group by symbol aggregate by timestamp every sec...min;",
            &[
                ev("WSO2", Some(50.0), 6, 1_496_289_950_000),
                ev("WSO2", Some(70.0), 10, 1_496_289_950_000),
                ev("IBM", Some(100.0), 26, 1_496_289_950_500),
                ev("WSO2", None, 6, 1_496_289_950_999),
                ev("WSO2", Some(1.0), 1, 1_496_289_951_000),
            ],
        );
        let a = &plan.aggregations[0];
        assert_eq!(out.len(), 3);
        let (key, bucket, p) = &out[1];
        assert_eq!((key.as_slice(), *bucket), (&[Value::Str("WSO2".into())][..], 1_496_289_950_000));
        let outputs: Vec<Value> = (0..a.outputs.len()).map(|i| p.output(a, i, key)).collect();
        assert_eq!(
            outputs,
            vec![
                Value::Str("WSO2".into()),
                Value::Double(60.0),
                Value::Long(22),
                Value::Float(50.0),
                Value::Float(70.0),
                Value::Long(3),
                Value::Null, // the latest event (…950999) has a null price, so null * 6 is null
                Value::Long(2),
            ]
        );
        let (_, _, ibm) = &out[0];
        assert_eq!(ibm.output(a, 6, &[]), Value::Float(2600.0));
        assert_eq!(out[2].1, 1_496_289_951_000);
    }

    #[test]
    fn later_arrival_wins_equal_time_stamps_and_late_events_do_not_override() {
        let (plan, out) = run(
            "define stream S (symbol string, price float, quantity int, timestamp long);
             define aggregation A from S select symbol, sum(price) as t aggregate by timestamp every sec;",
            &[
                ev("A", Some(1.0), 1, 1000),
                ev("B", Some(1.0), 1, 1100),
                ev("C", Some(1.0), 1, 1050),
                ev("D", Some(1.0), 1, 1100),
            ],
        );
        let a = &plan.aggregations[0];
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].2.output(a, 0, &[]), Value::Str("D".into()));
        assert_eq!(out[0].2.output(a, 1, &[]), Value::Double(4.0));
    }

    #[test]
    fn all_null_inputs_give_null_sum_and_avg_but_count_counts() {
        let (plan, out) = run(
            "define stream S (symbol string, price float, quantity int, timestamp long);
             define aggregation A from S select sum(price) as s, avg(price) as a, min(price) as m, count() as n
             aggregate by timestamp every sec;",
            &[ev("A", None, 1, 1000), ev("A", None, 1, 1001)],
        );
        let a = &plan.aggregations[0];
        let p = &out[0].2;
        let got: Vec<Value> = (0..4).map(|i| p.output(a, i, &[])).collect();
        assert_eq!(got, vec![Value::Null, Value::Null, Value::Null, Value::Long(2)]);
    }

    #[test]
    fn filter_and_arrival_time() {
        let (plan, out) = run(
            "define stream S (symbol string, price float, quantity int, timestamp long);
             define aggregation A from S[quantity > 5] select sum(quantity) as q aggregate every sec;",
            &[ev("A", None, 1, 0), ev("A", None, 6, 0), ev("A", None, 7, 0)],
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1, 42_000, "arrival time given by the worker");
        assert_eq!(out[0].2.output(&plan.aggregations[0], 0, &[]), Value::Long(13));
    }
}
