//! The partials one worker gathered for one aggregation since the last flush, and how
//! they become owned [`Partial`]s at a flush.

use super::hot::HotMap;
use super::program::{NO_SET, Op, Program, TAG_BOOL, TAG_FLOAT, TAG_INT, TAG_STR};
use crate::aggregate::intern::Interner;
use crate::aggregate::partial::{CellValue, Latest, Num, Partial, SetValue};
use crate::ingest::key::KeyBytes;
use crate::lang::types::{AttrType, Value};
use foldhash::fast::FixedState;
use hashbrown::HashSet;

/// The partials gathered since the last flush.
#[derive(Debug, Default)]
pub struct State {
    /// Every group's stored key bytes, by group id.
    pub(super) keys: Interner,
    /// Groups whose key packs into 128 bits (most: one symbol, one id, no group by), with
    /// their current bucket's slot: one lookup per event finds where to add.
    pub(super) hot: HotMap,
    /// Per group id: (bucket, slot) of the bucket it last updated.
    pub(super) current: Vec<(i64, u32)>,
    /// Per group id: its (bucket, slot) pairs, sorted by bucket. Kept (cleared) across
    /// flushes up to the largest number of groups seen, so their memory is reused.
    pub(super) buckets: Vec<Vec<(i64, u32)>>,
    /// Per slot: its (group id, bucket).
    pub(super) owners: Vec<(u32, i64)>,
    pub(super) words: Vec<u64>,
    pub(super) sets: Vec<HashSet<u64, FixedState>>,
    pub(super) strings: Interner,
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
    pub fn append_partials(&self, program: &Program, out: &mut Vec<(KeyBytes, i64, Partial)>) {
        let keys = self.keys.keys();
        out.reserve(self.owners.len());
        for (slot, &(key, bucket)) in self.owners.iter().enumerate() {
            let w = &self.words[slot * program.stride..(slot + 1) * program.stride];
            out.push((keys[key as usize].clone(), bucket, self.partial(program, w)));
        }
    }

    fn partial(&self, program: &Program, w: &[u64]) -> Partial {
        let cells = program
            .ops
            .iter()
            .enumerate()
            .map(|(c, op)| {
                let empty = program.nonnull_of[c].is_some_and(|n| w[n] == 0);
                let num = |x: Num| CellValue::Num(if empty { Num::Null } else { x });
                match *op {
                    Op::Count { w: i } | Op::NonNull { w: i, .. } => CellValue::Num(Num::Int(w[i] as i64)),
                    Op::SumInt { w: i, .. }
                    | Op::MinInt { w: i, .. }
                    | Op::MaxInt { w: i, .. }
                    | Op::SumIntCounted { w: i, .. }
                    | Op::SumLongCounted { w: i, .. } => num(Num::Int(w[i] as i64)),
                    Op::SumFloat { w: i, .. }
                    | Op::MinFloat { w: i, .. }
                    | Op::MaxFloat { w: i, .. }
                    | Op::SumFloatCounted { w: i, .. }
                    | Op::SumDoubleCounted { w: i, .. } => num(Num::Float(f64::from_bits(w[i]))),
                    Op::Set { w: i, .. } => {
                        let input = program.inputs[c].unwrap_or(AttrType::Long);
                        let set = if w[i] == NO_SET { None } else { self.sets.get(w[i] as usize) };
                        CellValue::Set(Box::new(
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
                        ))
                    }
                }
            })
            .collect();
        let latest = (!program.latest.is_empty() && w[program.latest_at] as i64 != i64::MIN).then(|| {
            let at = program.latest_at;
            Latest {
                ts: w[at] as i64,
                seq: w[at + 1],
                values: program
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
pub(super) struct Lists<'a> {
    pub(super) buckets: &'a mut Vec<Vec<(i64, u32)>>,
    pub(super) owners: &'a mut Vec<(u32, i64)>,
    pub(super) words: &'a mut Vec<u64>,
    pub(super) init: &'a [u64],
}

impl Lists<'_> {
    /// The slot of (group, bucket), made when new.
    #[inline]
    pub(super) fn slot(&mut self, id: u32, bucket: i64) -> u32 {
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
        // Speed: a plain loop; extend_from_slice of a few words was a memcpy call.
        self.words.extend(self.init.iter().copied());
        if at == list.len() {
            list.push((bucket, slot));
        } else {
            list.insert(at, (bucket, slot));
        }
        slot
    }
}
