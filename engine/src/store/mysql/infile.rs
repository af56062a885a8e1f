//! Rows as the text `LOAD DATA LOCAL INFILE` reads: MySQL's bulk path, the counterpart of
//! PostgreSQL's binary COPY.
//!
//! The format is the statement's default, spelled out in [`load_statement`] so that no
//! server setting changes it: fields end at a tab, rows at a newline, `\` escapes, and
//! `\N` is NULL. A string's backslash, tab, newline, carriage return and NUL are escaped;
//! everything else goes as it is (utf8mb4). The rows are encoded into one buffer that the
//! connection's local-infile handler sends when the server asks for the "file".
//!
//! What MySQL cannot hold is refused here, before anything is sent, with the table, the
//! column and the value: a string longer than the column's `VARCHAR(254)`, and a float that
//! is NaN or infinite (MySQL's FLOAT and DOUBLE have no such values). A LOCAL load would
//! turn either into a warning and a changed value, which the flush also checks for.

use crate::lang::plan::CellKind;
use crate::lang::types::AttrType;
use crate::store::rows::{Field, Rows};
use crate::store::schema::{Role, TableSchema};
use crate::store::sql::quote;
use std::io::Write;

/// The longest string a `VARCHAR(254)` column holds, in characters.
pub const MAX_CHARS: usize = 254;

/// `LOAD DATA LOCAL INFILE` of every column of `t`, in order, into `target`.
pub(super) fn load_statement(target: &str, t: &TableSchema) -> String {
    let cols: Vec<String> = t.columns.iter().map(|c| quote(&c.name)).collect();
    format!(
        "LOAD DATA LOCAL INFILE 'tally' INTO TABLE {target} CHARACTER SET utf8mb4 \
         FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({})",
        cols.join(", ")
    )
}

/// Appends rows `at` of `rows` (of table `t`) to `buf` in bucket order. A flush's rows come
/// out of a hash map; InnoDB inserts them into the primary key's b-tree (bucket first), and
/// in bucket order it fills the newest leaf pages instead of splitting pages all over the
/// tree (measured: 100 K new rows 318 K → 440 K rows/s; a full key order measured within
/// the noise of bucket order, and costs a sort of the encoded lines). Refuses a value MySQL
/// cannot hold.
pub(super) fn encode_sorted(buf: &mut Vec<u8>, t: &TableSchema, rows: &dyn Rows, at: &[usize]) -> Result<(), String> {
    let mut order: Vec<(i64, usize)> = at.iter().map(|&r| (rows.bucket(r), r)).collect();
    order.sort_unstable();
    let mut one = [0usize];
    for (_, r) in order {
        one[0] = r;
        encode(buf, t, rows, &one)?;
    }
    Ok(())
}

/// Appends rows `at` of `rows` (of table `t`) to `buf`. Refuses a value MySQL cannot hold.
pub(super) fn encode(buf: &mut Vec<u8>, t: &TableSchema, rows: &dyn Rows, at: &[usize]) -> Result<(), String> {
    let mut refused: Option<String> = None;
    for &row in at {
        let mut columns = t.columns.iter();
        let mut first = true;
        rows.visit(t, row, &mut |v| {
            let Some(c) = columns.next() else { return };
            if !first {
                buf.push(b'\t');
            }
            first = false;
            if let Err(why) = field(buf, v, c.ty, matches!(c.role, Role::Cell(_, CellKind::Set))) {
                refused.get_or_insert_with(|| format!("column `{}` of {}: {why}", c.name, t.name));
            }
        });
        buf.push(b'\n');
        if let Some(why) = refused {
            return Err(why);
        }
    }
    Ok(())
}

/// One value as column type `ty` (numbers widened or narrowed as the other stores do).
/// `long_text`: a `LONGTEXT` column (a distinct set), which has no length limit here.
fn field(buf: &mut Vec<u8>, v: Field<'_>, ty: AttrType, long_text: bool) -> Result<(), String> {
    // `write!` into a Vec cannot fail.
    match (ty, v) {
        (_, Field::Null) => buf.extend_from_slice(b"\\N"),
        (AttrType::Int, Field::Int(i)) => integer(buf, i64::from(i)),
        (AttrType::Int, Field::Long(i)) => integer(buf, i64::from(i as i32)),
        (AttrType::Long, v) => match v.as_i64() {
            Some(i) => integer(buf, i),
            None => buf.extend_from_slice(b"\\N"),
        },
        (AttrType::Float | AttrType::Double, v) => match v.as_f64() {
            Some(f) if !f.is_finite() => {
                return Err(format!(
                    "{f} cannot be stored: MySQL's FLOAT and DOUBLE have no NaN or infinity (use PostgreSQL or SQLite for such values)"
                ));
            }
            // `{:?}` is the shortest text that reads back as the same number.
            Some(f) if ty == AttrType::Float => {
                let _ = write!(buf, "{:?}", f as f32);
            }
            Some(f) => {
                let _ = write!(buf, "{f:?}");
            }
            None => buf.extend_from_slice(b"\\N"),
        },
        (AttrType::Bool, Field::Bool(b)) => buf.push(if b { b'1' } else { b'0' }),
        (AttrType::Bool, v) => match v.as_i64() {
            Some(i) => buf.push(if i != 0 { b'1' } else { b'0' }),
            None => buf.extend_from_slice(b"\\N"),
        },
        (AttrType::String, Field::Str(s)) => {
            if !long_text && s.len() > MAX_CHARS && s.chars().count() > MAX_CHARS {
                return Err(format!(
                    "a string of {} characters does not fit VARCHAR({MAX_CHARS}) (it starts \"{}…\")",
                    s.chars().count(),
                    s.chars().take(40).collect::<String>()
                ));
            }
            escape(buf, s);
        }
        (_, _) => buf.extend_from_slice(b"\\N"),
    }
    Ok(())
}

/// `i` in decimal. A hand loop: `write!` goes through the formatting machinery, and a flush
/// writes several integers a row (measured on 1.4 M rows: the node's flush thread spent
/// more on formatting for MySQL than on the binary COPY for PostgreSQL).
fn integer(buf: &mut Vec<u8>, i: i64) {
    let mut digits = [0u8; 20];
    let mut n = i.unsigned_abs();
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if i < 0 {
        buf.push(b'-');
    }
    buf.extend_from_slice(&digits[at..]);
}

fn escape(buf: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        match b {
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            0 => buf.extend_from_slice(b"\\0"),
            _ => buf.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::types::Value;
    use crate::store::schema::Column;
    use crate::time::granularity::Granularity;

    fn table() -> TableSchema {
        TableSchema {
            name: "T".into(),
            aggregation: "A".into(),
            duration: Granularity::Seconds,
            columns: vec![
                Column { name: "AGG_TIMESTAMP".into(), ty: AttrType::Long, role: Role::Timestamp },
                Column { name: "s".into(), ty: AttrType::String, role: Role::Key(0) },
                Column { name: "f".into(), ty: AttrType::Float, role: Role::Latest(0) },
                Column { name: "d".into(), ty: AttrType::Double, role: Role::Latest(1) },
                Column { name: "b".into(), ty: AttrType::Bool, role: Role::Latest(2) },
                Column { name: "i".into(), ty: AttrType::Int, role: Role::Latest(3) },
            ],
            key_len: 2,
            partitioned: false,
        }
    }

    #[test]
    fn rows_are_tab_separated_with_escapes_and_null_as_backslash_n() {
        let t = table();
        let rows = vec![
            vec![
                Value::Long(7),
                Value::Str("a\tb\\c\nd\r\0é".into()),
                Value::Double(0.1),
                Value::Double(1e300),
                Value::Bool(true),
                Value::Long(3),
            ],
            vec![Value::Long(-8), Value::Null, Value::Null, Value::Long(2), Value::Int(0), Value::Null],
        ];
        let mut buf = Vec::new();
        encode(&mut buf, &t, &rows, &[0, 1]).unwrap();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "7\ta\\tb\\\\c\\nd\\r\\0é\t0.1\t1e300\t1\t3\n-8\t\\N\t\\N\t2.0\t0\t\\N\n"
        );
        assert_eq!(
            load_statement("\"T\"", &t),
            "LOAD DATA LOCAL INFILE 'tally' INTO TABLE \"T\" CHARACTER SET utf8mb4 FIELDS TERMINATED BY '\\t' \
             ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' (\"AGG_TIMESTAMP\", \"s\", \"f\", \"d\", \"b\", \"i\")"
        );
    }

    #[test]
    fn rows_are_loaded_in_bucket_order() {
        let t = table();
        let row = |ts: i64, k: &str| {
            vec![Value::Long(ts), Value::Str(k.into()), Value::Null, Value::Null, Value::Null, Value::Null]
        };
        let rows = vec![row(2000, "a"), row(1000, "b"), row(1000, "ab"), row(10, "z")];
        let mut buf = Vec::new();
        encode_sorted(&mut buf, &t, &rows, &[0, 1, 2, 3]).unwrap();
        let keys: Vec<String> = String::from_utf8(buf)
            .unwrap()
            .lines()
            .map(|l| l.split('\t').take(2).collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(keys, ["10 z", "1000 b", "1000 ab", "2000 a"]);
    }

    #[test]
    fn integers_are_written_in_decimal() {
        for i in [0, 7, -8, 10, 1_710_496_805_000, i64::MIN, i64::MAX] {
            let mut buf = Vec::new();
            integer(&mut buf, i);
            assert_eq!(String::from_utf8(buf).unwrap(), i.to_string());
        }
    }

    #[test]
    fn what_mysql_cannot_hold_is_refused_naming_the_column() {
        let t = table();
        let long = "é".repeat(255);
        let rows = vec![vec![Value::Long(1), Value::Str(long), Value::Null, Value::Null, Value::Null, Value::Null]];
        let e = encode(&mut Vec::new(), &t, &rows, &[0]).unwrap_err();
        assert!(e.starts_with("column `s` of T: a string of 255 characters does not fit VARCHAR(254)"), "{e}");
        let ok =
            vec![vec![Value::Long(1), Value::Str("é".repeat(254)), Value::Null, Value::Null, Value::Null, Value::Null]];
        encode(&mut Vec::new(), &t, &ok, &[0]).unwrap();
        let nan =
            vec![vec![Value::Long(1), Value::Null, Value::Null, Value::Double(f64::NAN), Value::Null, Value::Null]];
        let e = encode(&mut Vec::new(), &t, &nan, &[0]).unwrap_err();
        assert!(e.starts_with("column `d` of T: NaN cannot be stored"), "{e}");
    }
}
