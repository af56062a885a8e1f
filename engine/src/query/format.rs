//! Printing query answers: an aligned table for people, JSON and CSV for programs.

use super::QueryResult;
use crate::lang::types::Value;

/// `{"columns": [...], "records": [[...], ...]}` on one line.
pub fn json(r: &QueryResult) -> String {
    let records: Vec<serde_json::Value> =
        r.records.iter().map(|row| serde_json::Value::Array(row.iter().map(Value::to_json).collect())).collect();
    serde_json::json!({ "columns": r.columns, "records": records }).to_string()
}

/// RFC 4180 CSV with a header line; null is an empty field.
pub fn csv(r: &QueryResult) -> String {
    let field = |s: String| {
        if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
    };
    let mut out = r.columns.iter().map(|c| field(c.clone())).collect::<Vec<_>>().join(",");
    out.push('\n');
    for row in &r.records {
        let line: Vec<String> = row
            .iter()
            .map(|v| match v {
                Value::Null => String::new(),
                Value::Float(_) | Value::Double(_) => v.to_json().to_string(),
                other => field(other.to_string()),
            })
            .collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

/// A table with a header, numbers aligned right, and a row count.
pub fn table(r: &QueryResult) -> String {
    let cells: Vec<Vec<String>> = r
        .records
        .iter()
        .map(|row| {
            row.iter()
                .map(|v| match v {
                    Value::Float(_) | Value::Double(_) => v.to_json().to_string(),
                    other => other.to_string(),
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = (0..r.columns.len())
        .map(|i| cells.iter().map(|c| c[i].chars().count()).chain([r.columns[i].chars().count()]).max().unwrap_or(0))
        .collect();
    let numeric: Vec<bool> = (0..r.columns.len())
        .map(|i| {
            r.records.iter().all(|row| {
                matches!(row[i], Value::Null | Value::Int(_) | Value::Long(_) | Value::Float(_) | Value::Double(_))
            })
        })
        .collect();
    let line = |vals: &[String]| {
        vals.iter()
            .enumerate()
            .map(
                |(i, v)| {
                    if numeric[i] { format!("{v:>w$}", w = widths[i]) } else { format!("{v:<w$}", w = widths[i]) }
                },
            )
            .collect::<Vec<_>>()
            .join(" | ")
            .trim_end()
            .to_string()
    };
    let mut out = line(&r.columns);
    out.push('\n');
    out.push_str(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("-+-"));
    out.push('\n');
    for c in &cells {
        out.push_str(&line(c));
        out.push('\n');
    }
    out.push_str(&format!("({} row{})\n", cells.len(), if cells.len() == 1 { "" } else { "s" }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::types::AttrType;

    fn r() -> QueryResult {
        QueryResult {
            columns: vec!["symbol".into(), "total".into(), "avgPrice".into()],
            types: vec![Some(AttrType::String), Some(AttrType::Long), Some(AttrType::Double)],
            records: vec![
                vec![Value::Str("wso2".into()), Value::Long(70), Value::Double(100.0)],
                vec![Value::Str("a,\"b".into()), Value::Null, Value::Double(0.5)],
            ],
        }
    }

    #[test]
    fn three_formats() {
        assert_eq!(
            json(&r()),
            r#"{"columns":["symbol","total","avgPrice"],"records":[["wso2",70,100.0],["a,\"b",null,0.5]]}"#
        );
        assert_eq!(csv(&r()), "symbol,total,avgPrice\nwso2,70,100.0\n\"a,\"\"b\",,0.5\n");
        assert_eq!(
            table(&r()),
            "symbol | total | avgPrice\n-------+-------+---------\nwso2   |    70 |    100.0\na,\"b   |  null |      0.5\n(2 rows)\n"
        );
    }
}
