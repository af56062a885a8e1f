//! What is fixed for one aggregation on the per-event path: the cell update ops with
//! their word offsets, the key mode and the latest-value columns, compiled once at start.

use crate::lang::expr::Compiled;
use crate::lang::plan::{AggPlan, CellKind, StreamPlan, TimeSource};
use crate::lang::types::AttrType;

/// One cell's update, with its word offset inside the partial.
#[derive(Debug, Clone, Copy)]
pub(super) enum Op {
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
    /// A sum of a long attribute fused with its non-null count (one null check for both),
    /// read as an 8-byte word without a type dispatch.
    SumLongCounted {
        attr: usize,
        w: usize,
        n: usize,
    },
    /// The same for a double attribute.
    SumDoubleCounted {
        attr: usize,
        w: usize,
        n: usize,
    },
    /// A sum of an int attribute fused with its non-null count.
    SumIntCounted {
        attr: usize,
        w: usize,
        n: usize,
    },
    /// A sum of a float attribute fused with its non-null count.
    SumFloatCounted {
        attr: usize,
        w: usize,
        n: usize,
    },
}

/// How a latest-value column is taken from an event.
#[derive(Debug, Clone)]
pub(super) enum LatestOp {
    /// A bare attribute: copied as it is.
    Attr(usize),
    Expr(Compiled),
}

/// Tags of a latest value's type word.
pub(super) const TAG_NULL: u64 = 0;
pub(super) const TAG_INT: u64 = 1;
pub(super) const TAG_FLOAT: u64 = 2;
pub(super) const TAG_BOOL: u64 = 3;
pub(super) const TAG_STR: u64 = 4;
pub(super) const NO_SET: u64 = u64::MAX;

/// How an event's group key is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyMode {
    /// No group by: one group.
    Constant,
    /// One string attribute: its bytes are packed straight into an integer key.
    String(usize),
    /// One integer or bool attribute: its word is the key.
    Word(usize),
    /// One float or double attribute: its word, with `-0.0` as `0.0` (`ingest::key`).
    Float(usize),
    /// Several attributes: encoded, then interned.
    General,
}

/// The per-event ops: each sum takes over its attribute's non-null count, whose own op
/// is dropped (speed: half the null checks and dispatches for sum and avg).
fn fuse(ops: &[Op], wide: impl Fn(usize) -> bool) -> Vec<Op> {
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
            Op::SumInt { attr, w } => Some(count_of(attr).map_or(*o, |n| {
                if wide(attr) { Op::SumLongCounted { attr, w, n } } else { Op::SumIntCounted { attr, w, n } }
            })),
            Op::SumFloat { attr, w } => Some(count_of(attr).map_or(*o, |n| {
                if wide(attr) { Op::SumDoubleCounted { attr, w, n } } else { Op::SumFloatCounted { attr, w, n } }
            })),
            other => Some(other),
        })
        .collect()
}

/// The per-event program of one aggregation, compiled once at start: the cell updates
/// with their word offsets, how the group key is found, the time source, the filter and
/// the latest-value columns. Shared by every worker's accumulator of the aggregation.
#[derive(Debug, Clone)]
pub struct Program {
    pub(super) group_by: Vec<usize>,
    pub(super) key_mode: KeyMode,
    pub(super) time: TimeSource,
    pub(super) filter: Option<Compiled>,
    /// One op per cell, in cell order (for reading the words back).
    pub(super) ops: Vec<Op>,
    /// What runs per event: `ops` with each sum fused with its non-null count.
    pub(super) update: Vec<Op>,
    /// For each cell, the word of its attribute's non-null count (sum/min/max use it to
    /// tell "no input" from 0).
    pub(super) nonnull_of: Vec<Option<usize>>,
    pub(super) inputs: Vec<Option<AttrType>>,
    pub(super) latest: Vec<(LatestOp, AttrType)>,
    pub(super) latest_at: usize,
    pub(super) stride: usize,
    pub(super) init: Vec<u64>,
    pub(super) key_types: Vec<AttrType>,
}

impl Program {
    pub fn new(plan: &AggPlan, stream: &StreamPlan) -> Program {
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
        let update = fuse(&ops, |a| matches!(stream.attributes[a].ty, AttrType::Long | AttrType::Double));
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
            [a] if matches!(stream.attributes[a].ty, AttrType::Float | AttrType::Double) => KeyMode::Float(a),
            [a] => KeyMode::Word(a),
            _ => KeyMode::General,
        };
        Program {
            group_by: plan.group_by.clone(),
            key_mode,
            time: plan.time,
            filter: plan.filter.clone(),
            stride: init.len().max(1),
            ops,
            update,
            nonnull_of,
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
