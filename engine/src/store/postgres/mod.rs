//! The PostgreSQL store: the shared database of a real cluster.
//!
//! A flush is one transaction ([`flush`]): a small one as literal upserts in one round
//! trip, a medium one as one `MERGE` per table over an array per column, a large one by
//! binary COPY into a temporary staging table and one merge per table (sums added, min/max
//! combined, sets united, latest by time stamp); rows of buckets newer than the shard's
//! newest skip the staging. No per-row INSERT statements. Values are bound by [`param`].

mod copy;
mod flush;
mod param;

pub use flush::{MEDIUM_FLUSH_ROWS, SMALL_FLUSH_ROWS};

use super::journal::{self, statements as journal_sql};
use super::mark::{self, Mark, statements as marks};
use super::producer::{self, Taken, statements as prod};
use super::registry::{self, Applied, Claim, Entry, for_dialect, statements as reg};
use super::sql::{self, Dialect, KeyStyle};
use super::watermark::Watermark;
use super::{FlushWrite, Producers, Reader, Registry, Schema, Store, StoreAddress, Writer};
use crate::error::{Error, Result};
use crate::lang::types::Value;
use crate::store::link;
use crate::store::schema::TableSchema;
use crate::time::clock::now_ms;
use param::{Param, read_value};
use postgres::types::ToSql;
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
    /// Statements every flush runs (the registry update, the journal append), prepared
    /// once per connection, by their `?n` text: a round trip saved on every flush each.
    prepared: HashMap<&'static str, postgres::Statement>,
    /// Per (table, MERGE or ON CONFLICT): the prepared array merge of a medium flush
    /// ([`MEDIUM_FLUSH_ROWS`]), for this connection.
    array_merges: HashMap<(String, bool), postgres::Statement>,
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
        // Notice a server whose host vanished (crate::store::link).
        config
            .keepalives(true)
            .keepalives_idle(link::IDLE)
            .keepalives_interval(link::INTERVAL)
            .keepalives_retries(link::PROBES)
            .tcp_user_timeout(link::USER_TIMEOUT);
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
            prepared: HashMap::new(),
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
            self.prepared.clear();
            self.array_merges.clear();
        }
        Ok(&mut self.client)
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

/// The instance that holds `claim`'s node id in the registry, if any.
fn holder(tx: &mut impl postgres::GenericClient, claim: &Claim) -> Result<Option<String>> {
    Ok(tx
        .query_opt(&*for_dialect(Dialect::Postgres, reg::HOLDER), &[&claim.node_id])
        .map_err(|e| error("cannot read the shard registry", e))?
        .map(|r| r.get(0)))
}

impl Schema for PostgresStore {
    fn prepare(&mut self, tables: &[TableSchema]) -> Result<()> {
        let key_style = self.key_style;
        let mut tx = self.client()?.transaction().map_err(|e| error("cannot start the schema transaction", e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .map_err(|e| error("cannot lock the schema", e))?;
        tx.batch_execute(SET_UNION).map_err(|e| error("cannot create the function tally_set_union", e))?;
        tx.batch_execute(marks::CREATE).map_err(|e| error("cannot create the roll-up marks table", e))?;
        tx.batch_execute(&format!("{};\n{}", journal_sql::create(Dialect::Postgres), journal_sql::INDEX))
            .map_err(|e| error("cannot create the journal table", e))?;
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
        // Here, under the schema lock, so that no HELLO creates it concurrently.
        tx.batch_execute(prod::CREATE).map_err(|e| error("cannot create the producers table", e))?;
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

impl Producers for PostgresStore {
    fn take_producer(&mut self, p: &str, claim: &Claim) -> Result<Taken> {
        let ctx = "cannot take a producer";
        let mut tx = self.client()?.transaction().map_err(|e| error("cannot start taking a producer", e))?;
        // Two nodes taking one producer at once queue here (a missing row cannot be locked);
        // a flush recording it holds the row's lock, which the SELECT … FOR UPDATE waits for.
        tx.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 13))", &[&p]).map_err(|e| error(ctx, e))?;
        let now = now_ms();
        tx.execute(&*for_dialect(Dialect::Postgres, prod::FORGET), &[&(now - producer::FORGET_AFTER_MS)])
            .map_err(|e| error(ctx, e))?;
        let select = format!("{} FOR UPDATE", for_dialect(Dialect::Postgres, prod::SELECT));
        let row = tx.query_opt(&select, &[&p]).map_err(|e| error(ctx, e))?;
        let (holder, max_seq): (Option<String>, i64) = match row {
            Some(r) => (r.try_get(0).map_err(|e| error(ctx, e))?, r.try_get(1).map_err(|e| error(ctx, e))?),
            None => (None, 0),
        };
        let entry = match &holder {
            Some(h) => tx
                .query_opt(&*for_dialect(Dialect::Postgres, prod::HOLDER_ENTRY), &[h])
                .map_err(|e| error(ctx, e))?
                .map(|r| Entry::read(|i| r.try_get(i), |i| r.try_get(i)))
                .transpose()
                .map_err(|e| error(ctx, e))?,
            None => None,
        };
        producer::decide(p, claim, holder.as_deref().map(|h| (h, entry.as_ref())), now)?;
        tx.execute(&*for_dialect(Dialect::Postgres, prod::TAKE), &[&p, &claim.instance, &claim.node_id, &now])
            .map_err(|e| error(ctx, e))?;
        tx.commit().map_err(|e| error("cannot commit taking a producer", e))?;
        Ok(Taken { max_seq })
    }

    fn release_producer(&mut self, p: &str, claim: &Claim) -> Result<()> {
        self.client()?
            .execute(&*for_dialect(Dialect::Postgres, prod::RELEASE), &[&p, &claim.instance, &now_ms()])
            .map_err(|e| error("cannot release a producer", e))?;
        Ok(())
    }
}

impl Writer for PostgresStore {
    fn write(&mut self, flush: &FlushWrite<'_>) -> Result<Applied> {
        self.write_flush(flush)
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

    fn journal(&mut self, aggregation: &str, since: i64) -> Result<Vec<(String, Vec<u8>)>> {
        let ctx = "cannot read the journal";
        if !self.table_exists(journal::TABLE, ctx)? {
            return Ok(Vec::new());
        }
        let rows = self
            .client()?
            .query(&*for_dialect(Dialect::Postgres, journal_sql::SELECT), &[&aggregation, &since])
            .map_err(|e| error(ctx, e))?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<std::result::Result<Vec<_>, postgres::Error>>()
            .map_err(|e| error(ctx, e))
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
            .query(&*for_dialect(Dialect::Postgres, marks::SELECT), &[&aggregation])
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
