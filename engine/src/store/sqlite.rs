//! The embedded default store: one SQLite file, shared by several node processes.
//!
//! WAL journal (readers never block the writer), `synchronous=FULL` (a committed flush
//! survives a power cut, since it has been acknowledged), a busy timeout so that concurrent
//! nodes queue for the write lock instead of failing, and `BEGIN IMMEDIATE` so a flush
//! takes the write lock up front and cannot deadlock on a lock upgrade.

use super::journal::{self, statements as journal_sql};
use super::mark::{self, Mark, statements as marks};
use super::producer::{self, Taken, statements as prod};
use super::registry::{self, Applied, Claim, Entry, statements as reg};
use super::sql::{self, Dialect, KeyStyle};
use super::{Field, FlushWrite, Producers, Reader, Registry, Schema, Store, StoreAddress, Writer};
use crate::error::{Error, Result};
use crate::lang::types::Value;
use crate::store::schema::TableSchema;
use crate::time::clock::now_ms;
use rusqlite::functions::FunctionFlags;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags, ToSql, TransactionBehavior};
use std::time::Duration;

/// How long a writer waits for another node's transaction before giving up (retryable).
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

pub struct SqliteStore {
    address: StoreAddress,
    conn: Connection,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("address", &self.address).finish()
    }
}

/// Maps a SQLite error to the engine's, keeping SQLite's result code and saying whether a
/// retry can help (the file was busy or locked by another node, or the disk was full).
pub fn error(context: &str, e: rusqlite::Error) -> Error {
    let (code, retryable) = match &e {
        rusqlite::Error::SqliteFailure(f, _) => (
            Some(format!("{:?}", f.code)),
            matches!(
                f.code,
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::DiskFull | ErrorCode::SystemIoFailure
            ),
        ),
        _ => (None, false),
    };
    Error::Store { backend: "sqlite", code, message: format!("{context}: {e}"), retryable }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if matches!(f.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
}

impl SqliteStore {
    pub fn open(address: StoreAddress) -> Result<SqliteStore> {
        let StoreAddress::Sqlite { path } = &address else { unreachable!("SqliteStore::open takes sqlite addresses") };
        let ctx = format!("cannot open {}", path.display());
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| error(&ctx, e))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| error(&ctx, e))?;
        // Switching to WAL needs an exclusive lock, and SQLite does not always call the busy
        // handler for it: when another node opens the same new file at that moment, wait
        // and retry.
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        loop {
            match conn.pragma_update(None, "journal_mode", "WAL") {
                Ok(()) => break,
                Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(error(&format!("{ctx} (setting WAL mode)"), e)),
            }
        }
        conn.pragma_update(None, "synchronous", "FULL").map_err(|e| error(&ctx, e))?;
        conn.create_scalar_function(
            "tally_set_union",
            2,
            FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
            |f| {
                let a: Option<String> = f.get(0)?;
                let b: Option<String> = f.get(1)?;
                Ok(crate::store::schema::set_union_json(a.as_deref(), b.as_deref()))
            },
        )
        .map_err(|e| error(&ctx, e))?;
        Ok(SqliteStore { address, conn })
    }
}

/// The column names of `table`, or `None` when it does not exist.
fn existing_columns(conn: &Connection, table: &str) -> Result<Option<Vec<String>>> {
    let mut stmt = conn
        .prepare_cached("SELECT name FROM pragma_table_info(?1)")
        .map_err(|e| error("cannot read the table columns", e))?;
    let cols: Vec<String> = stmt
        .query_map([table], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| error(&format!("cannot read the columns of {table}"), e))?;
    Ok(if cols.is_empty() { None } else { Some(cols) })
}

/// The instance that holds `claim`'s node id in the registry, if any.
fn holder(conn: &Connection, claim: &Claim) -> Result<Option<String>> {
    use rusqlite::OptionalExtension;
    conn.query_row(reg::HOLDER, [&claim.node_id], |r| r.get(0))
        .optional()
        .map_err(|e| error("cannot read the shard registry", e))
}

struct Param<'a>(&'a Value);

impl ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self.0 {
            Value::Null => ToSqlOutput::from(rusqlite::types::Null),
            Value::Int(i) => ToSqlOutput::from(*i as i64),
            Value::Long(i) => ToSqlOutput::from(*i),
            Value::Float(f) => ToSqlOutput::from(*f as f64),
            Value::Double(f) => ToSqlOutput::from(*f),
            Value::Bool(b) => ToSqlOutput::from(*b as i64),
            Value::Str(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

/// A borrowed field bound as SQLite binds the [`Value`] it stands for.
struct FieldParam<'a>(Field<'a>);

impl ToSql for FieldParam<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self.0 {
            Field::Null => ToSqlOutput::from(rusqlite::types::Null),
            Field::Int(i) => ToSqlOutput::from(i as i64),
            Field::Long(i) => ToSqlOutput::from(i),
            Field::Float(f) => ToSqlOutput::from(f as f64),
            Field::Double(f) => ToSqlOutput::from(f),
            Field::Bool(b) => ToSqlOutput::from(b as i64),
            Field::Str(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

fn read_value(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Long(i),
        ValueRef::Real(f) => Value::Double(f),
        ValueRef::Text(t) | ValueRef::Blob(t) => Value::Str(String::from_utf8_lossy(t).into_owned()),
    }
}

impl Schema for SqliteStore {
    fn prepare(&mut self, tables: &[TableSchema]) -> Result<()> {
        // One immediate transaction, so that nodes starting together create each table once.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| error("cannot start the schema transaction", e))?;
        let mut existing = Vec::new();
        let mut missing = Vec::new();
        for t in tables {
            match existing_columns(&tx, &t.name)? {
                None => missing.push(t),
                Some(cols) => existing.push((t, cols)),
            }
        }
        super::check_columns(&existing)?;
        tx.execute(marks::CREATE, []).map_err(|e| error("cannot create the roll-up marks table", e))?;
        tx.execute_batch(&format!("{};\n{}", journal_sql::create(Dialect::Sqlite), journal_sql::INDEX))
            .map_err(|e| error("cannot create the journal table", e))?;
        for t in missing {
            tx.execute(&sql::create_table(Dialect::Sqlite, t, KeyStyle::PrimaryKey), [])
                .map_err(|e| error(&format!("cannot create {}", t.name), e))?;
        }
        tx.commit().map_err(|e| error("cannot commit the schema transaction", e))
    }

    fn migrate(&mut self, tables: &[TableSchema], shard_id: &str) -> Result<Vec<String>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| error("cannot start the migration transaction", e))?;
        let mut existing = Vec::new();
        for t in tables {
            if let Some(cols) = existing_columns(&tx, &t.name)? {
                existing.push((t, cols));
            }
        }
        let targets = super::migration_targets(&existing)?;
        for t in &targets {
            let ctx = format!("cannot migrate {}", t.name);
            for stmt in sql::migrate(Dialect::Sqlite, t, KeyStyle::PrimaryKey) {
                let params: &[&dyn ToSql] = if stmt.contains("?1") { &[&shard_id] } else { &[] };
                tx.execute(&stmt, params).map_err(|e| error(&ctx, e))?;
            }
        }
        tx.commit().map_err(|e| error("cannot commit the migration", e))?;
        Ok(targets.iter().map(|t| t.name.clone()).collect())
    }
}

impl Registry for SqliteStore {
    fn register(&mut self, claim: &Claim) -> Result<i64> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| error("cannot start the registration transaction", e))?;
        let ctx = "cannot read the shard registry";
        tx.execute(reg::CREATE, []).map_err(|e| error("cannot create the shard registry", e))?;
        tx.execute(prod::CREATE, []).map_err(|e| error("cannot create the producers table", e))?;
        let rows: Vec<Entry> = {
            let mut stmt = tx.prepare(reg::SELECT_ALL).map_err(|e| error(ctx, e))?;
            stmt.query_map([], |r| Entry::read(|i| r.get(i), |i| r.get(i)))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|e| error(ctx, e))?
        };
        let now = now_ms();
        let last = registry::decide(claim, &rows, now)?;
        tx.execute(
            reg::CLAIM,
            rusqlite::params![claim.node_id, claim.shard_id, claim.instance, claim.host, claim.pid, now],
        )
        .map_err(|e| error("cannot register in the shard registry", e))?;
        tx.commit().map_err(|e| error("cannot commit the registration", e))?;
        Ok(last)
    }

    fn heartbeat(&mut self, claim: &Claim) -> Result<()> {
        let n = self
            .conn
            .execute(reg::HEARTBEAT, rusqlite::params![claim.node_id, claim.instance, now_ms()])
            .map_err(|e| error("cannot refresh the heartbeat", e))?;
        if n == 0 { Err(registry::fenced(claim, holder(&self.conn, claim)?.as_deref())) } else { Ok(()) }
    }

    fn release(&mut self, claim: &Claim) -> Result<()> {
        let text = if claim.named { reg::RELEASE } else { reg::FORGET };
        let params: &[&dyn ToSql] = &[&claim.node_id, &claim.instance, &now_ms()];
        self.conn
            .execute(text, &params[..if claim.named { 3 } else { 2 }])
            .map_err(|e| error("cannot release the registration", e))?;
        Ok(())
    }
}

impl Producers for SqliteStore {
    fn take_producer(&mut self, p: &str, claim: &Claim) -> Result<Taken> {
        use rusqlite::OptionalExtension;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| error("cannot start taking a producer", e))?;
        let ctx = "cannot take a producer";
        let now = now_ms();
        tx.execute(prod::FORGET, [now - producer::FORGET_AFTER_MS]).map_err(|e| error(ctx, e))?;
        let row: Option<(Option<String>, i64)> =
            tx.query_row(prod::SELECT, [p], |r| Ok((r.get(0)?, r.get(1)?))).optional().map_err(|e| error(ctx, e))?;
        let (holder, max_seq) = row.unwrap_or((None, 0));
        let entry = match &holder {
            Some(h) => tx
                .query_row(prod::HOLDER_ENTRY, [h], |r| Entry::read(|i| r.get(i), |i| r.get(i)))
                .optional()
                .map_err(|e| error(ctx, e))?,
            None => None,
        };
        producer::decide(p, claim, holder.as_deref().map(|h| (h, entry.as_ref())), now)?;
        tx.execute(prod::TAKE, rusqlite::params![p, claim.instance, claim.node_id, now]).map_err(|e| error(ctx, e))?;
        tx.commit().map_err(|e| error("cannot commit taking a producer", e))?;
        Ok(Taken { max_seq })
    }

    fn release_producer(&mut self, p: &str, claim: &Claim) -> Result<()> {
        self.conn
            .execute(prod::RELEASE, rusqlite::params![p, claim.instance, now_ms()])
            .map_err(|e| error("cannot release a producer", e))?;
        Ok(())
    }
}

impl Writer for SqliteStore {
    fn write(&mut self, flush: &FlushWrite<'_>) -> Result<Applied> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| error("cannot start the flush transaction", e))?;
        // The flush's number first: a number applied before means a retry of a committed
        // flush, and another instance's registration means this process was fenced off.
        let claim = flush.claim;
        let recorded = tx
            .execute(reg::RECORD_FLUSH, rusqlite::params![claim.node_id, claim.instance, flush.flush_seq, now_ms()])
            .map_err(|e| error("cannot record the flush in the shard registry", e))?;
        if recorded == 0 {
            return registry::not_recorded(claim, holder(&tx, claim)?.as_deref());
        }
        // The batches' producers next: one taken by another node means its copy of a batch
        // may be counted there, so nothing of this flush may be (dropping `tx` rolls back).
        for (p, seq) in flush.producers {
            let held = tx
                .prepare_cached(prod::RECORD)
                .and_then(|mut s| s.execute(rusqlite::params![p, claim.instance, seq, now_ms()]))
                .map_err(|e| error("cannot record the batches' producers", e))?;
            if held == 0 {
                return Err(producer::lost(p, claim));
            }
        }
        for tw in &flush.tables {
            let t = tw.table;
            let ctx = format!("cannot write to {}", t.name);
            let mut upsert = tx.prepare_cached(&sql::upsert(Dialect::Sqlite, t)).map_err(|e| error(&ctx, e))?;
            for r in 0..tw.rows.len() {
                // A null in the key never conflicts in a primary key, so those rows merge by
                // an explicit `IS` match instead.
                if tw.rows.key_has_null(t, r) {
                    let row = tw.rows.row(t, r);
                    let params: Vec<Param<'_>> = row.iter().map(Param).collect();
                    let mut update =
                        tx.prepare_cached(&sql::update_null_safe(Dialect::Sqlite, t)).map_err(|e| error(&ctx, e))?;
                    let changed =
                        update.execute(rusqlite::params_from_iter(params.iter())).map_err(|e| error(&ctx, e))?;
                    if changed == 0 {
                        let mut insert =
                            tx.prepare_cached(&sql::insert(Dialect::Sqlite, t)).map_err(|e| error(&ctx, e))?;
                        insert.execute(rusqlite::params_from_iter(params.iter())).map_err(|e| error(&ctx, e))?;
                    }
                    continue;
                }
                // Bound field by field from the rows in place: no row is built.
                let mut bound = Ok(());
                let mut at = 0;
                tw.rows.visit(t, r, &mut |v| {
                    at += 1;
                    if bound.is_ok() {
                        bound = upsert.raw_bind_parameter(at, FieldParam(v));
                    }
                });
                bound.and_then(|_| upsert.raw_execute()).map_err(|e| error(&ctx, e))?;
            }
        }
        for m in flush.marks {
            tx.execute(marks::UPSERT, rusqlite::params![m.aggregation, m.shard, m.duration.table_suffix(), m.at])
                .map_err(|e| error("cannot move a roll-up mark", e))?;
        }
        for j in flush.journal {
            if let Some(before) = j.trim_before {
                tx.prepare_cached(journal_sql::TRIM)
                    .and_then(|mut s| s.execute(rusqlite::params![j.aggregation, j.shard, before]))
                    .map_err(|e| error("cannot trim the journal", e))?;
            }
            if let Some((last, rows)) = &j.append {
                tx.prepare_cached(journal_sql::APPEND)
                    .and_then(|mut s| s.execute(rusqlite::params![j.aggregation, j.shard, last, rows]))
                    .map_err(|e| error("cannot append to the journal", e))?;
            }
        }
        tx.commit().map_err(|e| error("cannot commit the flush", e))?;
        Ok(Applied::Written)
    }

    fn purge(&mut self, table: &TableSchema, before_ms: i64, shard: Option<&str>) -> Result<u64> {
        if existing_columns(&self.conn, &table.name)?.is_none() {
            return Ok(0);
        }
        let ctx = format!("cannot purge {}", table.name);
        let n = match shard {
            Some(s) => self.conn.execute(&sql::purge(Dialect::Sqlite, table, true), rusqlite::params![before_ms, s]),
            None => self.conn.execute(&sql::purge(Dialect::Sqlite, table, false), rusqlite::params![before_ms]),
        }
        .map_err(|e| error(&ctx, e))?;
        Ok(n as u64)
    }
}

impl Reader for SqliteStore {
    fn scan(&mut self, table: &TableSchema, start: i64, end: i64, equal: &[(usize, Value)]) -> Result<Vec<Vec<Value>>> {
        if existing_columns(&self.conn, &table.name)?.is_none() {
            return Ok(Vec::new());
        }
        let cols: Vec<usize> = equal.iter().map(|(c, _)| *c).collect();
        let text = sql::scan(Dialect::Sqlite, table, &cols);
        let ctx = format!("cannot read {}", table.name);
        let mut stmt = self.conn.prepare_cached(&text).map_err(|e| error(&ctx, e))?;
        let mut params: Vec<Value> = vec![Value::Long(start), Value::Long(end)];
        params.extend(equal.iter().map(|(_, v)| v.clone()));
        let n = table.columns.len();
        let rows = stmt
            .query_map(rusqlite::params_from_iter(params.iter().map(Param)), |r| {
                (0..n).map(|i| r.get_ref(i).map(read_value)).collect()
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<Vec<Value>>>>())
            .map_err(|e| error(&ctx, e))?;
        Ok(rows)
    }

    fn marks(&mut self, aggregation: &str) -> Result<Vec<Mark>> {
        if existing_columns(&self.conn, mark::TABLE)?.is_none() {
            return Ok(Vec::new());
        }
        let ctx = "cannot read the roll-up marks";
        let mut stmt = self.conn.prepare_cached(marks::SELECT).map_err(|e| error(ctx, e))?;
        let rows = stmt
            .query_map([aggregation], |r| Ok(mark::read(aggregation, r.get(0)?, &r.get::<_, String>(1)?, r.get(2)?)))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<Option<Mark>>>>())
            .map_err(|e| error(ctx, e))?;
        Ok(rows.into_iter().flatten().collect())
    }

    fn newest_bucket(&mut self, table: &TableSchema, shard: &str) -> Result<Option<i64>> {
        if existing_columns(&self.conn, &table.name)?.is_none() {
            return Ok(None);
        }
        let ctx = format!("cannot read the newest bucket of {}", table.name);
        self.conn
            .query_row(&sql::newest_bucket(Dialect::Sqlite, table), [shard], |r| r.get::<_, Option<i64>>(0))
            .map_err(|e| error(&ctx, e))
    }

    fn journal(&mut self, aggregation: &str, since: i64) -> Result<Vec<(String, Vec<u8>)>> {
        if existing_columns(&self.conn, journal::TABLE)?.is_none() {
            return Ok(Vec::new());
        }
        let ctx = "cannot read the journal";
        let mut stmt = self.conn.prepare_cached(journal_sql::SELECT).map_err(|e| error(ctx, e))?;
        stmt.query_map(rusqlite::params![aggregation, since], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<(String, Vec<u8>)>>>())
            .map_err(|e| error(ctx, e))
    }
}

impl Store for SqliteStore {
    fn address(&self) -> &StoreAddress {
        &self.address
    }
}
