//! The journal: where a shard's open seconds live until they close (docs/rollup.md).
//!
//! For a partitioned aggregation, a flush does not merge the events of the newest seconds
//! into the finest table row by row: that rewrote each key's current row hundreds of times
//! a second (one merge per flush), and the store's per-row update cost set the pace. It
//! appends one record instead: the flush's finest partials of buckets at or after the
//! shard's finest mark, encoded as one binary value, in the same transaction as the rest
//! of the flush. When a second has closed (`tally.rollup_delay` behind the newest event),
//! the node writes its rows into the finest table once, moves the mark, and trims the
//! records wholly before it, again in one transaction.
//!
//! One row per (aggregation, shard, flush) in `TALLY_JOURNAL`. A record may still hold
//! partials before the mark (it spanned the mark when it moved): readers ignore those, as
//! the finest table holds them.

use crate::error::{Error, Result};
use crate::lang::types::Value;
use crate::store::sql::Dialect;

/// The journal table.
pub const TABLE: &str = "TALLY_JOURNAL";

/// What one flush does to the journal of one shard of one aggregation.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalWrite {
    pub aggregation: String,
    pub shard: String,
    /// Records whose newest bucket is before this are deleted (the mark moved past them).
    pub trim_before: Option<i64>,
    /// A new record: its newest bucket and its rows ([`encode`]).
    pub append: Option<(i64, Vec<u8>)>,
}

/// SQL of the journal table, with `?n` parameters (`store::registry::for_dialect`
/// rewrites them for PostgreSQL).
pub mod statements {
    use super::Dialect;

    pub fn create(d: Dialect) -> &'static str {
        match d {
            Dialect::Sqlite => {
                "CREATE TABLE IF NOT EXISTS \"TALLY_JOURNAL\" (\"AGGREGATION\" TEXT NOT NULL, \
                 \"SHARD_ID\" TEXT NOT NULL, \"LAST_BUCKET\" BIGINT NOT NULL, \"ROWS\" BLOB NOT NULL)"
            }
            // The rows are already compact binary: stored out of line without compression
            // (pglz would spend CPU on every flush for little).
            Dialect::Postgres => {
                "CREATE TABLE IF NOT EXISTS \"TALLY_JOURNAL\" (\"AGGREGATION\" TEXT NOT NULL, \
                 \"SHARD_ID\" TEXT NOT NULL, \"LAST_BUCKET\" BIGINT NOT NULL, \"ROWS\" BYTEA NOT NULL); \
                 ALTER TABLE \"TALLY_JOURNAL\" ALTER COLUMN \"ROWS\" SET STORAGE EXTERNAL"
            }
        }
    }
    pub const INDEX: &str = "CREATE INDEX IF NOT EXISTS \"TALLY_JOURNAL_SHARD\" \
        ON \"TALLY_JOURNAL\" (\"AGGREGATION\", \"SHARD_ID\", \"LAST_BUCKET\")";
    /// ?1 aggregation, ?2 shard, ?3 newest bucket, ?4 rows.
    pub const APPEND: &str = "INSERT INTO \"TALLY_JOURNAL\" (\"AGGREGATION\", \"SHARD_ID\", \"LAST_BUCKET\", \"ROWS\") \
        VALUES (?1, ?2, ?3, ?4)";
    /// ?1 aggregation, ?2 shard, ?3 before.
    pub const TRIM: &str = "DELETE FROM \"TALLY_JOURNAL\" \
        WHERE \"AGGREGATION\" = ?1 AND \"SHARD_ID\" = ?2 AND \"LAST_BUCKET\" < ?3";
    /// ?1 aggregation, ?2 the oldest bucket wanted.
    pub const SELECT: &str = "SELECT \"SHARD_ID\", \"ROWS\" FROM \"TALLY_JOURNAL\" \
        WHERE \"AGGREGATION\" = ?1 AND \"LAST_BUCKET\" >= ?2";
}

/// Format version, the first byte of a record.
const VERSION: u8 = 1;

/// Encodes rows (each in one table's column order, as `TableSchema::to_row` makes them):
/// the version, the row and column counts (u32 LE), then per value a tag and its bytes:
/// 0 null, 1 int (i32 LE), 2 long (i64 LE), 3 float (f32 bits), 4 double (f64 bits),
/// 5 bool (one byte), 6 string (u32 LE length, UTF-8).
pub fn encode<'a>(rows: impl ExactSizeIterator<Item = &'a [Value]>, columns: usize, out: &mut Vec<u8>) {
    out.clear();
    out.push(VERSION);
    out.extend_from_slice(&(rows.len() as u32).to_le_bytes());
    out.extend_from_slice(&(columns as u32).to_le_bytes());
    for row in rows {
        debug_assert_eq!(row.len(), columns);
        for v in row {
            push(out, v);
        }
    }
}

/// Appends one value ([`encode`]'s format).
pub fn push(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.push(0),
        Value::Int(i) => {
            out.push(1);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::Long(i) => {
            out.push(2);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::Float(f) => {
            out.push(3);
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Value::Double(f) => {
            out.push(4);
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Value::Bool(b) => {
            out.push(5);
            out.push(*b as u8);
        }
        Value::Str(s) => {
            out.push(6);
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
}

/// Decodes a record of `columns` columns. A record that does not read back whole (another
/// version, another table's width, cut short) is an error naming what was wrong: the node
/// must not answer or roll up from part of a record.
pub fn decode(bytes: &[u8], columns: usize) -> Result<Vec<Vec<Value>>> {
    let mut r = Cursor { bytes, at: 0 };
    let version = r.take(1)?[0];
    if version != VERSION {
        return Err(corrupt(format!("format version {version}, this node reads version {VERSION}")));
    }
    let rows = r.u32()? as usize;
    let width = r.u32()? as usize;
    if width != columns {
        return Err(corrupt(format!(
            "rows of {width} columns, but the table has {columns}: the aggregation was redefined while \
             its journal held open buckets"
        )));
    }
    // Every value takes at least one byte: a count beyond that is a lie, not an allocation.
    if rows.saturating_mul(width) > bytes.len() {
        return Err(corrupt(format!("{rows} rows of {width} columns in {} bytes", bytes.len())));
    }
    let mut out = Vec::with_capacity(rows);
    for _ in 0..rows {
        let mut row = Vec::with_capacity(width);
        for _ in 0..width {
            row.push(r.value()?);
        }
        out.push(row);
    }
    if r.at != bytes.len() {
        return Err(corrupt(format!("{} bytes after the last row", bytes.len() - r.at)));
    }
    Ok(out)
}

fn corrupt(what: String) -> Error {
    Error::Store {
        backend: "journal",
        code: None,
        message: format!(
            "a record of {TABLE} does not read back: {what}. Nothing was answered or rolled up from it; \
             restore the table from a backup, or stop every node and delete the records of this shard \
             (their events are lost)"
        ),
        retryable: false,
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len());
        let Some(end) = end else {
            return Err(corrupt(format!("cut short at byte {} of {}", self.at, self.bytes.len())));
        };
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("four bytes")))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("eight bytes")))
    }

    fn value(&mut self) -> Result<Value> {
        let tag = self.take(1)?[0];
        Ok(match tag {
            0 => Value::Null,
            1 => Value::Int(self.u32()? as i32),
            2 => Value::Long(self.u64()? as i64),
            3 => Value::Float(f32::from_bits(self.u32()?)),
            4 => Value::Double(f64::from_bits(self.u64()?)),
            5 => Value::Bool(self.take(1)?[0] != 0),
            6 => {
                let n = self.u32()? as usize;
                let at = self.at;
                let s = self.take(n)?;
                Value::Str(
                    std::str::from_utf8(s)
                        .map_err(|_| corrupt(format!("a string at byte {at} that is not UTF-8")))?
                        .to_string(),
                )
            }
            t => return Err(corrupt(format!("value tag {t} at byte {}", self.at - 1))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<i32>().prop_map(Value::Int),
            any::<i64>().prop_map(Value::Long),
            any::<f32>().prop_map(Value::Float),
            any::<f64>().prop_map(Value::Double),
            any::<bool>().prop_map(Value::Bool),
            ".{0,12}".prop_map(Value::Str),
        ]
    }

    /// Values compared by their bits (NaN and -0.0 must come back as they went).
    fn bits(rows: &[Vec<Value>]) -> Vec<Vec<Vec<u8>>> {
        rows.iter()
            .map(|r| {
                r.iter()
                    .map(|v| {
                        let mut b = Vec::new();
                        push(&mut b, v);
                        b
                    })
                    .collect()
            })
            .collect()
    }

    proptest! {
        #[test]
        fn records_read_back_exactly(rows in prop::collection::vec(prop::collection::vec(value(), 4), 0..40)) {
            let mut buf = Vec::new();
            encode(rows.iter().map(|r| r.as_slice()), 4, &mut buf);
            let back = decode(&buf, 4).unwrap();
            prop_assert_eq!(bits(&back), bits(&rows));
        }

        #[test]
        fn a_cut_or_damaged_record_is_an_error_not_a_panic(
            rows in prop::collection::vec(prop::collection::vec(value(), 3), 1..10),
            cut in any::<prop::sample::Index>(),
            flip in any::<(prop::sample::Index, u8)>(),
        ) {
            let mut buf = Vec::new();
            encode(rows.iter().map(|r| r.as_slice()), 3, &mut buf);
            let at = cut.index(buf.len());
            prop_assert!(decode(&buf[..at], 3).is_err());
            let mut damaged = buf.clone();
            let i = flip.0.index(damaged.len());
            damaged[i] ^= flip.1;
            // Either it still reads (a changed value) or it is refused; never a panic.
            drop(decode(&damaged, 3));
        }
    }

    #[test]
    fn a_record_of_another_width_or_version_is_refused_with_the_reason() {
        let mut buf = Vec::new();
        encode([vec![Value::Long(1), Value::Null]].iter().map(|r| r.as_slice()), 2, &mut buf);
        let e = decode(&buf, 3).unwrap_err().to_string();
        assert!(e.contains("rows of 2 columns, but the table has 3"), "{e}");
        assert!(!decode(&buf, 3).unwrap_err().is_retryable());
        buf[0] = 9;
        assert!(decode(&buf, 2).unwrap_err().to_string().contains("format version 9"));
        // A count that claims more rows than bytes: refused before allocating.
        let mut lie = vec![VERSION];
        lie.extend_from_slice(&u32::MAX.to_le_bytes());
        lie.extend_from_slice(&2u32.to_le_bytes());
        assert!(decode(&lie, 2).unwrap_err().to_string().contains("4294967295 rows"));
    }
}
