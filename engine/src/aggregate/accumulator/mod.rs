//! The per-event path: one aggregation's partials for the finest duration, owned by one
//! worker thread.
//!
//! Program (chosen for speed): a partial is a fixed run of 64-bit words in one flat vector
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
//! the flusher, which turns it into owned partials (`aggregate::partial`) off the hot path.

mod hot;
mod program;
mod state;

pub use program::Program;
pub use state::State;

use crate::aggregate::intern::{Interner, NULL_KEY, pack};
use crate::aggregate::partial::SetValue;
use crate::ingest::key;
use crate::ingest::wire::{BatchView, EventView};
use crate::lang::expr::{Row, Scalar};
use crate::lang::plan::{AggPlan, TimeSource};
use crate::lang::types::AttrType;
use crate::time::bucket::Bucketer;
use crate::time::timestamp;
use foldhash::fast::FixedState;
use hashbrown::HashSet;
use hot::{Hot, prefetch};
use program::{KeyMode, LatestOp, NO_SET, Op, TAG_BOOL, TAG_FLOAT, TAG_INT, TAG_NULL, TAG_STR};
use state::Lists;
use std::sync::Arc;

/// One aggregation's accumulator in one worker.
#[derive(Debug)]
pub struct Accumulator {
    program: Arc<Program>,
    state: State,
    bucketer: Bucketer,
    scratch: Vec<u8>,
}

impl Accumulator {
    pub fn new(plan: &AggPlan, program: Arc<Program>) -> Accumulator {
        Accumulator {
            program,
            state: State::default(),
            bucketer: Bucketer::new(plan.zone.clone(), plan.finest()),
            scratch: Vec::new(),
        }
    }

    /// Hands over the gathered partials, continuing with `spare` (an empty, cleared state
    /// whose memory is reused).
    pub fn swap(&mut self, spare: State) -> State {
        std::mem::replace(&mut self.state, spare)
    }

    /// The event's time stamp, or `None` when it has none (the caller has validated events,
    /// so this only guards).
    #[inline]
    fn time_of(&self, row: &EventView<'_, '_>, arrival_ms: i64) -> Option<i64> {
        match self.program.time {
            TimeSource::Millis(i) => (!row.is_null(i)).then(|| row.word8(i) as i64),
            TimeSource::Text(i) => {
                if row.is_null(i) {
                    return None;
                }
                std::str::from_utf8(row.str_bytes(i)).ok().and_then(timestamp::parse)
            }
            TimeSource::Arrival => Some(arrival_ms),
        }
    }

    /// Adds one decoded event. `seq` orders arrivals (ties of the time stamp go to the
    /// later arrival); `arrival_ms` is used when the aggregation has no `aggregate by`.
    ///
    /// Speed: this runs once per event and aggregation. Its steps are separate functions
    /// marked `#[inline(always)]`, so the compiled loop is the same as one long body (the
    /// engine-core bench was measured before and after the split).
    #[inline]
    pub fn add(&mut self, row: &EventView<'_, '_>, arrival_ms: i64, seq: u64) {
        let program = &*self.program;
        if let Some(f) = &program.filter
            && !f.holds(row)
        {
            return;
        }
        let Some(ts) = self.time_of(row, arrival_ms) else {
            return;
        };
        let bucket = self.bucketer.start(ts);
        self.state.events += 1;
        let packed = packed_key(program, row);
        let hash = packed.map_or(0, |p| self.state.hot.hash(p));
        let slot = slot_of(&mut self.state, &mut self.scratch, program, row, bucket, packed, hash);
        self.apply(slot, row, ts, seq);
    }

    /// Adds the events of a batch, as [`Accumulator::add`] one by one would, but in rounds
    /// of [`ROUND`] events whose memory is asked for before it is used.
    ///
    /// Speed: with 10^5 group keys and more, a worker's groups do not fit in the cache,
    /// and event by event the core waited on two misses per event: the group's entry in
    /// `hot`, then its partial's words. A round hashes its events' keys and prefetches
    /// their entries, then looks them up and prefetches their words, then updates: the
    /// misses of a round overlap instead of following one another. Measured in
    /// `results/issue12-prefetch/`.
    pub fn add_batch(&mut self, view: &BatchView<'_>, arrival_ms: i64, first_seq: u64) {
        #[derive(Clone, Copy)]
        struct Pending {
            ts: i64,
            bucket: i64,
            packed: Option<u128>,
            hash: u64,
            /// The slot found in the lookup pass, or `u32::MAX` when it is left to
            /// [`slot_of`].
            slot: u32,
            /// False for an event the filter drops or that has no time stamp.
            kept: bool,
        }
        const NONE: Pending = Pending { ts: 0, bucket: 0, packed: None, hash: 0, slot: u32::MAX, kept: false };
        if matches!(self.program.key_mode, KeyMode::General) {
            for i in 0..view.len() {
                self.add(&view.event(i), arrival_ms, first_seq + i as u64);
            }
            return;
        }
        let program = self.program.clone();
        let program = &*program;
        let mut round = [NONE; ROUND];
        let mut start = 0;
        while start < view.len() {
            let n = ROUND.min(view.len() - start);
            // 1. Which events count, their buckets and keys; ask for their groups' entries.
            for (j, p) in round[..n].iter_mut().enumerate() {
                let row = view.event(start + j);
                *p = NONE;
                if program.filter.as_ref().is_some_and(|f| !f.holds(&row)) {
                    continue;
                }
                let Some(ts) = self.time_of(&row, arrival_ms) else {
                    continue;
                };
                let packed = packed_key(program, &row);
                let hash = packed.map_or(0, |k| self.state.hot.hash(k));
                if packed.is_some() {
                    self.state.hot.prefetch(hash);
                }
                *p = Pending { ts, bucket: self.bucketer.start(ts), packed, hash, slot: u32::MAX, kept: true };
            }
            // 2. Find the groups whose current bucket is the event's, and ask for their
            // words. A slot found here stays right whatever the round's earlier events do:
            // a (group, bucket) keeps its slot until the state is handed over.
            for p in round[..n].iter_mut().filter(|p| p.kept) {
                if let Some(key) = p.packed
                    && let Some(h) = self.state.hot.get(key, p.hash)
                    && h.bucket == p.bucket
                {
                    p.slot = h.slot;
                    if let Some(w) = self.state.words.get(h.slot as usize * program.stride) {
                        prefetch(w);
                    }
                }
            }
            // 3. Update, in arrival order.
            for (j, p) in round[..n].iter().enumerate() {
                if !p.kept {
                    continue;
                }
                let row = view.event(start + j);
                self.state.events += 1;
                let slot = if p.slot != u32::MAX {
                    p.slot
                } else {
                    slot_of(&mut self.state, &mut self.scratch, program, &row, p.bucket, p.packed, p.hash)
                };
                self.apply(slot, &row, p.ts, first_seq + (start + j) as u64);
            }
            start += n;
        }
    }

    /// Applies one event to the partial in `slot`.
    #[inline(always)]
    fn apply(&mut self, slot: u32, row: &EventView<'_, '_>, ts: i64, seq: u64) {
        let program = &*self.program;
        let base = slot as usize * program.stride;
        let State { words, sets, strings, .. } = &mut self.state;
        let w = &mut words[base..base + program.stride];
        update(w, &program.update, row, sets, strings);
        if !program.latest.is_empty() {
            update_latest(w, program, row, ts, seq, strings);
        }
    }
}

/// Events per round of [`Accumulator::add_batch`]: enough misses in flight to hide most
/// of a memory round trip, few enough that a round's bookkeeping stays in the L1 cache.
const ROUND: usize = 16;

/// The event's group key packed into an integer, for keys of one attribute (or none) that
/// pack; `None` for the others, which are encoded and interned.
#[inline(always)]
fn packed_key(program: &Program, row: &EventView<'_, '_>) -> Option<u128> {
    match program.key_mode {
        KeyMode::Constant => Some(0),
        KeyMode::String(a) | KeyMode::Word(a) | KeyMode::Float(a) if row.is_null(a) => Some(NULL_KEY),
        KeyMode::String(a) => pack(row.str_bytes(a)),
        // A word and a null flag; the top nibble stays clear, unlike NULL_KEY.
        KeyMode::Word(a) => Some(row.word(a) as u128 | 1 << 64),
        KeyMode::Float(a) => Some(key::float_key(row.word(a)) as u128 | 1 << 64),
        KeyMode::General => None,
    }
}

/// The slot of the event's group in `bucket`, made when new. `packed` is the event's
/// [`packed_key`] and `hash` its hash in `st.hot`.
///
/// Speed: keys of one attribute (or none) pack into an integer, and one lookup in `hot`
/// gives the slot of their current bucket. Others are encoded and interned.
#[inline(always)]
fn slot_of(
    st: &mut State,
    scratch: &mut Vec<u8>,
    program: &Program,
    row: &EventView<'_, '_>,
    bucket: i64,
    packed: Option<u128>,
    hash: u64,
) -> u32 {
    let State { keys, hot, current, buckets, owners, words, .. } = st;
    let mut lists = Lists { buckets, owners, words, init: &program.init };
    if let Some(packed) = packed {
        return match hot.get_mut(packed, hash) {
            Some(h) if h.bucket == bucket => h.slot,
            Some(h) => {
                let slot = lists.slot(h.id, bucket);
                (h.bucket, h.slot) = (bucket, slot);
                slot
            }
            None => {
                let id = keys.push_with(|out| key::encode(out, row, &program.group_by));
                let slot = lists.slot(id, bucket);
                hot.insert_new(hash, Hot { key: packed, id, bucket, slot });
                slot
            }
        };
    }
    key::encode(scratch, row, &program.group_by);
    let id = keys.intern(scratch);
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
}

/// Applies the cell updates of one event to its partial's words `w`.
///
/// Left as one match over the ops: it is the innermost loop of the engine (a dispatch per
/// cell per event), and splitting the arms into calls would only add indirection.
#[inline(always)]
fn update(
    w: &mut [u64],
    ops: &[Op],
    row: &EventView<'_, '_>,
    sets: &mut Vec<HashSet<u64, FixedState>>,
    strings: &mut Interner,
) {
    for op in ops {
        match *op {
            Op::Count { w: i } => w[i] += 1,
            Op::SumLongCounted { attr, w: i, n } => {
                if !row.is_null(attr) {
                    w[i] = (w[i] as i64).wrapping_add(row.word8(attr) as i64) as u64;
                    w[n] += 1;
                }
            }
            Op::SumDoubleCounted { attr, w: i, n } => {
                if !row.is_null(attr) {
                    w[i] = (f64::from_bits(w[i]) + f64::from_bits(row.word8(attr))).to_bits();
                    w[n] += 1;
                }
            }
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
                        AttrType::String => strings.intern(row.str_bytes(attr)) as u64,
                        AttrType::Float | AttrType::Double => match SetValue::float(f64::from_bits(row.word(attr))) {
                            SetValue::Float(b) => b,
                            _ => unreachable!(),
                        },
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
}

/// Takes the event's latest-value columns when it is the newest of its partial (by time
/// stamp, then arrival).
#[inline(always)]
fn update_latest(w: &mut [u64], program: &Program, row: &EventView<'_, '_>, ts: i64, seq: u64, strings: &mut Interner) {
    let at = program.latest_at;
    if (ts, seq) >= (w[at] as i64, w[at + 1]) {
        w[at] = ts as u64;
        w[at + 1] = seq;
        let r = row;
        for (j, (op, _)) in program.latest.iter().enumerate() {
            let value = match op {
                LatestOp::Attr(i) => r.get(*i),
                LatestOp::Expr(e) => e.eval(r),
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

#[cfg(test)]
mod tests;
