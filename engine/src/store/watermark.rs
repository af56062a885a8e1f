//! The newest bucket a partitioned table holds for this node's shard, as the bulk stores
//! (PostgreSQL, MySQL) use it.
//!
//! A shard has one writer (the registry refuses a second live one and fences a replaced
//! one), so a row of this shard whose bucket is newer than the newest stored cannot exist
//! yet: it goes into the table by a plain bulk load (binary COPY, LOAD DATA), skipping the
//! staging table and the conflict check. Only the others are merged. A flush of fresh
//! second buckets, or a replay of history, is mostly such rows; measured on PostgreSQL
//! with 100 K new rows, the direct COPY took well under half the time of staging and
//! merging them.

use crate::error::{Error, Result};
use crate::store::schema::TableSchema;
use crate::store::{Claim, FlushWrite};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Watermark {
    At(i64),
    /// Read it again from the table before the next write.
    Reread,
    /// Merge every row of this table (the watermark proved wrong twice).
    Off,
}

/// How one flush attempt ended, when it did not succeed.
pub(crate) enum Attempt {
    /// A row of this table that the watermark called new already existed.
    Unexpected(String),
    Failed(Error),
}

impl From<Error> for Attempt {
    fn from(e: Error) -> Attempt {
        Attempt::Failed(e)
    }
}

/// A flush met a row of `table` that its watermark called new (a case the registry should
/// rule out; the attempt was rolled back): read the watermark again, and after a second
/// surprise merge every row of the table.
pub(crate) fn surprised(watermarks: &mut HashMap<String, Watermark>, table: String) {
    if watermarks.remove(&table) == Some(Watermark::Reread) {
        watermarks.insert(table, Watermark::Off);
    } else {
        watermarks.insert(table, Watermark::Reread);
    }
}

/// After a flush is known applied: each table's watermark moves up to its newest row.
pub(crate) fn advance(watermarks: &mut HashMap<String, Watermark>, flush: &FlushWrite<'_>) {
    for tw in &flush.tables {
        if let Some(Watermark::At(m)) = watermarks.get_mut(&tw.table.name) {
            for r in 0..tw.rows.len() {
                *m = (*m).max(tw.rows.bucket(r));
            }
        }
    }
}

/// The newest bucket of this shard in a partitioned table: the one remembered (`known`), or
/// read (again) by `read` with the shard id (`i64::MIN` when the shard has no row). `None`
/// where every row must be merged (not partitioned, no shard id, or the watermark is off).
pub(crate) fn current(
    claim: &Claim,
    t: &TableSchema,
    known: Option<&Watermark>,
    read: impl FnOnce(&str) -> Result<i64>,
) -> Result<Option<i64>> {
    Ok(match (&claim.shard_id, known) {
        (Some(_), Some(Watermark::At(m))) if t.partitioned => Some(*m),
        (Some(shard), None | Some(Watermark::Reread)) if t.partitioned => Some(read(shard)?),
        _ => None,
    })
}
