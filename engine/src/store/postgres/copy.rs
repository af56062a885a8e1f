//! PostgreSQL's binary COPY format, written straight from rows (their fields read in
//! place: see [`Rows`]).
//!
//! `postgres::binary_copy::BinaryCopyInWriter` sends each row through the client's async
//! runtime (a `block_on` per row) and grows its buffers as it goes; at hundreds of
//! thousands of rows a flush that was most of the flush thread's time (measured with 1 M
//! keys: 20% of the thread in `write_raw`, most of it runtime entry, copying and page
//! faults). Encoding the stream here into one reused buffer and handing it to the
//! connection in large chunks does the same work in a plain loop.
//!
//! The format (PostgreSQL docs, "COPY … Binary Format"): a 19-byte header, then per row a
//! big-endian i16 field count and per field an i32 length (-1 for NULL) and the value in
//! the type's binary send format; a trailer of i16 -1.

use super::param::Param;
use crate::store::rows::Rows;
use crate::store::schema::TableSchema;
use std::io::Write;

/// The header: signature, flags (no OIDs), header extension length.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Bytes handed to the connection at a time.
const CHUNK: usize = 1 << 20;

/// Streams rows `at` of `rows` (of table `t`) to `out` as one binary COPY, in chunks.
pub(super) fn write_rows(
    out: &mut impl Write,
    t: &TableSchema,
    rows: &dyn Rows,
    at: &[usize],
    buf: &mut Vec<u8>,
) -> std::io::Result<()> {
    buf.clear();
    buf.extend_from_slice(HEADER);
    let fields = t.columns.len() as i16;
    for &row in at {
        encode_row(buf, t, rows, row, fields);
        if buf.len() >= CHUNK {
            out.write_all(buf)?;
            buf.clear();
        }
    }
    buf.extend_from_slice(&(-1i16).to_be_bytes());
    out.write_all(buf)?;
    buf.clear();
    Ok(())
}

/// Appends row `i`.
fn encode_row(buf: &mut Vec<u8>, t: &TableSchema, rows: &dyn Rows, i: usize, fields: i16) {
    buf.extend_from_slice(&fields.to_be_bytes());
    let mut columns = t.columns.iter();
    rows.visit(t, i, &mut |v| {
        let Some(c) = columns.next() else { return };
        match Param::from_field(v, c.ty) {
            Param::I32(Some(i)) => field(buf, &i.to_be_bytes()),
            Param::I64(Some(i)) => field(buf, &i.to_be_bytes()),
            Param::F32(Some(f)) => field(buf, &f.to_bits().to_be_bytes()),
            Param::F64(Some(f)) => field(buf, &f.to_bits().to_be_bytes()),
            Param::Text(Some(s)) => field(buf, s.as_bytes()),
            Param::Bool(Some(b)) => field(buf, &[b as u8]),
            Param::I32(None)
            | Param::I64(None)
            | Param::F32(None)
            | Param::F64(None)
            | Param::Text(None)
            | Param::Bool(None) => buf.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    });
}

fn field(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
    buf.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::types::{AttrType, Value};
    use crate::store::schema::{Column, Role};
    use crate::time::granularity::Granularity;

    #[test]
    fn rows_are_encoded_in_the_binary_copy_format() {
        let t = TableSchema {
            name: "T".into(),
            aggregation: "A".into(),
            duration: Granularity::Seconds,
            columns: vec![
                Column { name: "AGG_TIMESTAMP".into(), ty: AttrType::Long, role: Role::Timestamp },
                Column { name: "s".into(), ty: AttrType::String, role: Role::Key(0) },
                Column { name: "f".into(), ty: AttrType::Float, role: Role::Latest(0) },
                Column { name: "b".into(), ty: AttrType::Bool, role: Role::Latest(1) },
            ],
            key_len: 2,
            partitioned: false,
        };
        let rows = vec![vec![Value::Long(7), Value::Str("ab".into()), Value::Double(1.5), Value::Null]];
        let mut out = Vec::new();
        write_rows(&mut out, &t, &rows, &[0], &mut Vec::new()).unwrap();
        let mut want = HEADER.to_vec();
        want.extend_from_slice(&4i16.to_be_bytes());
        want.extend_from_slice(&8i32.to_be_bytes());
        want.extend_from_slice(&7i64.to_be_bytes());
        want.extend_from_slice(&2i32.to_be_bytes());
        want.extend_from_slice(b"ab");
        want.extend_from_slice(&4i32.to_be_bytes());
        want.extend_from_slice(&1.5f32.to_bits().to_be_bytes());
        want.extend_from_slice(&(-1i32).to_be_bytes());
        want.extend_from_slice(&(-1i16).to_be_bytes());
        assert_eq!(out, want);
        assert_eq!(HEADER.len(), 19);
    }
}
