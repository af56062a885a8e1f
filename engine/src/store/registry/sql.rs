//! The registry's SQL, shared by the SQL stores: its statements (with `?n` parameters,
//! rewritten for each dialect) and the reading of its rows.

use super::Entry;
use crate::store::sql::Dialect;

/// SQL of the registry, with `?n` parameters (see [`for_dialect`]).
pub mod statements {
    pub const CREATE: &str = "CREATE TABLE IF NOT EXISTS \"TALLY_SHARD_REGISTRY\" (\"NODE_ID\" TEXT NOT NULL PRIMARY KEY, \
        \"SHARD_ID\" TEXT, \"INSTANCE\" TEXT NOT NULL, \"HOST\" TEXT NOT NULL, \"PID\" BIGINT NOT NULL, \
        \"STARTED_MS\" BIGINT NOT NULL, \"HEARTBEAT_MS\" BIGINT NOT NULL, \"RELEASED\" BIGINT NOT NULL DEFAULT 0, \
        \"FLUSH_SEQ\" BIGINT NOT NULL DEFAULT 0)";
    pub const SELECT_ALL: &str = "SELECT \"NODE_ID\", \"SHARD_ID\", \"INSTANCE\", \"HOST\", \"PID\", \"HEARTBEAT_MS\", \
        \"RELEASED\", \"FLUSH_SEQ\" FROM \"TALLY_SHARD_REGISTRY\"";
    /// ?1 node, ?2 shard (null keeps the recorded one), ?3 instance, ?4 host, ?5 pid, ?6 now.
    pub const CLAIM: &str = "INSERT INTO \"TALLY_SHARD_REGISTRY\" (\"NODE_ID\", \"SHARD_ID\", \"INSTANCE\", \"HOST\", \
        \"PID\", \"STARTED_MS\", \"HEARTBEAT_MS\") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) ON CONFLICT (\"NODE_ID\") DO UPDATE \
        SET \"SHARD_ID\" = coalesce(excluded.\"SHARD_ID\", \"TALLY_SHARD_REGISTRY\".\"SHARD_ID\"), \
        \"INSTANCE\" = excluded.\"INSTANCE\", \"HOST\" = excluded.\"HOST\", \"PID\" = excluded.\"PID\", \
        \"STARTED_MS\" = excluded.\"STARTED_MS\", \"HEARTBEAT_MS\" = excluded.\"HEARTBEAT_MS\", \"RELEASED\" = 0";
    /// ?1 node, ?2 instance, ?3 flush sequence, ?4 now. One row changed: go ahead. The
    /// bulk stores run it last in the flush's transaction, just before the commit: its row
    /// lock then lasts a moment, not the whole flush, and the heartbeat (an update of the
    /// same row) is not held up by a long flush (see `registry::before_flush`).
    pub const RECORD_FLUSH: &str = "UPDATE \"TALLY_SHARD_REGISTRY\" SET \"FLUSH_SEQ\" = ?3, \"HEARTBEAT_MS\" = ?4 \
        WHERE \"NODE_ID\" = ?1 AND \"INSTANCE\" = ?2 AND \"FLUSH_SEQ\" < ?3";
    /// ?1 node: who holds it, and its last flush number (read before a flush's writes).
    pub const PROGRESS: &str =
        "SELECT \"INSTANCE\", \"FLUSH_SEQ\" FROM \"TALLY_SHARD_REGISTRY\" WHERE \"NODE_ID\" = ?1";
    /// ?1 node: who holds it now.
    pub const HOLDER: &str = "SELECT \"INSTANCE\" FROM \"TALLY_SHARD_REGISTRY\" WHERE \"NODE_ID\" = ?1";
    /// ?1 node, ?2 instance, ?3 now.
    pub const HEARTBEAT: &str = "UPDATE \"TALLY_SHARD_REGISTRY\" SET \"HEARTBEAT_MS\" = ?3 \
        WHERE \"NODE_ID\" = ?1 AND \"INSTANCE\" = ?2";
    /// ?1 node, ?2 instance, ?3 now.
    pub const RELEASE: &str = "UPDATE \"TALLY_SHARD_REGISTRY\" SET \"RELEASED\" = 1, \"HEARTBEAT_MS\" = ?3 \
        WHERE \"NODE_ID\" = ?1 AND \"INSTANCE\" = ?2";
    /// ?1 node, ?2 instance: a generated node id leaves nothing behind.
    pub const FORGET: &str = "DELETE FROM \"TALLY_SHARD_REGISTRY\" WHERE \"NODE_ID\" = ?1 AND \"INSTANCE\" = ?2";
}

/// A statement of [`statements`] (or of the other bookkeeping tables) in the form of `d`:
/// `?n` or `$n` parameters, and MySQL's own `CREATE TABLE` and upserts.
pub fn for_dialect(d: Dialect, text: &str) -> std::borrow::Cow<'_, str> {
    match d {
        Dialect::Sqlite => text.into(),
        Dialect::Postgres => text.replace('?', "$").into(),
        Dialect::Mysql => crate::store::mysql::statements::mysql(text),
    }
}

impl Entry {
    /// One row of [`statements::SELECT_ALL`], whatever the driver: `text` and `int` read
    /// the column at an index, in that statement's column order.
    pub fn read<E>(
        text: impl Fn(usize) -> Result<Option<String>, E>,
        int: impl Fn(usize) -> Result<i64, E>,
    ) -> Result<Entry, E> {
        Ok(Entry {
            node_id: text(0)?.unwrap_or_default(),
            shard_id: text(1)?,
            instance: text(2)?.unwrap_or_default(),
            host: text(3)?.unwrap_or_default(),
            pid: int(4)?,
            heartbeat_ms: int(5)?,
            released: int(6)? != 0,
            flush_seq: int(7)?,
        })
    }
}
