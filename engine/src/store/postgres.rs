//! The PostgreSQL store: the shared database of a real cluster.
//!
//! A flush is one transaction: the rows of each table go by binary COPY into a temporary
//! staging table, then one statement merges them into the table (sums added, min/max
//! combined, sets united, latest by time stamp): `MERGE` for a shard's rows on PostgreSQL
//! 15+, else `INSERT … SELECT … ON CONFLICT (key) DO UPDATE`. Rows of buckets newer than the
//! shard's newest skip the staging (see `Watermark`). No per-row INSERT statements.

use super::mark::{self, Mark, statements as marks};
use super::registry::{self, Applied, Claim, Entry, for_dialect, statements as reg};
use super::sql::{self, Dialect, KeyStyle, quote};
use super::{FlushWrite, Reader, Registry, Schema, Store, StoreAddress, TableWrite, Writer};
use crate::error::{Error, Result};
use crate::lang::types::{AttrType, Value};
use crate::store::schema::TableSchema;
use crate::time::clock::now_ms;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, NoTls};
use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

pub struct PostgresStore {
    address: StoreAddress,
    config: postgres::Config,
    client: Client,
    /// `UNIQUE NULLS NOT DISTINCT` keys on PostgreSQL 15+, so null group-by values merge.
    key_style: KeyStyle,
    /// Per table name: the newest bucket of this node's shard.
    watermarks: HashMap<String, Watermark>,
    /// The flush's registry update, prepared once per connection (a round trip saved on
    /// every flush).
    record_flush: Option<postgres::Statement>,
    /// Per (table, MERGE or ON CONFLICT): the prepared array merge of a medium flush
    /// ([`MEDIUM_FLUSH_ROWS`]), for this connection.
    array_merges: HashMap<(String, bool), postgres::Statement>,
}

/// A flush of at most this many rows goes as literal upserts in one round trip
/// ([`sql::upsert_literal`]); a larger one by COPY (and staging and merge). Measured with
/// one client posting one event per request: a one-event flush was ~30 round trips (a
/// COPY, a staging table and a merge per duration), ~4 ms on loopback.
pub const SMALL_FLUSH_ROWS: usize = 256;

/// A flush of at most this many rows (and more than [`SMALL_FLUSH_ROWS`]) goes as one
/// prepared statement per table that merges the rows sent as one binary array per column
/// (`unnest`): one round trip a table, where COPY, a staging table and a merge take five.
/// It is the flush size group commit makes under load (16 HTTP clients posting 100 events
/// each, 1,000 keys: 550–800 rows a flush; 226 K → 350 K events/s). Measured with
/// `scripts/bench_flush.sh` (PostgreSQL 15, fsync on, rows/s): 1,000 rows merged 464 K
/// this way against 245 K by COPY; at 10,000 rows COPY wins (493 K against 356 K).
pub const MEDIUM_FLUSH_ROWS: usize = 4_096;

/// The newest bucket a partitioned table holds for this node's shard.
///
/// A shard has one writer (the registry refuses a second live one and fences a replaced
/// one), so a row of this shard whose bucket is newer than the newest stored cannot exist
/// yet: it goes into the table by a plain binary COPY, skipping the staging table and the
/// conflict check. Only the others are staged and merged. A flush of fresh second
/// buckets, or a replay of history, is mostly such rows; measured on 100 K new rows, the
/// direct COPY took well under half the time of staging and merging them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watermark {
    At(i64),
    /// Read it again from the table before the next write.
    Reread,
    /// Merge every row of this table (the watermark proved wrong twice).
    Off,
}

/// How one flush attempt ended, when it did not succeed.
enum Attempt {
    /// A row of this table that the watermark called new already existed.
    Unexpected(String),
    Failed(Error),
}

impl From<Error> for Attempt {
    fn from(e: Error) -> Attempt {
        Attempt::Failed(e)
    }
}

/// The bucket (`AGG_TIMESTAMP`, the first column of every table) of a row.
fn bucket_of(row: &[Value]) -> i64 {
    row[0].as_i64().unwrap_or(i64::MIN)
}

/// Binary COPY of `rows` into `target` (the table's columns, in order).
fn copy_rows(
    tx: &mut postgres::Transaction<'_>,
    target: &str,
    t: &TableSchema,
    rows: &[&Vec<Value>],
) -> std::result::Result<(), postgres::Error> {
    let cols: Vec<String> = t.columns.iter().map(|c| quote(&c.name)).collect();
    let types: Vec<Type> = t.columns.iter().map(|c| pg_type(c.ty)).collect();
    let copy = tx.copy_in(&format!("COPY {target} ({}) FROM STDIN (FORMAT binary)", cols.join(", ")))?;
    let mut writer = BinaryCopyInWriter::new(copy, &types);
    for row in rows {
        writer.write_raw(row.iter().zip(&t.columns).map(|(v, c)| Param::new(v, c.ty)))?;
    }
    writer.finish()?;
    Ok(())
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

/// A value bound as the type of its column, borrowed from the row (no copy of strings:
/// this runs for every value of every flushed row).
#[derive(Debug)]
enum Param<'a> {
    I32(Option<i32>),
    I64(Option<i64>),
    F32(Option<f32>),
    F64(Option<f64>),
    Text(Option<&'a str>),
    Bool(Option<bool>),
}

impl<'a> Param<'a> {
    fn new(v: &'a Value, t: AttrType) -> Param<'a> {
        match t {
            AttrType::Int => Param::I32(match v {
                Value::Int(i) => Some(*i),
                Value::Long(i) => Some(*i as i32),
                _ => None,
            }),
            AttrType::Long => Param::I64(match v {
                Value::Int(_) | Value::Long(_) => v.as_i64(),
                _ => None,
            }),
            AttrType::Float => Param::F32(v.as_f64().map(|f| f as f32)),
            AttrType::Double => Param::F64(v.as_f64()),
            AttrType::String => Param::Text(match v {
                Value::Str(s) => Some(s.as_str()),
                _ => None,
            }),
            AttrType::Bool => Param::Bool(match v {
                Value::Bool(b) => Some(*b),
                Value::Int(i) => Some(*i != 0),
                Value::Long(i) => Some(*i != 0),
                _ => None,
            }),
        }
    }
}

impl ToSql for Param<'_> {
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
        config.connect_timeout(Duration::from_secs(10));
        config.application_name("tally");
        let mut client = config.connect(NoTls).map_err(|e| error(&ctx, e))?;
        let version: i32 = client
            .query_one("SELECT current_setting('server_version_num')::int", &[])
            .map_err(|e| error(&ctx, e))?
            .get(0);
        let key_style = if version >= 150_000 { KeyStyle::NullsNotDistinct } else { KeyStyle::PrimaryKey };
        Ok(PostgresStore {
            address,
            config,
            client,
            key_style,
            watermarks: HashMap::new(),
            record_flush: None,
            array_merges: HashMap::new(),
        })
    }

    /// The connection, opened again when the last one was lost (the server restarted, the
    /// network dropped it): the failed operation returned a retryable error, and its retry
    /// lands here.
    fn client(&mut self) -> Result<&mut Client> {
        if self.client.is_closed() {
            let ctx = format!("cannot reconnect to {}", self.address.redacted());
            self.client = self.config.connect(NoTls).map_err(|e| error(&ctx, e))?;
            // Prepared statements belong to the connection that prepared them.
            self.record_flush = None;
            self.array_merges.clear();
        }
        Ok(&mut self.client)
    }

    /// One attempt at a flush, in one transaction. See [`Watermark`] for which rows go
    /// straight into the table by COPY; the others are staged and merged.
    fn write_once(&mut self, flush: &FlushWrite<'_>) -> std::result::Result<Applied, Attempt> {
        let claim = flush.claim;
        let mut marks: Vec<Option<i64>> = Vec::with_capacity(flush.tables.len());
        let watermarks = std::mem::take(&mut self.watermarks);
        let can_merge = self.key_style == KeyStyle::NullsNotDistinct;
        let small = flush.rows() <= SMALL_FLUSH_ROWS;
        let medium = !small && flush.rows() <= MEDIUM_FLUSH_ROWS;
        let mut prepared: Vec<((String, bool), postgres::Statement)> = Vec::new();
        let known = std::mem::take(&mut self.array_merges);
        let result = (|| -> std::result::Result<Applied, Attempt> {
            let record = self.record_flush_statement()?;
            let mut tx = self.client()?.transaction().map_err(|e| error("cannot start the flush transaction", e))?;
            // The flush's number first (it also locks this node's registry row until commit):
            // a number applied before means a retry of a committed flush, and another
            // instance's registration means this process was fenced off.
            let recorded = tx
                .execute(&record, &[&claim.node_id, &claim.instance, &flush.flush_seq, &now_ms()])
                .map_err(|e| error("cannot record the flush in the shard registry", e))?;
            if recorded == 0 {
                return Ok(registry::not_recorded(claim, holder(&mut tx, claim)?.as_deref())?);
            }
            if small {
                // Every table in one round trip; the watermarks are not needed (an upsert
                // takes new and existing rows alike) and are kept up by advance_watermarks.
                let text: Vec<String> = flush.tables.iter().map(|tw| sql::upsert_literal(tw.table, tw.rows)).collect();
                tx.batch_execute(&text.join(";\n")).map_err(|e| error("cannot write a small flush", e))?;
                marks.extend(flush.tables.iter().map(|_| None));
            } else if medium {
                for tw in &flush.tables {
                    let t = tw.table;
                    // MERGE where it is safe (see write_table), else ON CONFLICT.
                    let merge = can_merge
                        && claim.shard_id.is_some()
                        && t.partitioned
                        && !tw.rows.iter().any(|r| r[..t.key_len].iter().any(Value::is_null));
                    let stmt = match known.get(&(t.name.clone(), merge)) {
                        Some(s) => s.clone(),
                        None => {
                            let s = tx
                                .prepare(&array_merge(t, merge))
                                .map_err(|e| error(&format!("cannot prepare the merge into {}", t.name), e))?;
                            prepared.push(((t.name.clone(), merge), s.clone()));
                            s
                        }
                    };
                    let columns: Vec<Vec<Param<'_>>> = t
                        .columns
                        .iter()
                        .enumerate()
                        .map(|(i, c)| tw.rows.iter().map(|r| Param::new(&r[i], c.ty)).collect())
                        .collect();
                    let params: Vec<&(dyn ToSql + Sync)> = columns.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
                    tx.execute(&stmt, &params).map_err(|e| error(&format!("cannot write to {}", t.name), e))?;
                }
                marks.extend(flush.tables.iter().map(|_| None));
            } else {
                for tw in &flush.tables {
                    let mark = watermark(&mut tx, claim, tw.table, watermarks.get(&tw.table.name))?;
                    marks.push(mark);
                    write_table(&mut tx, tw, mark, can_merge)?;
                }
            }
            write_marks(&mut tx, flush.marks)?;
            tx.commit().map_err(|e| error("cannot commit the flush", e))?;
            Ok(Applied::Written)
        })();
        self.watermarks = watermarks;
        // Statements prepared on this connection stay valid after a rolled-back flush
        // (unless the connection itself was lost: then client() starts afresh).
        if !self.client.is_closed() {
            self.array_merges = known;
            self.array_merges.extend(prepared);
        }
        match result {
            Ok(applied) => {
                // Remember what was read, so the next flush need not ask again.
                for (tw, mark) in flush.tables.iter().zip(marks) {
                    if let Some(m) = mark
                        && self.watermarks.get(&tw.table.name) != Some(&Watermark::Off)
                    {
                        self.watermarks.insert(tw.table.name.clone(), Watermark::At(m));
                    }
                }
                Ok(applied)
            }
            Err(e) => Err(e),
        }
    }

    /// The prepared registry update of a flush, for this connection.
    fn record_flush_statement(&mut self) -> Result<postgres::Statement> {
        if let Some(s) = &self.record_flush
            && !self.client.is_closed()
        {
            return Ok(s.clone());
        }
        let stmt = self
            .client()?
            .prepare(&for_dialect(Dialect::Postgres, reg::RECORD_FLUSH))
            .map_err(|e| error("cannot prepare the flush's registry update", e))?;
        self.record_flush = Some(stmt.clone());
        Ok(stmt)
    }

    /// After a flush is known applied: each table's watermark moves up to its newest row.
    fn advance_watermarks(&mut self, flush: &FlushWrite<'_>) {
        for tw in &flush.tables {
            if let Some(Watermark::At(m)) = self.watermarks.get_mut(&tw.table.name) {
                for r in tw.rows {
                    *m = (*m).max(bucket_of(r));
                }
            }
        }
    }

    /// Whether table `name` exists in the current schema.
    fn table_exists(&mut self, name: &str, ctx: &str) -> Result<bool> {
        let row = self
            .client()?
            .query_opt(
                "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1",
                &[&name],
            )
            .map_err(|e| error(ctx, e))?;
        Ok(row.is_some())
    }

    /// The tables of `tables` that exist, each with its columns.
    fn existing_columns<'a>(tx: &mut postgres::Transaction<'_>, tables: &'a [TableSchema]) -> Result<Existing<'a>> {
        let mut existing = Vec::new();
        let mut missing = Vec::new();
        for t in tables {
            let rows = tx
                .query(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1",
                    &[&t.name],
                )
                .map_err(|e| error(&format!("cannot read the columns of {}", t.name), e))?;
            let cols: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            if cols.is_empty() {
                missing.push(t);
            } else {
                existing.push((t, cols));
            }
        }
        Ok((existing, missing))
    }
}

/// The tables that exist (each with its columns), and those that do not.
type Existing<'a> = (Vec<(&'a TableSchema, Vec<String>)>, Vec<&'a TableSchema>);

/// The newest bucket of this shard in a partitioned table: the one remembered, or read
/// (again). `None` where every row must be merged (not partitioned, or no shard id).
fn watermark(
    tx: &mut postgres::Transaction<'_>,
    claim: &Claim,
    t: &TableSchema,
    known: Option<&Watermark>,
) -> Result<Option<i64>> {
    Ok(match (&claim.shard_id, known) {
        (Some(_), Some(Watermark::At(m))) if t.partitioned => Some(*m),
        (Some(shard), None | Some(Watermark::Reread)) if t.partitioned => Some(
            tx.query_one(&sql::newest_bucket(Dialect::Postgres, t), &[shard])
                .map_err(|e| error(&format!("cannot write to {}", t.name), e))?
                .get::<_, Option<i64>>(0)
                .unwrap_or(i64::MIN),
        ),
        _ => None,
    })
}

/// The statement that merges rows sent as one array per column (`$1` … `$n`, in the
/// table's column order) into table `t`: `MERGE` when `merge` (see [`sql::merge_using`]
/// for when that is safe), else `INSERT … ON CONFLICT`.
fn array_merge(t: &TableSchema, merge: bool) -> String {
    let cols: Vec<String> = t.columns.iter().map(|c| quote(&c.name)).collect();
    let arrays: Vec<String> =
        t.columns.iter().enumerate().map(|(i, c)| format!("${}::{}[]", i + 1, array_type(c.ty))).collect();
    let source = format!("unnest({}) AS u({})", arrays.join(", "), cols.join(", "));
    if merge {
        sql::merge_using(t, &format!("(SELECT * FROM {source})"))
    } else {
        sql::merge_from(Dialect::Postgres, t, &source)
    }
}

/// The PostgreSQL element type of an array of column type `t`.
fn array_type(t: AttrType) -> &'static str {
    match t {
        AttrType::Int => "int4",
        AttrType::Long => "int8",
        AttrType::Float => "float4",
        AttrType::Double => "float8",
        AttrType::String => "text",
        AttrType::Bool => "bool",
    }
}

/// Writes one table's rows of a flush: those newer than `mark` by a plain COPY, the rest
/// staged and merged (`MERGE` where [`sql::merge_using`] is safe, else `ON CONFLICT`).
fn write_table(
    tx: &mut postgres::Transaction<'_>,
    tw: &TableWrite<'_>,
    mark: Option<i64>,
    can_merge: bool,
) -> std::result::Result<(), Attempt> {
    let t = tw.table;
    let ctx = format!("cannot write to {}", t.name);
    let (fresh, seen): (Vec<&Vec<Value>>, Vec<&Vec<Value>>) = match mark {
        Some(m) => tw.rows.iter().partition(|r| bucket_of(r) > m),
        None => (Vec::new(), tw.rows.iter().collect()),
    };
    if !fresh.is_empty() {
        copy_rows(tx, &quote(&t.name), t, &fresh).map_err(|e| {
            if e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) {
                Attempt::Unexpected(t.name.clone())
            } else {
                Attempt::Failed(error(&ctx, e))
            }
        })?;
    }
    if seen.is_empty() {
        return Ok(());
    }
    let stage = quote(&format!("tally_stage_{}", t.name));
    tx.batch_execute(&format!(
        "CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
        quote(&t.name)
    ))
    .map_err(|e| error(&ctx, e))?;
    copy_rows(tx, &stage, t, &seen).map_err(|e| error(&ctx, e))?;
    // MERGE (about twice as fast) where it is safe: PostgreSQL 15+, rows of this shard only
    // (one writer, so no concurrent insert of a key), no null key.
    let merge = if mark.is_some() && can_merge && !seen.iter().any(|r| r[..t.key_len].iter().any(Value::is_null)) {
        sql::merge_using(t, &stage)
    } else {
        sql::merge_from(Dialect::Postgres, t, &stage)
    };
    tx.batch_execute(&merge).map_err(|e| error(&ctx, e))?;
    Ok(())
}

/// Moves the roll-up marks of a flush (rare: a coarse bucket closed), in its transaction.
fn write_marks(tx: &mut postgres::Transaction<'_>, moved: &[Mark]) -> Result<()> {
    for m in moved {
        tx.execute(
            &*mark::sql(Dialect::Postgres, marks::UPSERT),
            &[&m.aggregation, &m.shard, &m.duration.table_suffix(), &m.at],
        )
        .map_err(|e| error("cannot move a roll-up mark", e))?;
    }
    Ok(())
}

/// The instance that holds `claim`'s node id in the registry, if any.
fn holder(tx: &mut impl postgres::GenericClient, claim: &Claim) -> Result<Option<String>> {
    Ok(tx
        .query_opt(&*for_dialect(Dialect::Postgres, reg::HOLDER), &[&claim.node_id])
        .map_err(|e| error("cannot read the shard registry", e))?
        .map(|r| r.get(0)))
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

impl Schema for PostgresStore {
    fn prepare(&mut self, tables: &[TableSchema]) -> Result<()> {
        let key_style = self.key_style;
        let mut tx = self.client()?.transaction().map_err(|e| error("cannot start the schema transaction", e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .map_err(|e| error("cannot lock the schema", e))?;
        tx.batch_execute(SET_UNION).map_err(|e| error("cannot create the function tally_set_union", e))?;
        tx.batch_execute(marks::CREATE).map_err(|e| error("cannot create the roll-up marks table", e))?;
        let (existing, missing) = Self::existing_columns(&mut tx, tables)?;
        super::check_columns(&existing)?;
        for t in missing {
            tx.batch_execute(&sql::create_table(Dialect::Postgres, t, key_style))
                .map_err(|e| error(&format!("cannot create {}", t.name), e))?;
        }
        tx.commit().map_err(|e| error("cannot commit the schema transaction", e))
    }

    fn migrate(&mut self, tables: &[TableSchema], shard_id: &str) -> Result<Vec<String>> {
        let key_style = self.key_style;
        let mut tx = self.client()?.transaction().map_err(|e| error("cannot start the migration transaction", e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .map_err(|e| error("cannot lock the schema", e))?;
        let (existing, _) = Self::existing_columns(&mut tx, tables)?;
        let targets = super::migration_targets(&existing)?;
        for t in &targets {
            let ctx = format!("cannot migrate {}", t.name);
            for stmt in sql::migrate(Dialect::Postgres, t, key_style) {
                if stmt.contains("$1") {
                    tx.execute(&stmt, &[&shard_id]).map_err(|e| error(&ctx, e))?;
                } else {
                    tx.batch_execute(&stmt).map_err(|e| error(&ctx, e))?;
                }
            }
        }
        tx.commit().map_err(|e| error("cannot commit the migration", e))?;
        Ok(targets.iter().map(|t| t.name.clone()).collect())
    }
}

impl Registry for PostgresStore {
    fn register(&mut self, claim: &Claim) -> Result<i64> {
        let mut tx = self.client()?.transaction().map_err(|e| error("cannot start the registration transaction", e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .map_err(|e| error("cannot lock the schema", e))?;
        tx.batch_execute(reg::CREATE).map_err(|e| error("cannot create the shard registry", e))?;
        let rows: Vec<Entry> = tx
            .query(reg::SELECT_ALL, &[])
            .map_err(|e| error("cannot read the shard registry", e))?
            .iter()
            .map(|r| Entry::read(|i| r.try_get(i), |i| r.try_get(i)))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| error("cannot read the shard registry", e))?;
        let now = now_ms();
        let last = registry::decide(claim, &rows, now)?;
        tx.execute(
            &*for_dialect(Dialect::Postgres, reg::CLAIM),
            &[&claim.node_id, &claim.shard_id, &claim.instance, &claim.host, &i64::from(claim.pid), &now],
        )
        .map_err(|e| error("cannot register in the shard registry", e))?;
        tx.commit().map_err(|e| error("cannot commit the registration", e))?;
        Ok(last)
    }

    fn heartbeat(&mut self, claim: &Claim) -> Result<()> {
        let n = self
            .client()?
            .execute(&*for_dialect(Dialect::Postgres, reg::HEARTBEAT), &[&claim.node_id, &claim.instance, &now_ms()])
            .map_err(|e| error("cannot refresh the heartbeat", e))?;
        if n == 0 { Err(registry::fenced(claim, holder(self.client()?, claim)?.as_deref())) } else { Ok(()) }
    }

    fn release(&mut self, claim: &Claim) -> Result<()> {
        let r = if claim.named {
            self.client()?
                .execute(&*for_dialect(Dialect::Postgres, reg::RELEASE), &[&claim.node_id, &claim.instance, &now_ms()])
        } else {
            self.client()?.execute(&*for_dialect(Dialect::Postgres, reg::FORGET), &[&claim.node_id, &claim.instance])
        };
        r.map_err(|e| error("cannot release the registration", e))?;
        Ok(())
    }
}

impl Writer for PostgresStore {
    fn write(&mut self, flush: &FlushWrite<'_>) -> Result<Applied> {
        // A row the watermark said was new but existed (a case the registry should rule
        // out) aborts the transaction before anything is applied: read the watermark again
        // and retry; after a second surprise the table goes through the merge only.
        for _ in 0..3 {
            match self.write_once(flush) {
                Ok(applied) => {
                    self.advance_watermarks(flush);
                    return Ok(applied);
                }
                Err(Attempt::Unexpected(table)) => {
                    if self.watermarks.remove(&table) == Some(Watermark::Reread) {
                        self.watermarks.insert(table, Watermark::Off);
                    } else {
                        self.watermarks.insert(table, Watermark::Reread);
                    }
                }
                Err(Attempt::Failed(e)) => return Err(e),
            }
        }
        Err(Error::Store {
            backend: "postgres",
            code: Some("23505".into()),
            message: "a flush kept meeting rows that should not exist; stopping to avoid a wrong merge".into(),
            retryable: false,
        })
    }

    fn purge(&mut self, table: &TableSchema, before_ms: i64, shard: Option<&str>) -> Result<u64> {
        let ctx = format!("cannot purge {}", table.name);
        if !self.table_exists(&table.name, &ctx)? {
            return Ok(0);
        }
        match shard {
            Some(s) => self.client()?.execute(&sql::purge(Dialect::Postgres, table, true), &[&before_ms, &s]),
            None => self.client()?.execute(&sql::purge(Dialect::Postgres, table, false), &[&before_ms]),
        }
        .map_err(|e| error(&ctx, e))
    }
}

impl Reader for PostgresStore {
    fn scan(&mut self, table: &TableSchema, start: i64, end: i64, equal: &[(usize, Value)]) -> Result<Vec<Vec<Value>>> {
        let ctx = format!("cannot read {}", table.name);
        if !self.table_exists(&table.name, &ctx)? {
            return Ok(Vec::new());
        }
        let cols: Vec<usize> = equal.iter().map(|(c, _)| *c).collect();
        let mut params: Vec<Param<'_>> = vec![Param::I64(Some(start)), Param::I64(Some(end))];
        params.extend(equal.iter().map(|(c, v)| Param::new(v, table.columns[*c].ty)));
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let rows =
            self.client()?.query(&sql::scan(Dialect::Postgres, table, &cols), &refs).map_err(|e| error(&ctx, e))?;
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

    fn marks(&mut self, aggregation: &str) -> Result<Vec<Mark>> {
        self.read_marks(aggregation)
    }

    fn newest_bucket(&mut self, table: &TableSchema, shard: &str) -> Result<Option<i64>> {
        let ctx = format!("cannot read the newest bucket of {}", table.name);
        if !self.table_exists(&table.name, &ctx)? {
            return Ok(None);
        }
        self.client()?
            .query_one(&sql::newest_bucket(Dialect::Postgres, table), &[&shard])
            .and_then(|r| r.try_get::<_, Option<i64>>(0))
            .map_err(|e| error(&ctx, e))
    }
}

impl PostgresStore {
    fn read_marks(&mut self, aggregation: &str) -> Result<Vec<Mark>> {
        let ctx = "cannot read the roll-up marks";
        if !self.table_exists(mark::TABLE, ctx)? {
            return Ok(Vec::new());
        }
        let rows = self
            .client()?
            .query(&*mark::sql(Dialect::Postgres, marks::SELECT), &[&aggregation])
            .map_err(|e| error(ctx, e))?;
        rows.iter()
            .map(|r| -> std::result::Result<Option<Mark>, postgres::Error> {
                Ok(mark::read(aggregation, r.try_get(0)?, r.try_get::<_, String>(1)?.as_str(), r.try_get(2)?))
            })
            .filter_map(|m| m.transpose())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| error(ctx, e))
    }
}

impl Store for PostgresStore {
    fn address(&self) -> &StoreAddress {
        &self.address
    }
}
