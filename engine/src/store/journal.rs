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

use crate::aggregate::partial::{CellValue, Latest, Num, Partial, SetValue};
use crate::error::{Error, Result};
use crate::ingest::key::{self, KeyBytes};
use crate::lang::plan::CellKind;
use crate::lang::types::{AttrType, Value};
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
            // The index inline (MySQL has no CREATE INDEX IF NOT EXISTS). LONGBLOB: a
            // record holds every open partial of a shard; the server's max_allowed_packet
            // bounds it (docs/stores.md).
            Dialect::Mysql => {
                "CREATE TABLE IF NOT EXISTS \"TALLY_JOURNAL\" (\"AGGREGATION\" VARCHAR(254) NOT NULL, \
                 \"SHARD_ID\" VARCHAR(254) NOT NULL, \"LAST_BUCKET\" BIGINT NOT NULL, \"ROWS\" LONGBLOB NOT NULL, \
                 KEY \"TALLY_JOURNAL_SHARD\" (\"AGGREGATION\", \"SHARD_ID\", \"LAST_BUCKET\"))"
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

/// Format version, the first byte of a record written now. Records of [`V2`] (fixed-width
/// fields) still read back: a node upgraded while its journal held open seconds goes on
/// from them.
const VERSION: u8 = 3;
/// The format before [`VERSION`]: integers and lengths at fixed width.
const V2: u8 = 2;

/// One partial of a record: a group key (encoded as `ingest::key` encodes it), a finest
/// bucket, and the partial.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: KeyBytes,
    pub bucket: i64,
    pub partial: Partial,
}

/// Encodes partials straight from the node's maps (no row is built: this runs for every
/// key a flush touches, so it allocates nothing but `out`).
///
/// Version 3, for size: integers as LEB128 varints (signed ones zigzagged), so that a
/// count of 1 takes a byte, not eight. With 10^6 keys a record is tens of MB a flush, and
/// PostgreSQL writes every byte of it twice (the TOAST table and the WAL): the journal
/// was ~30% of its busy time there (issue 12). The version byte, the entry count, the cell
/// count; per entry the bucket as the (zigzag) difference from the entry before (the first
/// from 0: the entries of a record share a few seconds), the key (length and bytes), each
/// cell (0 null, 1 integer zigzag, 2 float as its 8 bits, 3 set: a count then per value 1
/// integer zigzag, 2 float bits, 3 bool byte, 4 string: length and UTF-8), and the latest
/// values (0 none, or 1, the time stamp (zigzag, from the bucket), a count and each value as
/// [`push`] writes it).
pub fn encode<'a>(
    entries: impl ExactSizeIterator<Item = (&'a KeyBytes, i64, &'a Partial)>,
    cells: usize,
    out: &mut Vec<u8>,
) {
    out.clear();
    // Sized once (a guess of 16-byte keys and small integers; sets may still grow it):
    // growing from empty by doubling copied the record over and over (measured with 100 K
    // keys: 7% of the flush thread in memmove). `out` may be the buffer of an earlier
    // record (crate::buffer).
    crate::buffer::room(out, 11 + entries.len() * (3 + 16 + 5 * cells));
    out.push(VERSION);
    varint(out, entries.len() as u64);
    varint(out, cells as u64);
    let mut before = 0i64;
    for (key, bucket, p) in entries {
        debug_assert_eq!(p.cells.len(), cells);
        varint(out, zigzag(bucket.wrapping_sub(before)));
        before = bucket;
        varint(out, key.len() as u64);
        out.extend_from_slice(key);
        for c in &p.cells {
            match c {
                CellValue::Num(Num::Null) => out.push(0),
                CellValue::Num(Num::Int(i)) => {
                    out.push(1);
                    varint(out, zigzag(*i));
                }
                CellValue::Num(Num::Float(f)) => {
                    out.push(2);
                    out.extend_from_slice(&f.to_bits().to_le_bytes());
                }
                CellValue::Set(set) => {
                    out.push(3);
                    varint(out, set.len() as u64);
                    for v in set.iter() {
                        match v {
                            SetValue::Int(i) => {
                                out.push(1);
                                varint(out, zigzag(*i));
                            }
                            SetValue::Float(b) => {
                                out.push(2);
                                out.extend_from_slice(&b.to_le_bytes());
                            }
                            SetValue::Bool(b) => {
                                out.push(3);
                                out.push(*b as u8);
                            }
                            SetValue::Str(s) => {
                                out.push(4);
                                varint(out, s.len() as u64);
                                out.extend_from_slice(s.as_bytes());
                            }
                        }
                    }
                }
            }
        }
        match &p.latest {
            None => out.push(0),
            Some(l) => {
                out.push(1);
                varint(out, zigzag(l.ts.wrapping_sub(bucket)));
                varint(out, l.values.len() as u64);
                for v in &l.values {
                    push(out, v);
                }
            }
        }
    }
}

/// Appends one value (the latest values of [`encode`]'s format): 0 null, 1 int (zigzag),
/// 2 long (zigzag), 3 float (f32 bits), 4 double (f64 bits), 5 bool (a byte), 6 string
/// (length, UTF-8).
pub fn push(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.push(0),
        Value::Int(i) => {
            out.push(1);
            varint(out, zigzag(*i as i64));
        }
        Value::Long(i) => {
            out.push(2);
            varint(out, zigzag(*i));
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
            varint(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
    }
}

/// LEB128: seven bits a byte, low first, the high bit set on every byte but the last.
fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Small magnitudes, either sign, to small unsigned numbers: 0, -1, 1, -2 … → 0, 1, 2, 3 ….
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

/// Decodes a record of an aggregation whose cells are of `kinds`, with group keys of
/// `key_types`. A record that does not read back whole (another version, another cell
/// count or kind, a key that is not a key of these types, cut short) is an error naming
/// what was wrong: the node must not answer or roll up from part of a record. Latest values
/// come back with arrival order 0 (it is a node's own and does not outlive it; a later
/// arrival with the same time stamp wins, as it should).
pub fn decode(bytes: &[u8], kinds: &[CellKind], key_types: &[AttrType]) -> Result<Vec<Entry>> {
    let mut r = Cursor { bytes, at: 0, v2: false };
    let version = r.take(1)?[0];
    if version != VERSION && version != V2 {
        return Err(corrupt(format!("format version {version}, this node reads versions {V2} and {VERSION}")));
    }
    r.v2 = version == V2;
    let n = r.count()?;
    let cells = r.count()?;
    if cells != kinds.len() {
        return Err(corrupt(format!(
            "partials of {cells} cells, but the aggregation has {}: it was redefined while its journal held \
             open buckets",
            kinds.len()
        )));
    }
    // An entry takes at least 13 bytes (3 in version 3): a count beyond that is a lie, not
    // an allocation.
    if n.saturating_mul(if r.v2 { 13 } else { 3 }) > bytes.len() {
        return Err(corrupt(format!("{n} entries in {} bytes", bytes.len())));
    }
    let mut out = Vec::with_capacity(n);
    let mut check = Vec::new();
    let mut bucket = 0i64;
    for _ in 0..n {
        bucket = if r.v2 { r.u64()? as i64 } else { bucket.wrapping_add(r.int()?) };
        let len = r.count()?;
        let at = r.at;
        let key = r.take(len)?;
        key::encode_values(&mut check, &key::decode(key, key_types));
        if check != key {
            return Err(corrupt(format!("the key at byte {at} is not a group key of this aggregation")));
        }
        let mut p = Partial { cells: Vec::with_capacity(cells), latest: None };
        for kind in kinds {
            let at = r.at;
            let tag = r.take(1)?[0];
            if tag <= 3 && (tag == 3) != (*kind == CellKind::Set) {
                return Err(corrupt(format!("a cell at byte {at} of another kind than the aggregation's")));
            }
            let c = match tag {
                0 => CellValue::Num(Num::Null),
                1 => CellValue::Num(Num::Int(r.int()?)),
                2 => CellValue::Num(Num::Float(f64::from_bits(r.u64()?))),
                3 => {
                    let m = r.count()?;
                    if m > bytes.len() {
                        return Err(corrupt(format!("a set of {m} values at byte {at}")));
                    }
                    let mut set = hashbrown::HashSet::with_capacity(m);
                    for _ in 0..m {
                        set.insert(match r.take(1)?[0] {
                            1 => SetValue::Int(r.int()?),
                            2 => SetValue::Float(r.u64()?),
                            3 => SetValue::Bool(r.take(1)?[0] != 0),
                            4 => SetValue::Str(r.string()?),
                            t => return Err(corrupt(format!("set value tag {t} at byte {}", r.at - 1))),
                        });
                    }
                    CellValue::Set(Box::new(set))
                }
                t => return Err(corrupt(format!("cell tag {t} at byte {at}"))),
            };
            p.cells.push(c);
        }
        p.latest = match r.take(1)?[0] {
            0 => None,
            1 => {
                let ts = if r.v2 { r.u64()? as i64 } else { bucket.wrapping_add(r.int()?) };
                let m = r.count()?;
                if m > bytes.len() {
                    return Err(corrupt(format!("{m} latest values at byte {}", r.at)));
                }
                let values = (0..m).map(|_| r.value()).collect::<Result<Vec<Value>>>()?;
                Some(Latest { ts, seq: 0, values })
            }
            t => return Err(corrupt(format!("latest tag {t} at byte {}", r.at - 1))),
        };
        out.push(Entry { key: KeyBytes::from(key), bucket, partial: p });
    }
    if r.at != bytes.len() {
        return Err(corrupt(format!("{} bytes after the last entry", bytes.len() - r.at)));
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
    /// A record of format version 2: integers and lengths at fixed width.
    v2: bool,
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

    /// A varint (version 3).
    fn varint(&mut self) -> Result<u64> {
        let at = self.at;
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(corrupt(format!("a number at byte {at} longer than 64 bits")))
    }

    /// A count or length: u32 in version 2, a varint since.
    fn count(&mut self) -> Result<usize> {
        if self.v2 { Ok(self.u32()? as usize) } else { Ok(self.varint()? as usize) }
    }

    /// A signed integer: i64 in version 2, a zigzag varint since.
    fn int(&mut self) -> Result<i64> {
        if self.v2 { Ok(self.u64()? as i64) } else { Ok(unzigzag(self.varint()?)) }
    }

    fn string(&mut self) -> Result<String> {
        let n = self.count()?;
        let at = self.at;
        let s = self.take(n)?;
        Ok(std::str::from_utf8(s).map_err(|_| corrupt(format!("a string at byte {at} that is not UTF-8")))?.to_string())
    }

    fn value(&mut self) -> Result<Value> {
        let tag = self.take(1)?[0];
        Ok(match tag {
            0 => Value::Null,
            1 if self.v2 => Value::Int(self.u32()? as i32),
            1 => Value::Int(self.int()? as i32),
            2 => Value::Long(self.int()?),
            3 => Value::Float(f32::from_bits(self.u32()?)),
            4 => Value::Double(f64::from_bits(self.u64()?)),
            5 => Value::Bool(self.take(1)?[0] != 0),
            6 => Value::Str(self.string()?),
            t => return Err(corrupt(format!("value tag {t} at byte {}", self.at - 1))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KINDS: [CellKind; 3] = [CellKind::Sum, CellKind::Set, CellKind::Max];
    const KEY_TYPES: [AttrType; 2] = [AttrType::String, AttrType::Long];

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

    fn num() -> impl Strategy<Value = CellValue> {
        prop_oneof![
            Just(CellValue::Num(Num::Null)),
            any::<i64>().prop_map(|i| CellValue::Num(Num::Int(i))),
            any::<f64>().prop_map(|f| CellValue::Num(Num::Float(f))),
        ]
    }

    fn set() -> impl Strategy<Value = CellValue> {
        prop::collection::vec(
            prop_oneof![
                any::<i64>().prop_map(SetValue::Int),
                any::<f64>().prop_map(SetValue::float),
                any::<bool>().prop_map(SetValue::Bool),
                ".{0,8}".prop_map(SetValue::Str),
            ],
            0..4,
        )
        .prop_map(|v| CellValue::Set(Box::new(v.into_iter().collect())))
    }

    fn entry() -> impl Strategy<Value = Entry> {
        (
            (prop::option::of(".{0,10}"), prop::option::of(any::<i64>())),
            any::<i64>(),
            (num(), set(), num()),
            prop::option::of((any::<i64>(), prop::collection::vec(value(), 0..3))),
        )
            .prop_map(|((s, l), bucket, (a, b, c), latest)| {
                let mut k = Vec::new();
                key::encode_values(
                    &mut k,
                    &[s.map(Value::Str).unwrap_or(Value::Null), l.map(Value::Long).unwrap_or(Value::Null)],
                );
                Entry {
                    key: KeyBytes::from(&k[..]),
                    bucket,
                    partial: Partial {
                        cells: vec![a, b, c],
                        latest: latest.map(|(ts, values)| Latest { ts, seq: 0, values }),
                    },
                }
            })
    }

    fn encoded(entries: &[Entry]) -> Vec<u8> {
        let mut buf = Vec::new();
        encode(entries.iter().map(|e| (&e.key, e.bucket, &e.partial)), KINDS.len(), &mut buf);
        buf
    }

    /// An entry as comparable bytes: the encoding with each set's values sorted (a set's
    /// order is its hasher's), so NaN and -0.0 must come back as they went.
    fn canonical(e: &Entry) -> Vec<u8> {
        let mut e = e.clone();
        let sets: Vec<Vec<SetValue>> = e
            .partial
            .cells
            .iter_mut()
            .map(|c| match c {
                CellValue::Set(s) => {
                    let mut v: Vec<SetValue> = s.drain().collect();
                    v.sort();
                    v
                }
                CellValue::Num(_) => Vec::new(),
            })
            .collect();
        let mut out = encoded(std::slice::from_ref(&e));
        out.extend(format!("{sets:?}").into_bytes());
        out
    }

    fn same(a: &[Entry], b: &[Entry]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| canonical(x) == canonical(y))
    }

    proptest! {
        #[test]
        fn records_read_back_exactly(entries in prop::collection::vec(entry(), 0..30)) {
            let back = decode(&encoded(&entries), &KINDS, &KEY_TYPES).unwrap();
            prop_assert!(same(&back, &entries));
        }

        #[test]
        fn a_cut_or_damaged_record_is_an_error_not_a_panic(
            entries in prop::collection::vec(entry(), 1..8),
            cut in any::<prop::sample::Index>(),
            flip in any::<(prop::sample::Index, u8)>(),
        ) {
            let buf = encoded(&entries);
            let at = cut.index(buf.len());
            prop_assert!(decode(&buf[..at], &KINDS, &KEY_TYPES).is_err());
            let mut damaged = buf.clone();
            let i = flip.0.index(damaged.len());
            damaged[i] ^= flip.1;
            // Either it still reads (a changed value) or it is refused; never a panic.
            drop(decode(&damaged, &KINDS, &KEY_TYPES));
        }
    }

    #[test]
    fn a_record_of_another_shape_or_version_is_refused_with_the_reason() {
        let mut k = Vec::new();
        key::encode_values(&mut k, &[Value::Str("IBM".into()), Value::Long(1)]);
        let e = Entry {
            key: KeyBytes::from(&k[..]),
            bucket: 1_000,
            partial: Partial {
                cells: vec![CellValue::Num(Num::Int(3)), CellValue::Set(Default::default()), CellValue::Num(Num::Null)],
                latest: None,
            },
        };
        let mut buf = encoded(std::slice::from_ref(&e));
        let err = decode(&buf, &KINDS[..2], &KEY_TYPES).unwrap_err();
        assert!(err.to_string().contains("partials of 3 cells, but the aggregation has 2"), "{err}");
        assert!(!err.is_retryable());
        let err = decode(&buf, &[CellKind::Sum, CellKind::Sum, CellKind::Max], &KEY_TYPES).unwrap_err();
        assert!(err.to_string().contains("of another kind"), "{err}");
        let err = decode(&buf, &KINDS, &[AttrType::String]).unwrap_err();
        assert!(err.to_string().contains("is not a group key"), "{err}");
        buf[0] = 9;
        assert!(decode(&buf, &KINDS, &KEY_TYPES).unwrap_err().to_string().contains("format version 9"));
        // A count that claims more entries than bytes: refused before allocating.
        let mut lie = vec![VERSION];
        varint(&mut lie, u32::MAX as u64);
        varint(&mut lie, 3);
        assert!(decode(&lie, &KINDS, &KEY_TYPES).unwrap_err().to_string().contains("4294967295 entries"));
        // A varint that does not end.
        let endless = [VERSION, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert!(decode(&endless, &KINDS, &KEY_TYPES).unwrap_err().to_string().contains("longer than 64 bits"));
    }

    /// A record of version 2 (fixed-width fields, what nodes wrote before version 3) still
    /// reads back: a node upgraded while its journal held open seconds goes on from them.
    #[test]
    fn a_version_2_record_still_reads_back() {
        let mut k = Vec::new();
        key::encode_values(&mut k, &[Value::Str("IBM".into()), Value::Long(1)]);
        let mut v2 = vec![V2];
        v2.extend_from_slice(&1u32.to_le_bytes()); // entries
        v2.extend_from_slice(&3u32.to_le_bytes()); // cells
        v2.extend_from_slice(&1_000i64.to_le_bytes()); // bucket
        v2.extend_from_slice(&(k.len() as u32).to_le_bytes());
        v2.extend_from_slice(&k);
        v2.push(1); // integer cell
        v2.extend_from_slice(&(-3i64).to_le_bytes());
        v2.push(3); // set cell of one value, an integer
        v2.extend_from_slice(&1u32.to_le_bytes());
        v2.push(1);
        v2.extend_from_slice(&5i64.to_le_bytes());
        v2.push(2); // float cell
        v2.extend_from_slice(&2.5f64.to_bits().to_le_bytes());
        v2.push(1); // latest: time stamp, two values
        v2.extend_from_slice(&1_234i64.to_le_bytes());
        v2.extend_from_slice(&2u32.to_le_bytes());
        v2.push(1); // int
        v2.extend_from_slice(&(-7i32).to_le_bytes());
        v2.push(6); // string
        v2.extend_from_slice(&2u32.to_le_bytes());
        v2.extend_from_slice(b"xy");
        let want = Entry {
            key: KeyBytes::from(&k[..]),
            bucket: 1_000,
            partial: Partial {
                cells: vec![
                    CellValue::Num(Num::Int(-3)),
                    CellValue::Set(Box::new([SetValue::Int(5)].into_iter().collect())),
                    CellValue::Num(Num::Float(2.5)),
                ],
                latest: Some(Latest { ts: 1_234, seq: 0, values: vec![Value::Int(-7), Value::Str("xy".into())] }),
            },
        };
        let back = decode(&v2, &KINDS, &KEY_TYPES).unwrap();
        assert!(same(&back, std::slice::from_ref(&want)), "{back:?}");
        // And the same entry now takes fewer bytes.
        assert!(encoded(std::slice::from_ref(&want)).len() < v2.len() * 2 / 3);
    }

    #[test]
    fn varints_and_zigzag_cover_the_whole_range() {
        for v in [0i64, 1, -1, 63, -64, 64, 1 << 40, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            varint(&mut out, zigzag(v));
            let mut r = Cursor { bytes: &out, at: 0, v2: false };
            assert_eq!(r.int().unwrap(), v);
            assert_eq!(r.at, out.len());
        }
        let mut out = Vec::new();
        varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
    }
}
