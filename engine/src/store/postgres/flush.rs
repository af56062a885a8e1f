//! Writing one flush to PostgreSQL, in one transaction, by the cheapest path for its size.

use super::copy;
use super::journal::statements as journal_sql;
use super::mark::{Mark, statements as marks};
use super::param::Param;
use super::registry::{self, Applied};
use super::sql::{self, Dialect, KeyStyle, quote};
use super::{PostgresStore, error, holder};
use crate::error::{Error, Result};
use crate::lang::types::{AttrType, Value};
use crate::store::registry::{for_dialect, statements as reg};
use crate::store::schema::TableSchema;
use crate::store::watermark::{self as watermark_state, Attempt, Watermark};
use crate::store::{Claim, FlushWrite, Rows, TableWrite};
use crate::time::clock::now_ms;
use postgres::types::ToSql;

/// A flush of at most this many rows goes as literal upserts in one round trip
/// ([`sql::upsert_literal`]); a larger one as arrays or by COPY (below). Measured with
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

/// A table's rows as owned values: for the small and medium paths, which bind them as
/// parameters (at most [`MEDIUM_FLUSH_ROWS`] rows).
fn owned(tw: &TableWrite<'_>) -> Vec<Vec<Value>> {
    (0..tw.rows.len()).map(|i| tw.rows.row(tw.table, i)).collect()
}

/// Binary COPY of rows `at` of `rows` into `target` (the table's columns, in order). A row
/// that is already there is [`Attempt::Unexpected`] when `unexpected` names the table.
fn copy_rows(
    tx: &mut postgres::Transaction<'_>,
    target: &str,
    t: &TableSchema,
    rows: &dyn Rows,
    at: &[usize],
    unexpected: Option<&str>,
) -> std::result::Result<(), Attempt> {
    let ctx = format!("cannot write to {}", t.name);
    let failed = |e: postgres::Error| match unexpected {
        Some(table) if e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) => {
            Attempt::Unexpected(table.to_string())
        }
        _ => Attempt::Failed(error(&ctx, e)),
    };
    let cols: Vec<String> = t.columns.iter().map(|c| quote(&c.name)).collect();
    let mut writer =
        tx.copy_in(&format!("COPY {target} ({}) FROM STDIN (FORMAT binary)", cols.join(", "))).map_err(failed)?;
    if let Err(io) = copy::write_rows(&mut writer, t, rows, at, &mut Vec::new()) {
        // The writer reports the server's refusal as an I/O error; finishing the COPY
        // gives it back with its SQLSTATE. Either way the transaction does not commit.
        return Err(match writer.finish() {
            Err(e) => failed(e),
            Ok(_) => Attempt::Failed(Error::io(&ctx, io)),
        });
    }
    writer.finish().map_err(failed)?;
    Ok(())
}

impl PostgresStore {
    /// Writes a flush: see [`PostgresStore::write_once`].
    pub(super) fn write_flush(&mut self, flush: &FlushWrite<'_>) -> Result<Applied> {
        // A row the watermark said was new but existed (a case the registry should rule
        // out) aborts the transaction before anything is applied: read the watermark again
        // and retry; after a second surprise the table goes through the merge only.
        for _ in 0..3 {
            match self.write_once(flush) {
                Ok(applied) => {
                    watermark_state::advance(&mut self.watermarks, flush);
                    return Ok(applied);
                }
                Err(Attempt::Unexpected(table)) => {
                    watermark_state::surprised(&mut self.watermarks, table);
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
            let record = self.statement(reg::RECORD_FLUSH, "the flush's registry update")?;
            let producers_record = if flush.producers.is_empty() {
                None
            } else {
                Some(self.statement(crate::store::producer::statements::RECORD, "the producers' update")?)
            };
            let append = if flush.journal.iter().any(|j| j.append.is_some()) {
                Some(self.statement(journal_sql::APPEND, "the journal append")?)
            } else {
                None
            };
            let mut tx = self.client()?.transaction().map_err(|e| error("cannot start the flush transaction", e))?;
            // A flush applied before (a retry after an ambiguous commit) or a process fenced
            // off is settled here, before any work; the flush's number itself is recorded
            // last (below).
            let row = tx
                .query_opt(&*for_dialect(Dialect::Postgres, reg::PROGRESS), &[&claim.node_id])
                .map_err(|e| error("cannot read the shard registry", e))?
                .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)));
            if let Some(applied) = registry::before_flush(claim, row, flush.flush_seq)? {
                return Ok(applied);
            }
            // The batches' producers next: one taken by another node means its copy of a
            // batch may be counted there, so nothing of this flush may be (rolled back).
            if !flush.producers.is_empty() {
                let record = producers_record.clone().expect("prepared above");
                for (p, seq) in flush.producers {
                    let held = tx
                        .execute(&record, &[p, &claim.instance, seq, &now_ms()])
                        .map_err(|e| error("cannot record the batches' producers", e))?;
                    if held == 0 {
                        return Err(crate::store::producer::lost(p, claim).into());
                    }
                }
            }
            if flush.tables.is_empty() {
                // Only the journal (the usual flush of live events).
            } else if small {
                // Every table in one round trip; the watermarks are not needed (an upsert
                // takes new and existing rows alike) and are kept up by advance_watermarks.
                let text: Vec<String> =
                    flush.tables.iter().map(|tw| sql::upsert_literal(tw.table, &owned(tw))).collect();
                tx.batch_execute(&text.join(";\n")).map_err(|e| error("cannot write a small flush", e))?;
                marks.extend(flush.tables.iter().map(|_| None));
            } else if medium {
                for tw in &flush.tables {
                    let t = tw.table;
                    let rows = owned(tw);
                    // MERGE where it is safe (see write_table), else ON CONFLICT.
                    let merge = can_merge
                        && claim.shard_id.is_some()
                        && t.partitioned
                        && !rows.iter().any(|r| r[..t.key_len].iter().any(Value::is_null));
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
                        .map(|(i, c)| rows.iter().map(|r| Param::new(&r[i], c.ty)).collect())
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
            for j in flush.journal {
                if let Some(before) = j.trim_before {
                    tx.execute(
                        &*for_dialect(Dialect::Postgres, journal_sql::TRIM),
                        &[&j.aggregation, &j.shard, &before],
                    )
                    .map_err(|e| error("cannot trim the journal", e))?;
                }
                if let (Some((last, rows)), Some(append)) = (&j.append, &append) {
                    tx.execute(append, &[&j.aggregation, &j.shard, last, rows])
                        .map_err(|e| error("cannot append to the journal", e))?;
                }
            }
            #[cfg(test)]
            crate::node::fault::pass(&claim.node_id, crate::node::fault::Point::InTransaction);
            // The flush's number last: it decides (the row's latest version, locked until
            // the commit just after), and its lock does not hold up the heartbeat for the
            // whole flush. No row changed: applied meanwhile, or fenced off; dropping `tx`
            // rolls everything back.
            let recorded = tx
                .execute(&record, &[&claim.node_id, &claim.instance, &flush.flush_seq, &now_ms()])
                .map_err(|e| error("cannot record the flush in the shard registry", e))?;
            if recorded == 0 {
                return Ok(registry::not_recorded(claim, holder(&mut tx, claim)?.as_deref())?);
            }
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

    /// `text` (one of the `?n` statements every flush runs) prepared on this connection.
    fn statement(&mut self, text: &'static str, what: &str) -> Result<postgres::Statement> {
        if let Some(s) = self.prepared.get(text)
            && !self.client.is_closed()
        {
            return Ok(s.clone());
        }
        let stmt = self
            .client()?
            .prepare(&for_dialect(Dialect::Postgres, text))
            .map_err(|e| error(&format!("cannot prepare {what}"), e))?;
        self.prepared.insert(text, stmt.clone());
        Ok(stmt)
    }
}

/// The newest bucket of this shard in `t` ([`watermark_state::current`]), read in `tx`.
fn watermark(
    tx: &mut postgres::Transaction<'_>,
    claim: &Claim,
    t: &TableSchema,
    known: Option<&Watermark>,
) -> Result<Option<i64>> {
    watermark_state::current(claim, t, known, |shard| {
        Ok(tx
            .query_one(&sql::newest_bucket(Dialect::Postgres, t), &[&shard])
            .map_err(|e| error(&format!("cannot write to {}", t.name), e))?
            .get::<_, Option<i64>>(0)
            .unwrap_or(i64::MIN))
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
    let rows = tw.rows;
    let (fresh, seen): (Vec<usize>, Vec<usize>) = match mark {
        Some(m) => (0..rows.len()).partition(|&r| rows.bucket(r) > m),
        None => (Vec::new(), (0..rows.len()).collect()),
    };
    if !fresh.is_empty() {
        copy_rows(tx, &quote(&t.name), t, rows, &fresh, Some(&t.name))?;
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
    copy_rows(tx, &stage, t, rows, &seen, None)?;
    // MERGE (about twice as fast) where it is safe: PostgreSQL 15+, rows of this shard only
    // (one writer, so no concurrent insert of a key), no null key.
    let merge = if mark.is_some() && can_merge && !seen.iter().any(|&r| rows.key_has_null(t, r)) {
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
            &*for_dialect(Dialect::Postgres, marks::UPSERT),
            &[&m.aggregation, &m.shard, &m.duration.table_suffix(), &m.at],
        )
        .map_err(|e| error("cannot move a roll-up mark", e))?;
    }
    Ok(())
}
