//! The MySQL and MariaDB store: the database an SI cluster already has (issue 14).
//!
//! The tables are the ones siddhi-store-rdbms makes on MySQL (`VARCHAR(254)`, `BIGINT`,
//! `TINYINT(1)`, …), so an SI database is read and written in place. A flush is one
//! transaction on one connection ([`flush`]): the flush number first, then per table the
//! rows of buckets newer than the shard's newest by `LOAD DATA LOCAL INFILE` straight into
//! the table, the others loaded the same way into a temporary staging table and merged with
//! one `INSERT … SELECT … ON DUPLICATE KEY UPDATE`. No per-row INSERT anywhere.
//!
//! The session is set up by [`session::SESSION`]: `ANSI_QUOTES` (the shared SQL quotes identifiers
//! with `"`), strict mode (a value that does not fit is an error, never truncated), READ
//! COMMITTED (as on PostgreSQL: fewer gap locks between nodes), UTC.
//!
//! Null group-by values: SI's tables key on the group-by columns, and a MySQL key column is
//! NOT NULL (a unique key would treat nulls as distinct and never merge them). So a node on
//! a MySQL store refuses an event whose group-by value is null when it arrives, naming the
//! attribute (`ingest::check`), instead of failing the flush later. Strings longer than
//! `VARCHAR(254)` are refused the same way.

mod flush;
pub use flush::MEDIUM_MERGE_ROWS;
pub mod infile;
mod session;
pub(crate) mod statements;
mod value;

use session::{connect, ssl_opts};

use super::journal::{self, statements as journal_sql};
use super::mark::{self, Mark, statements as marks};
use super::producer::{self, Taken, statements as prod};
use super::registry::{self, Applied, Claim, Entry, statements as reg};
use super::sql::{self, Dialect, KeyStyle};
use super::watermark::Watermark;
use super::{FlushWrite, Producers, Reader, Registry, Schema, Store, StoreAddress, Writer};
use crate::error::{Error, Result};
use crate::lang::plan::CellKind;
use crate::lang::types::Value;
use crate::store::schema::{Role, TableSchema};
use crate::time::clock::now_ms;
use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder, TxOpts};
use statements::mysql as stmt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use value::{bind, int, named, read_int, read_text, read_value, text};

/// The named lock that serializes schema changes and registrations of nodes starting
/// together (MySQL's DDL commits at once, so a transaction cannot do it).
const SCHEMA_LOCK: &str = "tally_schema";

pub struct MysqlStore {
    address: StoreAddress,
    opts: Opts,
    /// `None` after an error that may have broken it; the next operation reconnects.
    conn: Option<Conn>,
    /// The rows of the `LOAD DATA LOCAL INFILE` in flight: the connection's local-infile
    /// handler sends them when the server asks. Filled and sent on the flush thread, so
    /// the lock is never contended (one lock a table a flush, not a row).
    infile: Arc<Mutex<Vec<u8>>>,
    /// The binary collation new tables get: case- and accent-sensitive and without
    /// padding, so that `IBM`, `ibm` and `IBM ` are three groups as on the other stores.
    collation: String,
    /// Per table name: the newest bucket of this node's shard.
    watermarks: HashMap<String, Watermark>,
}

impl std::fmt::Debug for MysqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlStore").field("address", &self.address.redacted()).finish()
    }
}

/// Maps a MySQL error to the engine's: the server's error number, SQLSTATE and message,
/// and whether a retry can help (connection lost or refused, server shutting down, too many
/// connections, lock wait timeout, deadlock).
pub fn error(context: &str, e: mysql::Error) -> Error {
    match e {
        mysql::Error::MySqlError(m) => {
            let retryable = matches!(m.code, 1040 | 1053 | 1205 | 1213 | 1927 | 2006 | 2013 | 1317)
                || m.state.starts_with("08")
                || m.state == "40001";
            Error::Store {
                backend: "mysql",
                message: format!("{context}: ERROR {} ({}): {}", m.code, m.state, m.message),
                code: Some(m.state),
                retryable,
            }
        }
        mysql::Error::IoError(io) => {
            Error::Store { backend: "mysql", code: None, message: format!("{context}: {io}"), retryable: true }
        }
        mysql::Error::DriverError(d) => {
            use mysql::DriverError as D;
            let retryable = matches!(
                d,
                D::ConnectTimeout | D::CouldNotConnect(_) | D::PacketOutOfSync | D::UnexpectedPacket | D::Timeout
            );
            Error::Store { backend: "mysql", code: None, message: format!("{context}: {d}"), retryable }
        }
        mysql::Error::CodecError(c) => {
            Error::Store { backend: "mysql", code: None, message: format!("{context}: {c}"), retryable: true }
        }
        other => {
            Error::Store { backend: "mysql", code: None, message: format!("{context}: {other}"), retryable: false }
        }
    }
}

/// The union of two stored distinct sets (JSON arrays) for the merge, as a stored function
/// that runs on MySQL 8 and MariaDB alike: the elements of `b` that `a` lacks are appended
/// to `a`'s text. The order of a set's elements does not matter (it is read as a set).
const SET_UNION: &str = "CREATE FUNCTION tally_set_union(a LONGTEXT, b LONGTEXT) RETURNS LONGTEXT \
CHARSET utf8mb4 DETERMINISTIC NO SQL
BEGIN
  DECLARE i INT DEFAULT 0;
  DECLARE e LONGTEXT;
  IF a IS NULL THEN RETURN b; END IF;
  IF b IS NULL THEN RETURN a; END IF;
  WHILE i < JSON_LENGTH(b) DO
    SET e = JSON_EXTRACT(b, CONCAT('$[', i, ']'));
    IF NOT JSON_CONTAINS(a, e) THEN
      SET a = IF(JSON_LENGTH(a) = 0, CONCAT('[', e, ']'), CONCAT(LEFT(a, CHAR_LENGTH(a) - 1), ',', e, ']'));
    END IF;
    SET i = i + 1;
  END WHILE;
  RETURN a;
END";

impl MysqlStore {
    pub fn open(address: StoreAddress) -> Result<MysqlStore> {
        let StoreAddress::Mysql(a) = &address else { unreachable!("MysqlStore::open takes mysql addresses") };
        let opts = Opts::from_url(&a.url).map_err(|e| {
            Error::Schema(format!("store {}: not a MySQL address the driver reads: {e}", address.redacted()))
        })?;
        let opts = Opts::from(OptsBuilder::from_opts(opts).ssl_opts(ssl_opts(a.tls, a.ca.as_deref())));
        let infile = Arc::new(Mutex::new(Vec::new()));
        let ctx = format!("cannot connect to {}", address.redacted());
        let mut conn = connect(&opts, &infile, &ctx)?;
        // The first binary collation without padding the server has. An error here is the
        // store's (it went away, say), not "no such collation": a store opened during a
        // restart must not fall back to a padded collation for the tables it creates.
        let found: Option<String> = conn
            .exec_first(
                "SELECT COLLATION_NAME FROM information_schema.COLLATIONS WHERE COLLATION_NAME IN \
                 ('utf8mb4_0900_bin', 'utf8mb4_nopad_bin') ORDER BY COLLATION_NAME = 'utf8mb4_0900_bin' DESC LIMIT 1",
                (),
            )
            .map_err(|e| error(&ctx, e))?;
        let collation = found.unwrap_or_else(|| "utf8mb4_bin".to_string());
        Ok(MysqlStore { address, opts, conn: Some(conn), infile, collation, watermarks: HashMap::new() })
    }

    /// Runs `f` on the connection, opened again when the last one was lost. A connection
    /// whose operation failed in a way worth retrying may be broken: it is dropped, and the
    /// retry opens a new one (temporary tables and named locks go with it).
    fn with<T>(&mut self, f: impl FnOnce(&mut Conn) -> Result<T>) -> Result<T> {
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => connect(&self.opts, &self.infile, &format!("cannot reconnect to {}", self.address.redacted()))?,
        };
        let result = f(&mut conn);
        if !matches!(&result, Err(e) if e.is_retryable()) {
            self.conn = Some(conn);
        }
        result
    }

    /// `f` while holding the schema lock.
    fn locked<T>(&mut self, f: impl FnOnce(&mut Conn) -> Result<T>) -> Result<T> {
        self.with(|conn| {
            let got: Option<i64> = conn
                .exec_first("SELECT GET_LOCK(:p1, 60)", named(vec![text(SCHEMA_LOCK)]))
                .map_err(|e| error("cannot lock the schema", e))?
                .flatten();
            if got != Some(1) {
                return Err(Error::Store {
                    backend: "mysql",
                    code: None,
                    message: "another node held the schema lock (tally_schema) for 60 s; is one stuck starting?".into(),
                    retryable: true,
                });
            }
            let result = f(conn);
            // Released with the connection too, should this fail.
            let _ = conn.exec_drop("SELECT RELEASE_LOCK(:p1)", named(vec![text(SCHEMA_LOCK)]));
            result
        })
    }

    /// `CREATE TABLE` for `t`, with the binary collation.
    fn create_table(&self, t: &TableSchema) -> String {
        binary(&sql::create_table(Dialect::Mysql, t, KeyStyle::PrimaryKey), &self.collation)
    }
}

/// The columns of table `name`, none when it does not exist.
fn columns(conn: &mut impl Queryable, name: &str) -> Result<Vec<String>> {
    let rows: Vec<mysql::Value> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :p1",
            named(vec![text(name)]),
        )
        .map_err(|e| error(&format!("cannot read the columns of {name}"), e))?;
    Ok(rows.into_iter().filter_map(read_text).collect())
}

fn table_exists(conn: &mut impl Queryable, name: &str) -> Result<bool> {
    let row: Option<mysql::Value> = conn
        .exec_first(
            "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :p1",
            named(vec![text(name)]),
        )
        .map_err(|e| error(&format!("cannot look for table {name}"), e))?;
    Ok(row.is_some())
}

/// The instance that holds `claim`'s node id in the registry, if any.
fn holder(conn: &mut impl Queryable, claim: &Claim) -> Result<Option<String>> {
    let row: Option<mysql::Value> = conn
        .exec_first(&*stmt(reg::HOLDER), named(vec![text(&claim.node_id)]))
        .map_err(|e| error("cannot read the shard registry", e))?;
    Ok(row.and_then(read_text))
}

/// `create` with the binary collation. Tally's own tables too: under a database default
/// such as `utf8mb4_general_ci`, producers `p1` and `P1` (or node ids) would share a row,
/// and one would see the other's batches as duplicates.
fn binary(create: &str, collation: &str) -> String {
    format!("{create} DEFAULT CHARSET=utf8mb4 COLLATE={collation}")
}

fn entry(row: mysql::Row) -> Entry {
    let mut values = row.unwrap();
    values.resize(8, mysql::Value::NULL);
    let mut it = values.into_iter();
    let mut next = || it.next().unwrap_or(mysql::Value::NULL);
    let node_id = read_text(next()).unwrap_or_default();
    let shard_id = read_text(next());
    let instance = read_text(next()).unwrap_or_default();
    let host = read_text(next()).unwrap_or_default();
    Entry {
        node_id,
        shard_id,
        instance,
        host,
        pid: read_int(next()),
        heartbeat_ms: read_int(next()),
        released: read_int(next()) != 0,
        flush_seq: read_int(next()),
    }
}

impl Schema for MysqlStore {
    fn prepare(&mut self, tables: &[TableSchema]) -> Result<()> {
        let creates: HashMap<&str, String> = tables.iter().map(|t| (t.name.as_str(), self.create_table(t))).collect();
        let sets = tables.iter().any(|t| t.columns.iter().any(|c| matches!(c.role, Role::Cell(_, CellKind::Set))));
        let collation = self.collation.clone();
        self.locked(|conn| {
            if sets {
                let exists: Option<mysql::Value> = conn
                    .query_first(
                        "SELECT 1 FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE() \
                         AND ROUTINE_NAME = 'tally_set_union'",
                    )
                    .map_err(|e| error("cannot look for the function tally_set_union", e))?;
                if exists.is_none() {
                    conn.query_drop(SET_UNION).map_err(|e| {
                        error(
                            "cannot create the function tally_set_union (distinctCount merges with it; with binary \
                             logging on, the server needs log_bin_trust_function_creators=1 or the user SUPER)",
                            e,
                        )
                    })?;
                }
            }
            conn.query_drop(binary(&stmt(marks::CREATE), &collation))
                .map_err(|e| error("cannot create the roll-up marks table", e))?;
            conn.query_drop(binary(journal_sql::create(Dialect::Mysql), &collation))
                .map_err(|e| error("cannot create the journal table", e))?;
            let mut existing = Vec::new();
            let mut missing = Vec::new();
            for t in tables {
                let cols = columns(conn, &t.name)?;
                if cols.is_empty() { missing.push(t) } else { existing.push((t, cols)) }
            }
            super::check_columns(&existing)?;
            for t in missing {
                conn.query_drop(&creates[t.name.as_str()])
                    .map_err(|e| error(&format!("cannot create {}", t.name), e))?;
            }
            Ok(())
        })
    }

    fn migrate(&mut self, tables: &[TableSchema], shard_id: &str) -> Result<Vec<String>> {
        let collation = self.collation.clone();
        self.locked(|conn| {
            let mut existing = Vec::new();
            for t in tables {
                let cols = columns(conn, &t.name)?;
                if !cols.is_empty() {
                    existing.push((t, cols));
                }
            }
            let targets = super::migration_targets(&existing)?;
            for t in &targets {
                let ctx = format!("cannot migrate {}", t.name);
                for s in sql::migrate(Dialect::Mysql, t, KeyStyle::PrimaryKey) {
                    if s.contains(":p1") {
                        conn.exec_drop(&s, named(vec![text(shard_id)])).map_err(|e| error(&ctx, e))?;
                    } else if s.starts_with("CREATE TABLE") {
                        conn.query_drop(format!("{s} DEFAULT CHARSET=utf8mb4 COLLATE={collation}"))
                            .map_err(|e| error(&ctx, e))?;
                    } else {
                        conn.query_drop(&s).map_err(|e| error(&ctx, e))?;
                    }
                }
            }
            Ok(targets.iter().map(|t| t.name.clone()).collect())
        })
    }
}

impl Registry for MysqlStore {
    fn register(&mut self, claim: &Claim) -> Result<i64> {
        let collation = self.collation.clone();
        self.locked(|conn| {
            conn.query_drop(binary(&stmt(reg::CREATE), &collation))
                .map_err(|e| error("cannot create the shard registry", e))?;
            // Here, under the schema lock, so that no HELLO creates it concurrently.
            conn.query_drop(binary(&stmt(prod::CREATE), &collation))
                .map_err(|e| error("cannot create the producers table", e))?;
            let mut tx = conn
                .start_transaction(TxOpts::default())
                .map_err(|e| error("cannot start the registration transaction", e))?;
            let rows: Vec<mysql::Row> = tx
                .query(format!("{} FOR UPDATE", stmt(reg::SELECT_ALL)))
                .map_err(|e| error("cannot read the shard registry", e))?;
            let entries: Vec<Entry> = rows.into_iter().map(entry).collect();
            let now = now_ms();
            let last = registry::decide(claim, &entries, now)?;
            tx.exec_drop(
                &*stmt(reg::CLAIM),
                named(vec![
                    text(&claim.node_id),
                    claim.shard_id.as_deref().map(text).unwrap_or(mysql::Value::NULL),
                    text(&claim.instance),
                    text(&claim.host),
                    int(i64::from(claim.pid)),
                    int(now),
                ]),
            )
            .map_err(|e| error("cannot register in the shard registry", e))?;
            tx.commit().map_err(|e| error("cannot commit the registration", e))?;
            Ok(last)
        })
    }

    fn heartbeat(&mut self, claim: &Claim) -> Result<()> {
        self.with(|conn| {
            conn.exec_drop(
                &*stmt(reg::HEARTBEAT),
                named(vec![text(&claim.node_id), text(&claim.instance), int(now_ms())]),
            )
            .map_err(|e| error("cannot refresh the heartbeat", e))?;
            if conn.affected_rows() == 0 {
                Err(registry::fenced(claim, holder(conn, claim)?.as_deref()))
            } else {
                Ok(())
            }
        })
    }

    fn release(&mut self, claim: &Claim) -> Result<()> {
        self.with(|conn| {
            let r = if claim.named {
                conn.exec_drop(
                    &*stmt(reg::RELEASE),
                    named(vec![text(&claim.node_id), text(&claim.instance), int(now_ms())]),
                )
            } else {
                conn.exec_drop(&*stmt(reg::FORGET), named(vec![text(&claim.node_id), text(&claim.instance)]))
            };
            r.map_err(|e| error("cannot release the registration", e))
        })
    }
}

impl Producers for MysqlStore {
    /// A take that InnoDB chose as a deadlock's victim was rolled back whole, so it is
    /// simply run again (twice at most): the client would otherwise get a refused HELLO
    /// for contention between nodes that it cannot do anything about.
    fn take_producer(&mut self, p: &str, claim: &Claim) -> Result<Taken> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.with(|conn| take_once(conn, p, claim)) {
                Err(Error::Store { code: Some(state), .. }) if state == "40001" && attempt < 3 => continue,
                taken => return taken,
            }
        }
    }

    fn release_producer(&mut self, p: &str, claim: &Claim) -> Result<()> {
        self.with(|conn| {
            conn.exec_drop(&*stmt(prod::RELEASE), named(vec![text(p), text(&claim.instance), int(now_ms())]))
                .map_err(|e| error("cannot release a producer", e))
        })
    }
}

/// One attempt at taking producer `p` for `claim`, in one transaction.
fn take_once(conn: &mut Conn, p: &str, claim: &Claim) -> Result<Taken> {
    let ctx = "cannot take a producer";
    let now = now_ms();
    // Outside the transaction: its scan would otherwise hold row locks that flushes
    // recording other producers wait for.
    conn.exec_drop(&*stmt(prod::FORGET), named(vec![int(now - producer::FORGET_AFTER_MS)]))
        .map_err(|e| error(ctx, e))?;
    let mut tx = conn.start_transaction(TxOpts::default()).map_err(|e| error("cannot start taking a producer", e))?;
    // The row, made when missing, locked exclusively: two nodes taking one producer at
    // once queue on it, and so does a take behind a flush recording it.
    tx.exec_drop(statements::PRODUCERS_ENSURE, named(vec![text(p), int(now)])).map_err(|e| error(ctx, e))?;
    let row: Option<mysql::Row> =
        tx.exec_first(&*stmt(prod::SELECT), named(vec![text(p)])).map_err(|e| error(ctx, e))?;
    let (holder, max_seq) = match row.map(mysql::Row::unwrap) {
        Some(mut v) if v.len() == 2 => {
            let seq = read_int(v.pop().unwrap_or(mysql::Value::NULL));
            (read_text(v.pop().unwrap_or(mysql::Value::NULL)), seq)
        }
        _ => (None, 0),
    };
    let entry = match &holder {
        Some(h) => {
            let row: Option<mysql::Row> =
                tx.exec_first(&*stmt(prod::HOLDER_ENTRY), named(vec![text(h)])).map_err(|e| error(ctx, e))?;
            row.map(entry)
        }
        None => None,
    };
    producer::decide(p, claim, holder.as_deref().map(|h| (h, entry.as_ref())), now)?;
    tx.exec_drop(&*stmt(prod::TAKE), named(vec![text(p), text(&claim.instance), text(&claim.node_id), int(now)]))
        .map_err(|e| error(ctx, e))?;
    tx.commit().map_err(|e| error("cannot commit taking a producer", e))?;
    Ok(Taken { max_seq })
}

impl Writer for MysqlStore {
    fn write(&mut self, flush: &FlushWrite<'_>) -> Result<Applied> {
        self.write_flush(flush)
    }

    fn purge(&mut self, table: &TableSchema, before_ms: i64, shard: Option<&str>) -> Result<u64> {
        let ctx = format!("cannot purge {}", table.name);
        self.with(|conn| {
            if !table_exists(conn, &table.name)? {
                return Ok(0);
            }
            match shard {
                Some(s) => {
                    conn.exec_drop(sql::purge(Dialect::Mysql, table, true), named(vec![int(before_ms), text(s)]))
                }
                None => conn.exec_drop(sql::purge(Dialect::Mysql, table, false), named(vec![int(before_ms)])),
            }
            .map_err(|e| error(&ctx, e))?;
            Ok(conn.affected_rows())
        })
    }
}

impl Reader for MysqlStore {
    fn scan(&mut self, table: &TableSchema, start: i64, end: i64, equal: &[(usize, Value)]) -> Result<Vec<Vec<Value>>> {
        let ctx = format!("cannot read {}", table.name);
        self.with(|conn| {
            if !table_exists(conn, &table.name)? {
                return Ok(Vec::new());
            }
            let cols: Vec<usize> = equal.iter().map(|(c, _)| *c).collect();
            let mut params = vec![int(start), int(end)];
            params.extend(equal.iter().map(|(c, v)| bind(v, table.columns[*c].ty)));
            let rows: Vec<mysql::Row> =
                conn.exec(sql::scan(Dialect::Mysql, table, &cols), named(params)).map_err(|e| error(&ctx, e))?;
            rows.into_iter()
                .map(|r| {
                    r.unwrap()
                        .into_iter()
                        .zip(&table.columns)
                        .map(|(v, c)| read_value(v, c.ty))
                        .collect::<std::result::Result<Vec<_>, _>>()
                })
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|why| Error::Store {
                    backend: "mysql",
                    code: None,
                    message: format!("{ctx}: {why}"),
                    retryable: false,
                })
        })
    }

    fn marks(&mut self, aggregation: &str) -> Result<Vec<Mark>> {
        let ctx = "cannot read the roll-up marks";
        self.with(|conn| {
            if !table_exists(conn, mark::TABLE)? {
                return Ok(Vec::new());
            }
            let rows: Vec<mysql::Row> =
                conn.exec(&*stmt(marks::SELECT), named(vec![text(aggregation)])).map_err(|e| error(ctx, e))?;
            Ok(rows
                .into_iter()
                .filter_map(|r| {
                    let mut v = r.unwrap().into_iter();
                    let shard = read_text(v.next()?)?;
                    let duration = read_text(v.next()?)?;
                    mark::read(aggregation, shard, &duration, read_int(v.next()?))
                })
                .collect())
        })
    }

    fn newest_bucket(&mut self, table: &TableSchema, shard: &str) -> Result<Option<i64>> {
        let ctx = format!("cannot read the newest bucket of {}", table.name);
        self.with(|conn| {
            if !table_exists(conn, &table.name)? {
                return Ok(None);
            }
            let v: Option<mysql::Value> = conn
                .exec_first(sql::newest_bucket(Dialect::Mysql, table), named(vec![text(shard)]))
                .map_err(|e| error(&ctx, e))?;
            Ok(v.filter(|v| *v != mysql::Value::NULL).map(read_int))
        })
    }

    fn journal(&mut self, aggregation: &str, since: i64) -> Result<Vec<(String, Vec<u8>)>> {
        let ctx = "cannot read the journal";
        self.with(|conn| {
            if !table_exists(conn, journal::TABLE)? {
                return Ok(Vec::new());
            }
            let rows: Vec<mysql::Row> = conn
                .exec(&*stmt(journal_sql::SELECT), named(vec![text(aggregation), int(since)]))
                .map_err(|e| error(ctx, e))?;
            Ok(rows
                .into_iter()
                .filter_map(|r| {
                    let mut v = r.unwrap().into_iter();
                    let shard = read_text(v.next()?)?;
                    match v.next()? {
                        mysql::Value::Bytes(b) => Some((shard, b)),
                        _ => None,
                    }
                })
                .collect())
        })
    }
}

impl Store for MysqlStore {
    fn address(&self) -> &StoreAddress {
        &self.address
    }
}

#[cfg(test)]
mod tests;
