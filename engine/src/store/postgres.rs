//! The PostgreSQL store: the shared database of a real cluster.
//!
//! A flush is one transaction: the rows of each table go by binary COPY into a temporary
//! staging table, then one `INSERT … SELECT … ON CONFLICT (primary key) DO UPDATE` merges
//! them into the table (sums added, min/max combined, sets united, latest by time stamp).
//! No per-row INSERT statements.

use super::sql::{self, Dialect, quote};
use super::{FlushWrite, Store, StoreAddress};
use crate::error::{Error, Result};
use crate::schema::TableSchema;
use crate::types::{AttrType, Value};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, NoTls};
use std::str::FromStr;
use std::time::Duration as StdDuration;

pub struct PostgresStore {
    address: StoreAddress,
    client: Client,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").field("address", &self.address.redacted()).finish()
    }
}

/// Maps a PostgreSQL error to the engine's, with its SQLSTATE and the server's message, and
/// whether a retry can help (connection lost, server starting or shutting down, too many
/// connections, serialization failure or deadlock).
pub fn error(context: &str, e: postgres::Error) -> Error {
    let code = e.code().map(|c| c.code().to_string());
    let message = match e.as_db_error() {
        Some(db) => {
            format!("{context}: {}{}", db.message(), db.detail().map(|d| format!(" ({d})")).unwrap_or_default())
        }
        None => format!("{context}: {e}"),
    };
    let retryable = e.is_closed()
        || e.as_db_error().is_none()
        || code.as_deref().is_some_and(|c| {
            c.starts_with("08") || c.starts_with("53") || c.starts_with("57P") || c == "40001" || c == "40P01"
        });
    Error::Store { backend: "postgres", code, message, retryable }
}

fn pg_type(t: AttrType) -> Type {
    match t {
        AttrType::Int => Type::INT4,
        AttrType::Long => Type::INT8,
        AttrType::Float => Type::FLOAT4,
        AttrType::Double => Type::FLOAT8,
        AttrType::String => Type::TEXT,
        AttrType::Bool => Type::BOOL,
    }
}

/// A value bound as the type of its column.
#[derive(Debug)]
enum Param {
    I32(Option<i32>),
    I64(Option<i64>),
    F32(Option<f32>),
    F64(Option<f64>),
    Text(Option<String>),
    Bool(Option<bool>),
}

impl Param {
    fn new(v: &Value, t: AttrType) -> Param {
        match (t, v.clone().cast(t)) {
            (AttrType::Int, Value::Int(i)) => Param::I32(Some(i)),
            (AttrType::Int, _) => Param::I32(None),
            (AttrType::Long, Value::Long(i)) => Param::I64(Some(i)),
            (AttrType::Long, _) => Param::I64(None),
            (AttrType::Float, Value::Float(f)) => Param::F32(Some(f)),
            (AttrType::Float, _) => Param::F32(None),
            (AttrType::Double, Value::Double(f)) => Param::F64(Some(f)),
            (AttrType::Double, _) => Param::F64(None),
            (AttrType::String, Value::Str(s)) => Param::Text(Some(s)),
            (AttrType::String, _) => Param::Text(None),
            (AttrType::Bool, Value::Bool(b)) => Param::Bool(Some(b)),
            (AttrType::Bool, _) => Param::Bool(None),
        }
    }
}

impl ToSql for Param {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Param::I32(v) => v.to_sql(ty, out),
            Param::I64(v) => v.to_sql(ty, out),
            Param::F32(v) => v.to_sql(ty, out),
            Param::F64(v) => v.to_sql(ty, out),
            Param::Text(v) => v.to_sql(ty, out),
            Param::Bool(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        [Type::INT4, Type::INT8, Type::FLOAT4, Type::FLOAT8, Type::TEXT, Type::BOOL].contains(ty)
    }

    to_sql_checked!();
}

/// The union of two stored distinct sets (JSON arrays), as SQL for the merge.
const SET_UNION: &str = "CREATE OR REPLACE FUNCTION tally_set_union(a text, b text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN a IS NULL THEN b WHEN b IS NULL THEN a ELSE
    (SELECT coalesce(jsonb_agg(DISTINCT e ORDER BY e), '[]'::jsonb)::text
       FROM jsonb_array_elements(a::jsonb || b::jsonb) AS e) END
$$";

/// Serializes schema changes of nodes starting together (an arbitrary, fixed number).
const SCHEMA_LOCK: i64 = 0x7a11_5c4e;

impl PostgresStore {
    pub fn open(address: StoreAddress) -> Result<PostgresStore> {
        let StoreAddress::Postgres { url } = &address else {
            unreachable!("PostgresStore::open takes postgres addresses")
        };
        let ctx = format!("cannot connect to {}", address.redacted());
        let mut config = postgres::Config::from_str(url).map_err(|e| error(&ctx, e))?;
        config.connect_timeout(StdDuration::from_secs(10));
        config.application_name("tally");
        let client = config.connect(NoTls).map_err(|e| error(&ctx, e))?;
        Ok(PostgresStore { address, client })
    }
}

fn read_value(row: &postgres::Row, i: usize, t: AttrType) -> std::result::Result<Value, postgres::Error> {
    Ok(match t {
        AttrType::Int => row.try_get::<_, Option<i32>>(i)?.map(Value::Int),
        AttrType::Long => row.try_get::<_, Option<i64>>(i)?.map(Value::Long),
        AttrType::Float => row.try_get::<_, Option<f32>>(i)?.map(Value::Float),
        AttrType::Double => row.try_get::<_, Option<f64>>(i)?.map(Value::Double),
        AttrType::String => row.try_get::<_, Option<String>>(i)?.map(Value::Str),
        AttrType::Bool => row.try_get::<_, Option<bool>>(i)?.map(Value::Bool),
    }
    .unwrap_or(Value::Null))
}

impl Store for PostgresStore {
    fn address(&self) -> &StoreAddress {
        &self.address
    }

    fn prepare(&mut self, tables: &[TableSchema]) -> Result<()> {
        let mut tx = self.client.transaction().map_err(|e| error("cannot start the schema transaction", e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .map_err(|e| error("cannot lock the schema", e))?;
        tx.batch_execute(SET_UNION).map_err(|e| error("cannot create the function tally_set_union", e))?;
        let existing = |tx: &mut postgres::Transaction<'_>, name: &str| -> Result<Option<Vec<String>>> {
            let rows = tx
                .query(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1",
                    &[&name],
                )
                .map_err(|e| error(&format!("cannot read the layout of {name}"), e))?;
            let cols: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            Ok(if cols.is_empty() { None } else { Some(cols) })
        };
        let mut missing_tables = Vec::new();
        let mut layouts = Vec::new();
        for t in tables {
            match existing(&mut tx, &t.name)? {
                None => missing_tables.push(t),
                Some(cols) => layouts.push((t, cols)),
            }
        }
        super::check_layouts(&layouts)?;
        for t in missing_tables {
            tx.batch_execute(&sql::create_table(Dialect::Postgres, t))
                .map_err(|e| error(&format!("cannot create {}", t.name), e))?;
        }
        tx.commit().map_err(|e| error("cannot commit the schema transaction", e))
    }

    fn write(&mut self, flush: &FlushWrite<'_>) -> Result<()> {
        let mut tx = self.client.transaction().map_err(|e| error("cannot start the flush transaction", e))?;
        for tw in &flush.tables {
            let t = tw.table;
            let ctx = format!("cannot write to {}", t.name);
            let stage = quote(&format!("tally_stage_{}", t.name));
            let cols: Vec<String> = t.columns.iter().map(|c| quote(&c.name)).collect();
            tx.batch_execute(&format!(
                "CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
                quote(&t.name)
            ))
            .map_err(|e| error(&ctx, e))?;
            let types: Vec<Type> = t.columns.iter().map(|c| pg_type(c.ty)).collect();
            let copy = tx
                .copy_in(&format!("COPY {stage} ({}) FROM STDIN (FORMAT binary)", cols.join(", ")))
                .map_err(|e| error(&ctx, e))?;
            let mut writer = BinaryCopyInWriter::new(copy, &types);
            for row in tw.rows {
                let params: Vec<Param> = row.iter().zip(&t.columns).map(|(v, c)| Param::new(v, c.ty)).collect();
                let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
                writer.write(&refs).map_err(|e| error(&ctx, e))?;
            }
            writer.finish().map_err(|e| error(&ctx, e))?;
            tx.batch_execute(&sql::merge_from(Dialect::Postgres, t, &stage)).map_err(|e| error(&ctx, e))?;
        }
        tx.commit().map_err(|e| error("cannot commit the flush", e))
    }

    fn scan(&mut self, table: &TableSchema, start: i64, end: i64, equal: &[(usize, Value)]) -> Result<Vec<Vec<Value>>> {
        let ctx = format!("cannot read {}", table.name);
        let exists = self
            .client
            .query_opt(
                "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1",
                &[&table.name],
            )
            .map_err(|e| error(&ctx, e))?;
        if exists.is_none() {
            return Ok(Vec::new());
        }
        let cols: Vec<usize> = equal.iter().map(|(c, _)| *c).collect();
        let mut params: Vec<Param> = vec![Param::I64(Some(start)), Param::I64(Some(end))];
        params.extend(equal.iter().map(|(c, v)| Param::new(v, table.columns[*c].ty)));
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let rows = self.client.query(&sql::scan(Dialect::Postgres, table, &cols), &refs).map_err(|e| error(&ctx, e))?;
        rows.iter()
            .map(|r| {
                table
                    .columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| read_value(r, i, c.ty))
                    .collect::<std::result::Result<Vec<_>, _>>()
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| error(&ctx, e))
    }
}
