//! SQL text shared by the stores: quoting, table definitions, merge expressions.
//!
//! Identifiers come only from the checked app (table and column names); values are always
//! bound parameters.

use crate::lang::plan::CellKind;
use crate::lang::types::{AttrType, Value};
use crate::store::schema::{Role, TableSchema};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
    /// MySQL 8 and MariaDB 10.11+. The session runs with `ANSI_QUOTES` (see
    /// `store::mysql`), so identifiers are quoted with `"` as in the other two dialects.
    Mysql,
}

/// `"name"`, with embedded quotes doubled.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub fn column_type(d: Dialect, t: AttrType) -> &'static str {
    match (d, t) {
        (Dialect::Sqlite, AttrType::Int | AttrType::Long | AttrType::Bool) => "INTEGER",
        (Dialect::Sqlite, AttrType::Float | AttrType::Double) => "REAL",
        (Dialect::Sqlite, AttrType::String) => "TEXT",
        (Dialect::Postgres, AttrType::Int) => "INTEGER",
        (Dialect::Postgres, AttrType::Long) => "BIGINT",
        (Dialect::Postgres, AttrType::Bool) => "BOOLEAN",
        (Dialect::Postgres, AttrType::Float) => "REAL",
        (Dialect::Postgres, AttrType::Double) => "DOUBLE PRECISION",
        (Dialect::Postgres, AttrType::String) => "TEXT",
        // As siddhi-store-rdbms creates them on MySQL, so that an SI database is used in
        // place (its string columns are VARCHAR(254)).
        (Dialect::Mysql, AttrType::Int) => "INTEGER",
        (Dialect::Mysql, AttrType::Long) => "BIGINT",
        (Dialect::Mysql, AttrType::Bool) => "TINYINT(1)",
        (Dialect::Mysql, AttrType::Float) => "FLOAT",
        (Dialect::Mysql, AttrType::Double) => "DOUBLE",
        (Dialect::Mysql, AttrType::String) => "VARCHAR(254)",
    }
}

/// How a table's key is declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStyle {
    /// `PRIMARY KEY (…)`. SQLite lets its columns hold nulls; PostgreSQL makes them NOT NULL.
    PrimaryKey,
    /// `UNIQUE NULLS NOT DISTINCT (…)` (PostgreSQL 15+) when the key has group-by columns,
    /// which may hold nulls: a null group-by value is a group of its own, and its rows must
    /// still merge on conflict. A primary key otherwise.
    NullsNotDistinct,
}

/// `CREATE TABLE IF NOT EXISTS` for a table.
pub fn create_table(d: Dialect, t: &TableSchema, style: KeyStyle) -> String {
    create_table_named(d, t, &t.name, style)
}

/// [`create_table`] under another name (a table being rebuilt).
pub fn create_table_named(d: Dialect, t: &TableSchema, name: &str, style: KeyStyle) -> String {
    let mut cols: Vec<String> = t
        .columns
        .iter()
        .map(|c| {
            let not_null = if matches!(c.role, Role::Timestamp | Role::Shard) { " NOT NULL" } else { "" };
            // A distinct set (a JSON array) outgrows VARCHAR(254) at once.
            let ty = match (d, c.role) {
                (Dialect::Mysql, Role::Cell(_, CellKind::Set)) => "LONGTEXT",
                _ => column_type(d, c.ty),
            };
            format!("{} {ty}{}", quote(&c.name), not_null)
        })
        .collect();
    let key: Vec<String> = t.columns[..t.key_len].iter().map(|c| quote(&c.name)).collect();
    let has_group_by = t.columns[..t.key_len].iter().any(|c| matches!(c.role, Role::Key(_)));
    match style {
        KeyStyle::NullsNotDistinct if has_group_by => {
            cols.push(format!("UNIQUE NULLS NOT DISTINCT ({})", key.join(", ")))
        }
        _ => cols.push(format!("PRIMARY KEY ({})", key.join(", "))),
    }
    let storage = match (d, t.duration) {
        (Dialect::Sqlite | Dialect::Mysql, _) => String::new(),
        (Dialect::Postgres, duration) => format!(" WITH (fillfactor = {})", fillfactor(duration)),
    };
    format!("CREATE TABLE IF NOT EXISTS {} ({}){storage}", quote(name), cols.join(", "))
}

/// How full PostgreSQL packs a table's pages. A row of a coarse duration is merged into
/// at every flush while its bucket is open (an hour row 3,600 times at 1 s flushes); free
/// room on its page lets PostgreSQL update it in place (a HOT update: no new index entry),
/// which measured ~1.8× faster on 100 K merged rows and keeps the key index from bloating.
/// A seconds row is written about once, so its pages are packed.
fn fillfactor(d: crate::time::granularity::Granularity) -> u8 {
    match d {
        crate::time::granularity::Granularity::Seconds => 90,
        _ => 50,
    }
}

/// The statements that rebuild `t`, which exists without `SHARD_ID`, with the column filled
/// from parameter 1 and in the key: create the new table, copy, drop the old, rename.
pub fn migrate(d: Dialect, t: &TableSchema, style: KeyStyle) -> Vec<String> {
    let temp = format!("{}__tally_migrating", t.name);
    let cols: Vec<String> = t.columns.iter().map(|c| quote(&c.name)).collect();
    let values: Vec<String> = t
        .columns
        .iter()
        .map(|c| if matches!(c.role, Role::Shard) { placeholder(d, 1) } else { quote(&c.name) })
        .collect();
    let mut steps = vec![
        format!("DROP TABLE IF EXISTS {}", quote(&temp)),
        create_table_named(d, t, &temp, style),
        format!(
            "INSERT INTO {} ({}) SELECT {} FROM {}",
            quote(&temp),
            cols.join(", "),
            values.join(", "),
            quote(&t.name)
        ),
    ];
    if d == Dialect::Mysql {
        // MySQL commits at every DDL statement, so the swap is one atomic RENAME TABLE and
        // the old table is dropped only after it: a failure at any step leaves the old
        // table in place, or the new one complete.
        let old = format!("{}__tally_premigration", t.name);
        steps.push(format!("DROP TABLE IF EXISTS {}", quote(&old)));
        steps.push(format!(
            "RENAME TABLE {} TO {}, {} TO {}",
            quote(&t.name),
            quote(&old),
            quote(&temp),
            quote(&t.name)
        ));
        steps.push(format!("DROP TABLE {}", quote(&old)));
    } else {
        steps.push(format!("DROP TABLE {}", quote(&t.name)));
        steps.push(format!("ALTER TABLE {} RENAME TO {}", quote(&temp), quote(&t.name)));
    }
    steps
}

/// The newest bucket of shard `?1`/`$1` in a partitioned table (NULL when none).
///
/// MySQL reads `max(…) WHERE SHARD_ID = ?` by scanning the whole key (it leads with
/// `AGG_TIMESTAMP`): seconds on a table of millions of rows, inside the flush transaction
/// that holds the node's registry row, so that the heartbeat waited behind it and the
/// node was presumed dead (the store-restart chaos run, after which every watermark is
/// read again). Walking the key backwards to the first row of the shard is one probe.
pub fn newest_bucket(d: Dialect, t: &TableSchema) -> String {
    match d {
        Dialect::Mysql => format!(
            "SELECT \"AGG_TIMESTAMP\" FROM {} WHERE \"SHARD_ID\" = {} ORDER BY \"AGG_TIMESTAMP\" DESC LIMIT 1",
            quote(&t.name),
            placeholder(d, 1)
        ),
        _ => {
            format!("SELECT max(\"AGG_TIMESTAMP\") FROM {} WHERE \"SHARD_ID\" = {}", quote(&t.name), placeholder(d, 1))
        }
    }
}

/// `DELETE` of the rows whose bucket starts before `?1`, and of shard `?2` when `by_shard`.
pub fn purge(d: Dialect, t: &TableSchema, by_shard: bool) -> String {
    let mut sql = format!("DELETE FROM {} WHERE \"AGG_TIMESTAMP\" < {}", quote(&t.name), placeholder(d, 1));
    if by_shard {
        sql.push_str(&format!(" AND \"SHARD_ID\" = {}", placeholder(d, 2)));
    }
    sql
}

/// The merged value of column `i` given the stored row's columns (unqualified names) and
/// the new value of each column as `new(j)` (an `excluded."c"` or a `?n` parameter).
pub fn merge_expr(d: Dialect, t: &TableSchema, i: usize, new: &dyn Fn(usize) -> String) -> Option<String> {
    let c = &t.columns[i];
    // PostgreSQL needs them qualified; so does MySQL's `INSERT … SELECT … ON DUPLICATE KEY
    // UPDATE`, where the staging table has the same column names.
    let qualify = |name: &str| match d {
        Dialect::Sqlite => quote(name),
        Dialect::Postgres | Dialect::Mysql => format!("{}.{}", quote(&t.name), quote(name)),
    };
    let old = qualify(&c.name);
    let n = new(i);
    let (least, greatest) = match d {
        // SQLite's two-argument min/max and MySQL's least/greatest are null when either
        // side is; PostgreSQL's least/greatest skip nulls.
        Dialect::Mysql => {
            (format!("coalesce(least({old}, {n}), {old}, {n})"), format!("coalesce(greatest({old}, {n}), {old}, {n})"))
        }
        Dialect::Sqlite => {
            (format!("coalesce(min({old}, {n}), {old}, {n})"), format!("coalesce(max({old}, {n}), {old}, {n})"))
        }
        Dialect::Postgres => (format!("least({old}, {n})"), format!("greatest({old}, {n})")),
    };
    Some(match c.role {
        Role::Timestamp | Role::Shard | Role::Key(_) => return None,
        Role::Cell(_, CellKind::Min) => least,
        Role::Cell(_, CellKind::Max) => greatest,
        Role::Cell(_, CellKind::Set) => format!("tally_set_union({old}, {n})"),
        Role::Cell(..) => format!("coalesce({old} + {n}, {old}, {n})"),
        Role::LastEventTimestamp => greatest,
        Role::Latest(_) => {
            let last = t.last_event_timestamp().expect("latest columns come with AGG_LAST_EVENT_TIMESTAMP");
            let old_last = qualify(&t.columns[last].name);
            // The newer time stamp wins; a tie goes to the write (the later arrival).
            format!("CASE WHEN {old_last} IS NULL OR {} >= {old_last} THEN {n} ELSE {old} END", new(last))
        }
    })
}

/// `INSERT … ON CONFLICT (key) DO UPDATE SET …` with `?1..?n` parameters in column order.
pub fn upsert(d: Dialect, t: &TableSchema) -> String {
    let params: Vec<String> = (1..=t.columns.len()).map(|i| placeholder(d, i)).collect();
    merge_insert(d, t, "", &format!("VALUES ({})", params.join(", ")))
}

/// `INSERT … VALUES (…), (…), … ON CONFLICT (key) DO UPDATE SET …` for `rows` rows with
/// parameters in row-major column order. Not used by the stores (they COPY into a staging
/// table); it is the baseline the flush bench measures them against.
pub fn upsert_rows(d: Dialect, t: &TableSchema, rows: usize) -> String {
    let n = t.columns.len();
    let tuples: Vec<String> = (0..rows)
        .map(|r| {
            let params: Vec<String> = (1..=n).map(|i| placeholder(d, r * n + i)).collect();
            format!("({})", params.join(", "))
        })
        .collect();
    merge_insert(d, t, &format!(" AS {}", quote(&t.name)), &format!("VALUES {}", tuples.join(", ")))
}

/// `sql` with MySQL's named parameters (`:p1`, `:p2`, …, as [`placeholder`] writes them, in
/// order) as positional `?`: a statement of thousands of parameters binds them as a list.
pub fn positional(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    let mut quoted: Option<char> = None;
    while let Some(c) = chars.next() {
        match quoted {
            Some(q) if c == q => quoted = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quoted = Some(c),
            None if c == ':' && chars.peek() == Some(&'p') => {
                chars.next();
                while chars.peek().is_some_and(char::is_ascii_digit) {
                    chars.next();
                }
                out.push('?');
                continue;
            }
            None => {}
        }
        out.push(c);
    }
    out
}

/// PostgreSQL: a multi-row `INSERT … VALUES … ON CONFLICT (key) DO UPDATE` with the values
/// written as literals, so that a small flush sends every table's rows in one round trip
/// (`batch_execute`) instead of a COPY, a staging table and a merge per table. Values come
/// typed from the engine, never from text to be interpreted: numbers are formatted,
/// strings quoted with `'` doubled, and a string with a backslash written as an escape
/// string (`E'…'`, backslashes doubled), which reads the same whatever the server's
/// standard_conforming_strings: a value cannot end its literal early (tested with hostile
/// group-by values in cli/tests/security.rs).
pub fn upsert_literal(t: &TableSchema, rows: &[Vec<Value>]) -> String {
    let tuples: Vec<String> = rows
        .iter()
        .map(|r| {
            let vals: Vec<String> = r.iter().zip(&t.columns).map(|(v, c)| literal(v, c.ty)).collect();
            format!("({})", vals.join(", "))
        })
        .collect();
    merge_insert(Dialect::Postgres, t, &format!(" AS {}", quote(&t.name)), &format!("VALUES {}", tuples.join(", ")))
}

/// A value as a PostgreSQL literal of a column of type `ty`.
pub fn literal(v: &Value, ty: AttrType) -> String {
    let float = |f: f64| {
        if f.is_nan() {
            "'NaN'::float8".to_string()
        } else if f.is_infinite() {
            if f > 0.0 { "'Infinity'::float8".into() } else { "'-Infinity'::float8".into() }
        } else {
            format!("{f:?}")
        }
    };
    match (v, ty) {
        (Value::Null, _) => "NULL".into(),
        (Value::Str(s), _) if s.contains('\\') => format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''")),
        (Value::Str(s), _) => format!("'{}'", s.replace('\'', "''")),
        (Value::Bool(b), _) => b.to_string(),
        (Value::Int(i), AttrType::Bool) => (*i != 0).to_string(),
        (Value::Long(i), AttrType::Bool) => (*i != 0).to_string(),
        (Value::Int(i), _) => i.to_string(),
        (Value::Long(i), _) => i.to_string(),
        (Value::Float(f), _) => float(f64::from(*f)),
        (Value::Double(f), _) => float(*f),
    }
}

/// `INSERT … SELECT … FROM stage ON CONFLICT (key) DO UPDATE SET …`: merges a staging table.
/// The rows go in key order: a flush's rows come out of a hash map, and inserting them into
/// the key's b-tree in order touches each leaf page once (measured ~15% faster on 100 K
/// shuffled rows).
pub fn merge_from(d: Dialect, t: &TableSchema, stage: &str) -> String {
    let cols: Vec<String> = t.columns.iter().map(|c| quote(&c.name)).collect();
    let key = cols[..t.key_len].join(", ");
    merge_insert(
        d,
        t,
        &format!(" AS {}", quote(&t.name)),
        &format!("SELECT {} FROM {stage} ORDER BY {key}", cols.join(", ")),
    )
}

/// PostgreSQL 15+ `MERGE INTO table USING stage ON key = key …`: the staged rows merged
/// into the table, the same combination as [`merge_from`].
///
/// Measured on PostgreSQL 15 with 1 K, 10 K and 100 K staged rows that all exist already,
/// this took about half the time of `INSERT … SELECT … ON CONFLICT DO UPDATE` (which first
/// tries each row as an insert, then visits the conflicting row to update it). Two limits,
/// which the caller must respect: the key is matched by `=`, so a row with a null key value
/// would not match its stored row and be inserted twice (use [`merge_from`] for such
/// rows); and a concurrent insert of the same key fails with a unique violation instead of
/// turning into an update, so only a table whose rows have one writer (a shard's) may use it.
pub fn merge_using(t: &TableSchema, stage: &str) -> String {
    let d = Dialect::Postgres;
    let cols: Vec<String> = t.columns.iter().map(|c| quote(&c.name)).collect();
    let target = quote(&t.name);
    let on: Vec<String> = cols[..t.key_len].iter().map(|c| format!("{target}.{c} = s.{c}")).collect();
    let sets: Vec<String> = (0..t.columns.len())
        .filter_map(|i| merge_expr(d, t, i, &|j| format!("s.{}", cols[j])).map(|e| format!("{} = {e}", cols[i])))
        .collect();
    let matched = if sets.is_empty() { "DO NOTHING".to_string() } else { format!("UPDATE SET {}", sets.join(", ")) };
    let values: Vec<String> = cols.iter().map(|c| format!("s.{c}")).collect();
    format!(
        "MERGE INTO {target} AS {target} USING {stage} AS s ON {} WHEN MATCHED THEN {matched} \
         WHEN NOT MATCHED THEN INSERT ({}) VALUES ({})",
        on.join(" AND "),
        cols.join(", "),
        values.join(", ")
    )
}

/// An insert of `rows` (a VALUES list or a SELECT) that merges into the existing row on a
/// key conflict; `alias` names the target for dialects that need it qualified.
fn merge_insert(d: Dialect, t: &TableSchema, alias: &str, rows: &str) -> String {
    let cols: Vec<String> = t.columns.iter().map(|c| quote(&c.name)).collect();
    if d == Dialect::Mysql {
        return merge_insert_mysql(t, &cols, rows);
    }
    let key = &cols[..t.key_len];
    let sets: Vec<String> = (0..t.columns.len())
        .filter_map(|i| merge_expr(d, t, i, &|j| format!("excluded.{}", cols[j])).map(|e| format!("{} = {e}", cols[i])))
        .collect();
    let action = if sets.is_empty() { "DO NOTHING".to_string() } else { format!("DO UPDATE SET {}", sets.join(", ")) };
    format!(
        "INSERT INTO {}{alias} ({}) {rows} ON CONFLICT ({}) {action}",
        quote(&t.name),
        cols.join(", "),
        key.join(", ")
    )
}

/// MySQL's `INSERT … ON DUPLICATE KEY UPDATE`, the new values as `VALUES("c")` (which MySQL
/// 8.0.20+ deprecates but still takes, and MariaDB needs: it has no row alias). MySQL
/// assigns left to right and a later assignment reads the stored column as already
/// updated, so `AGG_LAST_EVENT_TIMESTAMP`, which the latest values compare against, is
/// assigned last.
fn merge_insert_mysql(t: &TableSchema, cols: &[String], rows: &str) -> String {
    let d = Dialect::Mysql;
    let mut order: Vec<usize> = (0..t.columns.len()).collect();
    order.sort_by_key(|&i| matches!(t.columns[i].role, Role::LastEventTimestamp));
    let sets: Vec<String> = order
        .into_iter()
        .filter_map(|i| {
            merge_expr(d, t, i, &|j| format!("VALUES({})", cols[j]))
                .map(|e| format!("{}.{} = {e}", quote(&t.name), cols[i]))
        })
        .collect();
    // Nothing to merge (a table of keys only): a no-op assignment keeps the stored row.
    let sets = if sets.is_empty() { format!("{0}.{1} = {0}.{1}", quote(&t.name), cols[0]) } else { sets.join(", ") };
    format!("INSERT INTO {} ({}) {rows} ON DUPLICATE KEY UPDATE {sets}", quote(&t.name), cols.join(", "))
}

/// `UPDATE … WHERE key IS ?` for keys holding nulls (which never conflict in a primary key).
pub fn update_null_safe(d: Dialect, t: &TableSchema) -> String {
    let sets: Vec<String> = (0..t.columns.len())
        .filter_map(|i| {
            merge_expr(d, t, i, &|j| placeholder(d, j + 1)).map(|e| format!("{} = {e}", quote(&t.columns[i].name)))
        })
        .collect();
    let cond: Vec<String> = (0..t.key_len)
        .map(|i| match d {
            Dialect::Sqlite => {
                format!("{} IS {}", quote(&t.columns[i].name), placeholder(d, i + 1))
            }
            Dialect::Postgres => {
                format!("{} IS NOT DISTINCT FROM {}", quote(&t.columns[i].name), placeholder(d, i + 1))
            }
            Dialect::Mysql => format!("{} <=> {}", quote(&t.columns[i].name), placeholder(d, i + 1)),
        })
        .collect();
    let sets = if sets.is_empty() { format!("{0} = {0}", quote(&t.columns[0].name)) } else { sets.join(", ") };
    format!("UPDATE {} SET {sets} WHERE {}", quote(&t.name), cond.join(" AND "))
}

pub fn insert(d: Dialect, t: &TableSchema) -> String {
    let cols: Vec<String> = t.columns.iter().map(|c| quote(&c.name)).collect();
    let params: Vec<String> = (1..=t.columns.len()).map(|i| placeholder(d, i)).collect();
    format!("INSERT INTO {} ({}) VALUES ({})", quote(&t.name), cols.join(", "), params.join(", "))
}

/// `SELECT` of every column for buckets in `[?1, ?2)`, plus `AND "k" = ?n` for each given key
/// column index.
pub fn scan(d: Dialect, t: &TableSchema, key_filters: &[usize]) -> String {
    let cols: Vec<String> = t.columns.iter().map(|c| quote(&c.name)).collect();
    let mut sql = format!(
        "SELECT {} FROM {} WHERE \"AGG_TIMESTAMP\" >= {} AND \"AGG_TIMESTAMP\" < {}",
        cols.join(", "),
        quote(&t.name),
        placeholder(d, 1),
        placeholder(d, 2)
    );
    for (n, &k) in key_filters.iter().enumerate() {
        sql.push_str(&format!(" AND {} = {}", cols[k], placeholder(d, n + 3)));
    }
    sql
}

/// Parameter `i` (from 1): `?i`, `$i`, or for MySQL the named `:pi` (the `mysql` crate
/// turns named parameters into positional ones, so one may appear twice).
pub fn placeholder(d: Dialect, i: usize) -> String {
    match d {
        Dialect::Sqlite => format!("?{i}"),
        Dialect::Postgres => format!("${i}"),
        Dialect::Mysql => format!(":p{i}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeConfig;
    use crate::lang::plan::check;
    use crate::time::granularity::Granularity;

    #[test]
    fn seed_upsert_sql() {
        let cfg = NodeConfig::parse("wso2.carbon: {id: n1}", "n").unwrap();
        let app = check(
            "define stream S (symbol string, price double, quantity long, timestamp long);
             @PartitionById define aggregation A from S select symbol, avg(price) as p, sum(quantity) as q, max(price) as m, price as last
             group by symbol aggregate by timestamp every sec;",
            "a",
            &cfg,
        )
        .unwrap();
        let t = TableSchema::new(&app, &app.aggregations[0], Granularity::Seconds);
        assert_eq!(
            create_table(Dialect::Sqlite, &t, KeyStyle::PrimaryKey),
            "CREATE TABLE IF NOT EXISTS \"A_SECONDS\" (\"AGG_TIMESTAMP\" INTEGER NOT NULL, \"SHARD_ID\" TEXT NOT NULL, \"symbol\" TEXT, \
             \"last\" REAL, \"AGG_LAST_EVENT_TIMESTAMP\" INTEGER, \"AGG_SUM_price\" REAL, \"AGG_COUNT_price\" INTEGER, \
             \"AGG_SUM_quantity\" INTEGER, \"AGG_MAX_price\" REAL, PRIMARY KEY (\"AGG_TIMESTAMP\", \"SHARD_ID\", \"symbol\"))"
        );
        let up = upsert(Dialect::Sqlite, &t);
        assert!(up.starts_with("INSERT INTO \"A_SECONDS\""), "{up}");
        assert!(up.contains("ON CONFLICT (\"AGG_TIMESTAMP\", \"SHARD_ID\", \"symbol\") DO UPDATE SET"), "{up}");
        assert!(
            up.contains("\"AGG_SUM_quantity\" = coalesce(\"AGG_SUM_quantity\" + excluded.\"AGG_SUM_quantity\""),
            "{up}"
        );
        assert!(up.contains("\"last\" = CASE WHEN \"AGG_LAST_EVENT_TIMESTAMP\" IS NULL OR excluded.\"AGG_LAST_EVENT_TIMESTAMP\" >= \"AGG_LAST_EVENT_TIMESTAMP\""), "{up}");
        let pg = upsert(Dialect::Postgres, &t);
        assert!(
            pg.contains("greatest(\"A_SECONDS\".\"AGG_MAX_price\", excluded.\"AGG_MAX_price\")") && pg.contains("$9"),
            "{pg}"
        );
        assert_eq!(quote("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(
            positional("SELECT \":p1\", ':p2' FROM t WHERE a = :p1 AND b = :p12"),
            "SELECT \":p1\", ':p2' FROM t WHERE a = ? AND b = ?"
        );
        let my = upsert_rows(Dialect::Mysql, &t, 2);
        assert!(my.contains("VALUES (:p1, :p2, :p3, :p4, :p5, :p6, :p7, :p8, :p9), (:p10,"), "{my}");
        assert!(my.contains(" ON DUPLICATE KEY UPDATE \"A_SECONDS\".\"last\" = CASE WHEN \"A_SECONDS\".\"AGG_LAST_EVENT_TIMESTAMP\" IS NULL OR VALUES(\"AGG_LAST_EVENT_TIMESTAMP\") >= \"A_SECONDS\".\"AGG_LAST_EVENT_TIMESTAMP\" THEN VALUES(\"last\") ELSE \"A_SECONDS\".\"last\" END"), "{my}");
        assert!(my.ends_with("\"A_SECONDS\".\"AGG_LAST_EVENT_TIMESTAMP\" = coalesce(greatest(\"A_SECONDS\".\"AGG_LAST_EVENT_TIMESTAMP\", VALUES(\"AGG_LAST_EVENT_TIMESTAMP\")), \"A_SECONDS\".\"AGG_LAST_EVENT_TIMESTAMP\", VALUES(\"AGG_LAST_EVENT_TIMESTAMP\"))"), "the time stamp is assigned last: {my}");
        assert_eq!(
            create_table(Dialect::Mysql, &t, KeyStyle::PrimaryKey),
            "CREATE TABLE IF NOT EXISTS \"A_SECONDS\" (\"AGG_TIMESTAMP\" BIGINT NOT NULL, \"SHARD_ID\" VARCHAR(254) NOT NULL, \"symbol\" VARCHAR(254), \
             \"last\" DOUBLE, \"AGG_LAST_EVENT_TIMESTAMP\" BIGINT, \"AGG_SUM_price\" DOUBLE, \"AGG_COUNT_price\" BIGINT, \
             \"AGG_SUM_quantity\" BIGINT, \"AGG_MAX_price\" DOUBLE, PRIMARY KEY (\"AGG_TIMESTAMP\", \"SHARD_ID\", \"symbol\"))"
        );
        let m = migrate(Dialect::Mysql, &t, KeyStyle::PrimaryKey);
        assert_eq!(
            m[4],
            "RENAME TABLE \"A_SECONDS\" TO \"A_SECONDS__tally_premigration\", \"A_SECONDS__tally_migrating\" TO \"A_SECONDS\""
        );
        let lit = upsert_literal(
            &t,
            &[vec![
                Value::Long(1000),
                Value::Str("n1".into()),
                Value::Str("it's \\ x".into()),
                Value::Double(f64::NAN),
                Value::Null,
                Value::Double(2.5),
                Value::Long(3),
                Value::Long(-4),
                Value::Double(f64::INFINITY),
            ]],
        );
        assert!(
            lit.contains(
                "VALUES (1000, 'n1', E'it''s \\\\ x', 'NaN'::float8, NULL, 2.5, 3, -4, 'Infinity'::float8) ON CONFLICT"
            ),
            "{lit}"
        );
        let m = merge_using(&t, "\"stage\"");
        assert!(
            m.starts_with(
                "MERGE INTO \"A_SECONDS\" AS \"A_SECONDS\" USING \"stage\" AS s ON \"A_SECONDS\".\"AGG_TIMESTAMP\" = s.\"AGG_TIMESTAMP\" \
                 AND \"A_SECONDS\".\"SHARD_ID\" = s.\"SHARD_ID\" AND \"A_SECONDS\".\"symbol\" = s.\"symbol\" WHEN MATCHED THEN UPDATE SET "
            ),
            "{m}"
        );
        assert!(
            m.contains("\"AGG_MAX_price\" = greatest(\"A_SECONDS\".\"AGG_MAX_price\", s.\"AGG_MAX_price\")"),
            "{m}"
        );
        assert!(m.contains("\"last\" = CASE WHEN \"A_SECONDS\".\"AGG_LAST_EVENT_TIMESTAMP\" IS NULL OR s.\"AGG_LAST_EVENT_TIMESTAMP\" >= "), "{m}");
        assert!(m.ends_with("WHEN NOT MATCHED THEN INSERT (\"AGG_TIMESTAMP\", \"SHARD_ID\", \"symbol\", \"last\", \"AGG_LAST_EVENT_TIMESTAMP\", \"AGG_SUM_price\", \"AGG_COUNT_price\", \"AGG_SUM_quantity\", \"AGG_MAX_price\") VALUES (s.\"AGG_TIMESTAMP\", s.\"SHARD_ID\", s.\"symbol\", s.\"last\", s.\"AGG_LAST_EVENT_TIMESTAMP\", s.\"AGG_SUM_price\", s.\"AGG_COUNT_price\", s.\"AGG_SUM_quantity\", s.\"AGG_MAX_price\")"), "{m}");
        assert!(create_table(Dialect::Postgres, &t, KeyStyle::NullsNotDistinct).ends_with(
            "UNIQUE NULLS NOT DISTINCT (\"AGG_TIMESTAMP\", \"SHARD_ID\", \"symbol\")) WITH (fillfactor = 90)"
        ));
        let m = migrate(Dialect::Postgres, &t, KeyStyle::PrimaryKey);
        assert!(m[2].starts_with("INSERT INTO \"A_SECONDS__tally_migrating\""), "{m:?}");
        assert!(m[2].contains("SELECT \"AGG_TIMESTAMP\", $1, \"symbol\""), "{m:?}");
        assert_eq!(m[4], "ALTER TABLE \"A_SECONDS__tally_migrating\" RENAME TO \"A_SECONDS\"");
        assert_eq!(
            purge(Dialect::Sqlite, &t, true),
            "DELETE FROM \"A_SECONDS\" WHERE \"AGG_TIMESTAMP\" < ?1 AND \"SHARD_ID\" = ?2"
        );
        assert!(
            update_null_safe(Dialect::Sqlite, &t)
                .ends_with("WHERE \"AGG_TIMESTAMP\" IS ?1 AND \"SHARD_ID\" IS ?2 AND \"symbol\" IS ?3")
        );
    }
}
