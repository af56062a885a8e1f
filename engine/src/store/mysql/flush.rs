//! Writing one flush to MySQL/MariaDB: one transaction on one connection.
//!
//! In order: the flush number in the registry (a number applied before means a retry of a
//! committed flush; another instance's registration means this process was fenced), the
//! producers of the flush's batches, then per table the rows of buckets newer than the
//! shard's newest by `LOAD DATA LOCAL INFILE` straight into the table, the others loaded
//! into a temporary staging table and merged with one `INSERT … SELECT … ON DUPLICATE KEY
//! UPDATE`, then the roll-up marks and the journal. No per-row INSERT.
//!
//! A LOCAL load cannot be stopped by the server, so MySQL turns its errors (a duplicate
//! key, a value that does not fit) into warnings and goes on. Each load here is checked:
//! every row loaded and no warning, or the transaction is rolled back.

use super::infile;
use super::value::{bind_field, int, named, read_int, read_text, text};
use super::{MysqlStore, error, holder};
use crate::error::{Error, Result};
use crate::store::journal::statements as journal_sql;
use crate::store::mark::statements as marks;
use crate::store::registry::{self, Applied, for_dialect, statements as reg};
use crate::store::schema::TableSchema;
use crate::store::sql::{self, Dialect, quote};
use crate::store::watermark::{self as watermark_state, Attempt, Watermark};
use crate::store::{Claim, FlushWrite, Rows, TableWrite};
use crate::time::clock::now_ms;
use mysql::prelude::Queryable;
use mysql::{Conn, Transaction, TxOpts};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Up to this many rows of a table to merge (rows of buckets the table may hold) go as
/// multi-row upserts ([`upsert`]); more are loaded into a staging table and merged with
/// one statement. Measured with scripts/bench_flush_mysql.sh (MariaDB 10.11): 1,000
/// existing rows merged at 66 K rows/s through the staging table, ~3× that as upserts;
/// at 100 K the staging path is ahead (results/issue14-mysql/).
pub const MEDIUM_MERGE_ROWS: usize = 4_096;

/// Rows per upsert statement (9 columns: 9,000 parameters, well under MySQL's 65,535).
const INSERT_ROWS: usize = 1_000;

impl MysqlStore {
    /// Writes a flush. A row the watermark said was new but existed (a case the registry
    /// should rule out) rolls the transaction back before anything is applied: read the
    /// watermark again and retry; after a second surprise the table is merged only.
    pub(super) fn write_flush(&mut self, flush: &FlushWrite<'_>) -> Result<Applied> {
        for _ in 0..3 {
            let mut watermarks = std::mem::take(&mut self.watermarks);
            let infile = Arc::clone(&self.infile);
            let outcome = self.with(|conn| match write_once(conn, &infile, flush, &mut watermarks) {
                Ok(applied) => Ok(Ok(applied)),
                Err(Attempt::Unexpected(table)) => Ok(Err(table)),
                Err(Attempt::Failed(e)) => Err(e),
            });
            self.watermarks = watermarks;
            match outcome {
                Ok(Ok(applied)) => {
                    watermark_state::advance(&mut self.watermarks, flush);
                    return Ok(applied);
                }
                Ok(Err(table)) => {
                    watermark_state::surprised(&mut self.watermarks, table);
                }
                Err(e) => {
                    // The rows read may have been rolled back with the flush.
                    self.watermarks.retain(|_, w| *w == Watermark::Off);
                    return Err(e);
                }
            }
        }
        Err(Error::Store {
            backend: "mysql",
            code: Some("23000".into()),
            message: "a flush kept meeting rows that should not exist; stopping to avoid a wrong merge".into(),
            retryable: false,
        })
    }
}

/// One attempt at a flush, in one transaction.
fn write_once(
    conn: &mut Conn,
    infile: &Arc<Mutex<Vec<u8>>>,
    flush: &FlushWrite<'_>,
    watermarks: &mut HashMap<String, Watermark>,
) -> std::result::Result<Applied, Attempt> {
    let claim = flush.claim;
    let mut tx =
        conn.start_transaction(TxOpts::default()).map_err(|e| error("cannot start the flush transaction", e))?;
    // A flush applied before (a retry after an ambiguous commit) or a process fenced off is
    // settled here, before any work; the flush's number itself is recorded last (below).
    let row: Option<(mysql::Value, mysql::Value)> = tx
        .exec_first(&*for_dialect(Dialect::Mysql, reg::PROGRESS), named(vec![text(&claim.node_id)]))
        .map_err(|e| error("cannot read the shard registry", e))?;
    let row = row.map(|(i, seq)| (read_text(i).unwrap_or_default(), read_int(seq)));
    if let Some(applied) = registry::before_flush(claim, row, flush.flush_seq)? {
        return Ok(applied);
    }
    // The batches' producers next: one taken by another node means its copy of a batch may
    // be counted there, so nothing of this flush may be (rolled back).
    for (p, seq) in flush.producers {
        tx.exec_drop(
            &*for_dialect(Dialect::Mysql, crate::store::producer::statements::RECORD),
            named(vec![text(p), text(&claim.instance), int(*seq), int(now_ms())]),
        )
        .map_err(|e| error("cannot record the batches' producers", e))?;
        if tx.affected_rows() == 0 {
            return Err(crate::store::producer::lost(p, claim).into());
        }
    }
    let mut read: Vec<(String, i64)> = Vec::new();
    for tw in &flush.tables {
        let t = tw.table;
        let mark = watermark(&mut tx, claim, t, watermarks.get(&t.name))?;
        if let Some(m) = mark
            && watermarks.get(&t.name) != Some(&Watermark::At(m))
        {
            read.push((t.name.clone(), m));
        }
        write_table(&mut tx, infile, tw, mark)?;
    }
    for m in flush.marks {
        tx.exec_drop(
            &*for_dialect(Dialect::Mysql, marks::UPSERT),
            named(vec![text(&m.aggregation), text(&m.shard), text(m.duration.table_suffix()), int(m.at)]),
        )
        .map_err(|e| error("cannot move a roll-up mark", e))?;
    }
    for j in flush.journal {
        if let Some(before) = j.trim_before {
            tx.exec_drop(
                &*for_dialect(Dialect::Mysql, journal_sql::TRIM),
                named(vec![text(&j.aggregation), text(&j.shard), int(before)]),
            )
            .map_err(|e| error("cannot trim the journal", e))?;
        }
        if let Some((last, rows)) = &j.append {
            tx.exec_drop(
                &*for_dialect(Dialect::Mysql, journal_sql::APPEND),
                named(vec![text(&j.aggregation), text(&j.shard), int(*last), mysql::Value::Bytes(rows.clone())]),
            )
            .map_err(|e| error("cannot append to the journal", e))?;
        }
    }
    #[cfg(test)]
    crate::node::fault::pass(&claim.node_id, crate::node::fault::Point::InTransaction);
    // The flush's number last: it decides (the row's latest version, locked until the
    // commit just after), and its lock does not hold up the heartbeat for the whole flush.
    // No row changed: applied meanwhile, or fenced off; dropping `tx` rolls everything back.
    tx.exec_drop(
        &*for_dialect(Dialect::Mysql, reg::RECORD_FLUSH),
        named(vec![text(&claim.node_id), text(&claim.instance), int(flush.flush_seq), int(now_ms())]),
    )
    .map_err(|e| error("cannot record the flush in the shard registry", e))?;
    if tx.affected_rows() == 0 {
        return Ok(registry::not_recorded(claim, holder(&mut tx, claim)?.as_deref())?);
    }
    tx.commit().map_err(|e| error("cannot commit the flush", e))?;
    // Remember what was read, so the next flush need not ask again.
    for (table, m) in read {
        if watermarks.get(&table) != Some(&Watermark::Off) {
            watermarks.insert(table, Watermark::At(m));
        }
    }
    Ok(Applied::Written)
}

/// The temporary staging table of table `name` (an identifier within MySQL's 64
/// characters whatever the table's name).
fn stage(name: &str) -> String {
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys: the same name gives the same stage on every connection.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    quote(&format!("tally_stage_{:016x}", h.finish()))
}

/// The newest bucket of this shard in `t` ([`watermark_state::current`]), read in `tx`.
fn watermark(
    tx: &mut Transaction<'_>,
    claim: &Claim,
    t: &TableSchema,
    known: Option<&Watermark>,
) -> Result<Option<i64>> {
    watermark_state::current(claim, t, known, |shard| {
        let v: Option<mysql::Value> = tx
            .exec_first(sql::newest_bucket(Dialect::Mysql, t), named(vec![text(shard)]))
            .map_err(|e| error(&format!("cannot write to {}", t.name), e))?;
        Ok(match v {
            None | Some(mysql::Value::NULL) => i64::MIN,
            Some(v) => read_int(v),
        })
    })
}

/// Writes one table's rows of a flush: those newer than `mark` loaded into the table, the
/// rest loaded into its staging table and merged.
fn write_table(
    tx: &mut Transaction<'_>,
    infile: &Arc<Mutex<Vec<u8>>>,
    tw: &TableWrite<'_>,
    mark: Option<i64>,
) -> std::result::Result<(), Attempt> {
    let t = tw.table;
    let rows = tw.rows;
    let (fresh, seen): (Vec<usize>, Vec<usize>) = match mark {
        Some(m) => (0..rows.len()).partition(|&r| rows.bucket(r) > m),
        None => (Vec::new(), (0..rows.len()).collect()),
    };
    if !fresh.is_empty() {
        load(tx, infile, &quote(&t.name), t, rows, &fresh, true)?;
    }
    if seen.is_empty() {
        return Ok(());
    }
    let ctx = format!("cannot write to {}", t.name);
    if seen.len() <= MEDIUM_MERGE_ROWS {
        return upsert(tx, t, rows, &seen);
    }
    let stage = stage(&t.name);
    // A temporary table lives as long as the connection. Creating one does not commit the
    // transaction (MySQL and MariaDB both exempt CREATE TEMPORARY TABLE). It has no key:
    // rows are appended as they come, and the merge reads them in key order.
    tx.query_drop(format!("CREATE TEMPORARY TABLE IF NOT EXISTS {stage} SELECT * FROM {} LIMIT 0", quote(&t.name)))
        .map_err(|e| error(&ctx, e))?;
    tx.query_drop(format!("DELETE FROM {stage}")).map_err(|e| error(&ctx, e))?;
    load(tx, infile, &stage, t, rows, &seen, false)?;
    tx.query_drop(sql::merge_from(Dialect::Mysql, t, &stage)).map_err(|e| error(&ctx, e))?;
    Ok(())
}

/// Merges rows `at` into `t` by prepared multi-row `INSERT … VALUES … ON DUPLICATE KEY
/// UPDATE` statements of up to [`INSERT_ROWS`] rows: a round trip each, where staging
/// takes four (clear the stage, load it, merge, and the load's check).
fn upsert(
    tx: &mut Transaction<'_>,
    t: &TableSchema,
    rows: &dyn Rows,
    at: &[usize],
) -> std::result::Result<(), Attempt> {
    let ctx = format!("cannot write to {}", t.name);
    let mut check = Vec::new();
    for chunk in at.chunks(INSERT_ROWS) {
        // The same refusals as a load (a string too long, a NaN), before anything is sent.
        check.clear();
        infile::encode(&mut check, t, rows, chunk).map_err(|why| refused(&ctx, why))?;
        let mut params = Vec::with_capacity(chunk.len() * t.columns.len());
        for &r in chunk {
            let mut columns = t.columns.iter();
            rows.visit(t, r, &mut |v| {
                if let Some(c) = columns.next() {
                    params.push(bind_field(v, c.ty));
                }
            });
        }
        let statement = sql::positional(&sql::upsert_rows(Dialect::Mysql, t, chunk.len()));
        tx.exec_drop(statement, mysql::Params::Positional(params)).map_err(|e| error(&ctx, e))?;
    }
    Ok(())
}

/// `LOAD DATA LOCAL INFILE` of rows `at` into `target`, checked: every row loaded and no
/// warning. A duplicate key in the table itself (`direct`) is [`Attempt::Unexpected`].
fn load(
    tx: &mut Transaction<'_>,
    infile: &Arc<Mutex<Vec<u8>>>,
    target: &str,
    t: &TableSchema,
    rows: &dyn Rows,
    at: &[usize],
    direct: bool,
) -> std::result::Result<(), Attempt> {
    let ctx = format!("cannot write to {}", t.name);
    {
        let mut buf = infile.lock().map_err(|_| refused(&ctx, "the load buffer was poisoned by a panic".into()))?;
        buf.clear();
        infile::encode_sorted(&mut buf, t, rows, at).map_err(|why| refused(&ctx, why))?;
    } // The connection's handler takes the lock to send the rows.
    let result = tx.query_drop(infile::load_statement(target, t));
    // Give back the memory of an unusually large flush.
    if let Ok(mut buf) = infile.lock() {
        buf.clear();
        buf.shrink_to(16 << 20);
    }
    result.map_err(|e| match e {
        mysql::Error::MySqlError(m) if m.code == 1148 || m.code == 3948 || m.code == 4166 => refused(
            &ctx,
            format!(
                "the server refuses LOAD DATA LOCAL INFILE (ERROR {} ({}): {}): set local_infile=ON on the server \
                 (SET GLOBAL local_infile = 1, or local_infile=1 under [mysqld] in my.cnf); Tally's bulk flush needs it",
                m.code, m.state, m.message
            ),
        ),
        mysql::Error::MySqlError(m) if direct && m.code == 1062 => Attempt::Unexpected(t.name.clone()),
        e => Attempt::Failed(error(&ctx, e)),
    })?;
    let (loaded, warnings) = (tx.affected_rows(), tx.warnings());
    if loaded == at.len() as u64 && warnings == 0 {
        return Ok(());
    }
    let shown: Vec<(String, u32, String)> = tx.query("SHOW WARNINGS LIMIT 3").map_err(|e| error(&ctx, e))?;
    if direct && shown.iter().any(|(_, code, _)| *code == 1062) {
        return Err(Attempt::Unexpected(t.name.clone()));
    }
    let said: Vec<String> = shown.iter().map(|(level, code, msg)| format!("{level} {code}: {msg}")).collect();
    Err(refused(
        &ctx,
        format!(
            "LOAD DATA loaded {loaded} of {} rows with {warnings} warnings ({}); the flush is rolled back",
            at.len(),
            said.join("; ")
        ),
    ))
}

/// A flush MySQL cannot take as it is: retrying will not help.
fn refused(ctx: &str, why: String) -> Attempt {
    Attempt::Failed(Error::Store { backend: "mysql", code: None, message: format!("{ctx}: {why}"), retryable: false })
}
