//! The store: where partial aggregates of every node meet.
//!
//! One trait, two backends: SQLite (the embedded default, one file shared by several node
//! processes) and PostgreSQL (the shared database of a real cluster). A flush is written in
//! one transaction of many rows; reads return every shard's rows and the caller merges.

pub mod address;
pub mod postgres;
pub mod sql;
pub mod sqlite;

pub use address::StoreAddress;

use crate::error::{Error, Result};
use crate::schema::TableSchema;
use crate::types::Value;

/// The rows one flush writes to one table (each in the table's column order).
#[derive(Debug)]
pub struct TableWrite<'a> {
    pub table: &'a TableSchema,
    pub rows: &'a [Vec<Value>],
}

/// Everything one flush of one node writes: applied in one transaction, or not at all.
#[derive(Debug)]
pub struct FlushWrite<'a> {
    pub node_id: &'a str,
    /// Increases with every flush of the node; lets a store apply a retried flush once.
    pub flush_seq: u64,
    pub tables: Vec<TableWrite<'a>>,
}

impl FlushWrite<'_> {
    pub fn rows(&self) -> usize {
        self.tables.iter().map(|t| t.rows.len()).sum()
    }
}

pub trait Store: Send {
    fn address(&self) -> &StoreAddress;

    /// Creates the tables that are missing and checks that existing ones fit the app
    /// (columns, and `SHARD_ID` for partitioned aggregations).
    fn prepare(&mut self, tables: &[TableSchema]) -> Result<()>;

    /// Merges the rows of one flush into the tables, in one transaction: sums added,
    /// min/max combined, sets united, latest values by time stamp.
    fn write(&mut self, flush: &FlushWrite<'_>) -> Result<()>;

    /// The rows of `table` (every shard) whose bucket starts in `[start, end)`, optionally
    /// only those whose columns equal the given values. A table that does not exist yet
    /// has no rows.
    fn scan(&mut self, table: &TableSchema, start: i64, end: i64, equal: &[(usize, Value)]) -> Result<Vec<Vec<Value>>>;
}

/// Checks tables that exist against the app: `SHARD_ID` for partitioned aggregations, and
/// every column. `existing` pairs each table with the columns the store has for it.
pub(crate) fn check_layouts(existing: &[(&TableSchema, Vec<String>)]) -> Result<()> {
    let unsharded: Vec<&TableSchema> = existing
        .iter()
        .filter(|(t, cols)| t.partitioned && !cols.iter().any(|c| c == "SHARD_ID"))
        .map(|(t, _)| *t)
        .collect();
    if let Some(first) = unsharded.first() {
        let names: Vec<&str> = unsharded.iter().map(|t| t.name.as_str()).collect();
        return Err(Error::Schema(format!(
            "the tables {} exist without a SHARD_ID column, but aggregation `{}` is partitioned (@PartitionById): \
             Siddhi would drop every write to them. Add SHARD_ID filled with this node's shard id and make it part \
             of the primary key (tally migrate does this in one transaction), or switch partitioning off for this \
             aggregation with @PartitionById(enable='false')",
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

/// Opens the store at `address`.
pub fn open(address: &StoreAddress) -> Result<Box<dyn Store>> {
    match address {
        StoreAddress::Sqlite { .. } => Ok(Box::new(sqlite::SqliteStore::open(address.clone())?)),
        StoreAddress::Postgres { .. } => Ok(Box::new(postgres::PostgresStore::open(address.clone())?)),
        StoreAddress::Mysql { .. } => Err(Error::Unsupported(format!(
            "store {}: MySQL/MariaDB is not supported yet; use PostgreSQL (jdbc:postgresql://…) or the embedded SQLite store (sqlite:PATH)",
            address.redacted()
        ))),
    }
}
