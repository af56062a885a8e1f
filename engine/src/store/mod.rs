//! The store: where partial aggregates of every node meet.
//!
//! One trait, three backends: SQLite (the embedded default, one file shared by several node
//! processes), PostgreSQL and MySQL/MariaDB (the shared database of a real cluster). A flush is written in
//! one transaction of many rows; reads return every shard's rows and the caller merges.

pub mod address;
pub mod journal;
pub mod link;
pub mod mark;
pub mod mysql;
pub mod mysql_address;
pub mod postgres;
pub mod producer;
pub(crate) mod registry;
pub mod rows;
pub mod schema;
pub mod sql;
pub(crate) mod sqlite;
pub(crate) mod watermark;

pub use address::StoreAddress;
pub use journal::JournalWrite;
pub use mark::Mark;
pub use registry::{Applied, Claim};
pub use rows::{Field, Rows};

use crate::error::{Error, Result};
use crate::lang::types::Value;
use crate::store::schema::TableSchema;

/// The rows one flush writes to one table (each in the table's column order).
#[derive(Debug)]
pub struct TableWrite<'a> {
    pub table: &'a TableSchema,
    pub rows: &'a dyn Rows,
}

/// Everything one flush of one node writes: applied in one transaction, or not at all.
#[derive(Debug)]
pub struct FlushWrite<'a> {
    /// The writing process, registered in this store ([`Registry::register`]).
    pub claim: &'a Claim,
    /// Increases with every flush of the node (across restarts); a store applies each
    /// number once, so a flush retried after an ambiguous commit is not counted twice.
    pub flush_seq: i64,
    pub tables: Vec<TableWrite<'a>>,
    /// Roll-up marks moved by this flush ([`mark`]): written in the same transaction as
    /// the rows rolled up under them.
    pub marks: &'a [Mark],
    /// Journal records appended and trimmed ([`journal`]), in the same transaction.
    pub journal: &'a [JournalWrite],
    /// `(producer, highest sequence number)` of the version 2 batches in this flush
    /// ([`producer`]): recorded in the same transaction, on the condition that this
    /// process still holds each producer; when one was taken, nothing is written.
    pub producers: &'a [(String, i64)],
}

impl FlushWrite<'_> {
    pub fn rows(&self) -> usize {
        self.tables.iter().map(|t| t.rows.len()).sum()
    }
}

/// A store's tables: made to fit the app, or rebuilt for partitioning. Used by a node
/// starting (`prepare`) and by `tally migrate`.
pub trait Schema {
    /// Creates the tables that are missing (and the roll-up marks table) and checks that
    /// existing ones fit the app (columns, and `SHARD_ID` for partitioned aggregations).
    fn prepare(&mut self, tables: &[TableSchema]) -> Result<()>;

    /// Rebuilds the tables that exist without `SHARD_ID` for a partitioned aggregation:
    /// adds the column filled with `shard_id` and makes it part of the primary key, all in
    /// one transaction. Returns the names of the tables migrated.
    fn migrate(&mut self, tables: &[TableSchema], shard_id: &str) -> Result<Vec<String>>;
}

/// The shard registry (SEMANTICS §5): who writes which shard. Used by a node starting and
/// stopping, its heartbeat thread, and `tally migrate`.
pub trait Registry {
    /// Registers this process in the shard registry (creating it when missing) and returns
    /// the last flush sequence number its node id applied here. Refuses a changed shard id
    /// and a second live holder of the node or shard id (`registry::decide`).
    fn register(&mut self, claim: &Claim) -> Result<i64>;

    /// Refreshes this process's heartbeat; fails when its registration was taken over.
    fn heartbeat(&mut self, claim: &Claim) -> Result<()>;

    /// Marks this process's registration released (the node stopped cleanly).
    fn release(&mut self, claim: &Claim) -> Result<()>;
}

/// Producers of version 2 clients ([`producer`], docs/delivery.md).
pub trait Producers {
    /// Takes `producer` for this process (refused with [`Error::ProducerHeld`] while another
    /// live process holds it) and returns its highest committed sequence number. Also
    /// forgets producers released long ago.
    fn take_producer(&mut self, producer: &str, claim: &Claim) -> Result<producer::Taken>;

    /// Releases `producer` if this process holds it.
    fn release_producer(&mut self, producer: &str, claim: &Claim) -> Result<()>;
}

/// What changes rows: a node's flushes, and retention's deletes.
pub trait Writer {
    /// Merges the rows of one flush into the tables, in one transaction: sums added,
    /// min/max combined, sets united, latest values by time stamp; and records the flush
    /// sequence number in the same transaction. A number applied before changes nothing.
    fn write(&mut self, flush: &FlushWrite<'_>) -> Result<Applied>;

    /// Deletes the rows of `table` whose bucket starts before `before_ms`; only those of
    /// `shard` when given (a node purges its own shard). Returns the rows deleted.
    fn purge(&mut self, table: &TableSchema, before_ms: i64, shard: Option<&str>) -> Result<u64>;
}

/// What queries read.
pub trait Reader {
    /// The rows of `table` (every shard) whose bucket starts in `[start, end)`, optionally
    /// only those whose columns equal the given values. A table that does not exist yet
    /// has no rows.
    fn scan(&mut self, table: &TableSchema, start: i64, end: i64, equal: &[(usize, Value)]) -> Result<Vec<Vec<Value>>>;

    /// Every shard's roll-up marks of `aggregation` ([`mark`]); none when the marks table
    /// does not exist yet.
    fn marks(&mut self, aggregation: &str) -> Result<Vec<Mark>>;

    /// The newest bucket start of `shard` in a partitioned `table`; `None` when it has no
    /// rows (or the table does not exist).
    fn newest_bucket(&mut self, table: &TableSchema, shard: &str) -> Result<Option<i64>>;

    /// Every shard's journal records of `aggregation` ([`journal`]) that hold a bucket at or
    /// after `since`, as `(shard, rows)`; none when the journal table does not exist yet.
    fn journal(&mut self, aggregation: &str, since: i64) -> Result<Vec<(String, Vec<u8>)>>;
}

/// One backend with every role: what [`open`] returns. Callers that need one role take
/// that trait (a query takes a [`Reader`]).
pub trait Store: Schema + Registry + Producers + Writer + Reader + Send {
    fn address(&self) -> &StoreAddress;
}

/// Checks tables that exist against the app: `SHARD_ID` for partitioned aggregations, and
/// every column. `existing` pairs each table with the columns the store has for it.
pub(crate) fn check_columns(existing: &[(&TableSchema, Vec<String>)]) -> Result<()> {
    let unsharded: Vec<&TableSchema> = existing
        .iter()
        .filter(|(t, cols)| t.partitioned && !cols.iter().any(|c| c == "SHARD_ID"))
        .map(|(t, _)| *t)
        .collect();
    if let Some(first) = unsharded.first() {
        let names: Vec<&str> = unsharded.iter().map(|t| t.name.as_str()).collect();
        return Err(Error::Schema(format!(
            "the tables {} exist without a SHARD_ID column, but aggregation `{}` is partitioned (@PartitionById): \
             Siddhi would drop every write to them. Run `tally migrate --app APP --config NODE.yaml --store URL` \
             with this node's files: it adds SHARD_ID filled with this node's shard id and makes it part of the \
             primary key, in one transaction. Or switch partitioning off for this aggregation with \
             @PartitionById(enable='false')",
            names.join(", "),
            first.aggregation
        )));
    }
    let mismatched: Vec<String> = existing
        .iter()
        .filter_map(|(t, cols)| {
            let missing: Vec<&str> =
                t.columns.iter().filter(|c| !cols.contains(&c.name)).map(|c| c.name.as_str()).collect();
            (!missing.is_empty()).then(|| format!("{} lacks {}", t.name, missing.join(", ")))
        })
        .collect();
    if !mismatched.is_empty() {
        return Err(Error::Schema(format!(
            "the store's tables do not fit the app: {}. They were made for a different aggregation definition; \
             rename the aggregation or move the old tables away",
            mismatched.join("; ")
        )));
    }
    Ok(())
}

/// Of the tables that exist (each with the store's columns for it), those `migrate` must
/// rebuild: partitioned but without `SHARD_ID`. Refuses tables whose other columns do not
/// match the app, since a rebuild would drop or invent data.
pub(crate) fn migration_targets<'a>(existing: &[(&'a TableSchema, Vec<String>)]) -> Result<Vec<&'a TableSchema>> {
    let mut targets = Vec::new();
    for (t, cols) in existing {
        if !t.partitioned || cols.iter().any(|c| c == "SHARD_ID") {
            continue;
        }
        let missing: Vec<&str> = t
            .columns
            .iter()
            .filter(|c| c.name != "SHARD_ID" && !cols.contains(&c.name))
            .map(|c| c.name.as_str())
            .collect();
        let extra: Vec<&str> =
            cols.iter().filter(|c| !t.columns.iter().any(|tc| &tc.name == *c)).map(String::as_str).collect();
        if !missing.is_empty() || !extra.is_empty() {
            return Err(Error::Schema(format!(
                "cannot migrate {}: besides SHARD_ID its columns differ from the app's (missing: {}; not in the app: \
                 {}). It was made for another definition of aggregation `{}`; move it away instead",
                t.name,
                if missing.is_empty() { "none".to_string() } else { missing.join(", ") },
                if extra.is_empty() { "none".to_string() } else { extra.join(", ") },
                t.aggregation
            )));
        }
        targets.push(*t);
    }
    Ok(targets)
}

/// Opens the store at `address`.
pub fn open(address: &StoreAddress) -> Result<Box<dyn Store>> {
    match address {
        StoreAddress::Sqlite { .. } => Ok(Box::new(sqlite::SqliteStore::open(address.clone())?)),
        StoreAddress::Postgres { .. } => Ok(Box::new(postgres::PostgresStore::open(address.clone())?)),
        StoreAddress::Mysql(_) => Ok(Box::new(mysql::MysqlStore::open(address.clone())?)),
    }
}
