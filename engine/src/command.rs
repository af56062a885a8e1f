//! The `tally` subcommands as library calls; the binary parses arguments, prints, and
//! chooses exit codes.

use crate::config::NodeConfig;
use crate::error::{Error, Result};
use crate::flush::resolve_address;
use crate::ingest::{self, IngestReport, Rejection};
use crate::node::Node;
use crate::plan::{self, AppPlan};
use crate::query::{self, QueryResult};
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration as StdDuration;

/// Reads the node file (defaults when `None`) and checks the app against it.
pub fn load(app: &Path, config: Option<&Path>) -> Result<(NodeConfig, AppPlan)> {
    let cfg = match config {
        Some(p) => NodeConfig::load(p)?,
        None => NodeConfig::default(),
    };
    let plan = plan::load(app, &cfg)?;
    Ok((cfg, plan))
}

/// Runs the app as this node over JSON-lines inputs (`-` is standard input), then flushes
/// everything. Bad lines go to `on_reject`; store retries to `on_retry`.
pub fn ingest(
    plan: AppPlan,
    cfg: &NodeConfig,
    store: Option<&str>,
    inputs: &[PathBuf],
    on_reject: &mut dyn FnMut(&Path, Rejection),
    on_retry: &mut dyn FnMut(&Error, StdDuration),
) -> Result<IngestReport> {
    let mut node = Node::start(Arc::new(plan), cfg, store, on_retry)?;
    let mut router = node.router();
    let mut total = IngestReport::default();
    for path in inputs {
        let mut reject = |r: Rejection| on_reject(path, r);
        let mut flush_error = |e: &Error| on_retry(e, cfg.flush_interval);
        let report = if path.as_os_str() == "-" {
            ingest::feed(
                &mut node,
                &mut router,
                std::io::stdin().lock(),
                cfg.flush_interval,
                &mut reject,
                &mut flush_error,
            )?
        } else {
            let file =
                std::fs::File::open(path).map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
            ingest::feed(
                &mut node,
                &mut router,
                BufReader::with_capacity(1 << 20, file),
                cfg.flush_interval,
                &mut reject,
                &mut flush_error,
            )?
        };
        total.lines += report.lines;
        total.accepted += report.accepted;
        total.rejected += report.rejected;
        total.rows_written += report.rows_written;
        total.flushes += report.flushes;
    }
    ingest::finish(node, router, &mut total, cfg.store_wait, on_retry)?;
    Ok(total)
}

/// Runs one retrieval query against the store of the queried aggregation.
pub fn query(plan: &AppPlan, cfg: &NodeConfig, store: Option<&str>, text: &str) -> Result<QueryResult> {
    let q = query::compile_query(plan, text)?;
    let agg = &plan.aggregations[q.aggregation];
    let address = resolve_address(agg, store, &cfg.settings.store)?;
    if let crate::store::StoreAddress::Sqlite { path } = &address
        && !path.exists()
    {
        return Err(Error::Schema(format!(
            "the store {} does not exist: ingest into it first, or give the right --store",
            address.redacted()
        )));
    }
    let mut s = crate::store::open(&address)?;
    query::run(plan, &q, s.as_mut())
}

/// One purge pass over every table with a finite retention, for this node's shard. A store
/// that is down is waited for (`tally.store_wait`).
pub fn purge(
    plan: &AppPlan,
    cfg: &NodeConfig,
    store: Option<&str>,
    on_retry: &mut dyn FnMut(&Error, StdDuration),
) -> Result<Vec<crate::retention::Purged>> {
    let mut retention = crate::retention::Retention::new(plan, cfg, store)?;
    crate::backoff::retry(cfg.store_wait, on_retry, || retention.run_all(crate::store::registry::now_ms()))
}

/// Migrates the tables of the app's partitioned aggregations that exist without
/// `SHARD_ID`, in each store: `(store, tables migrated, shard id)`. The node registers
/// first, so the shard id is checked against the registry (and recorded).
pub fn migrate(
    plan: &AppPlan,
    cfg: &NodeConfig,
    store: Option<&str>,
    on_retry: &mut dyn FnMut(&Error, StdDuration),
) -> Result<Vec<(String, Vec<String>, String)>> {
    let tables = crate::schema::TableSchema::all(plan);
    let me = crate::store::Claim::new(cfg.node_id.as_deref(), cfg.effective_shard_id());
    let mut out = Vec::new();
    for (address, aggregations) in crate::flush::store_addresses(plan, store, &cfg.settings.store)? {
        let partitioned: Vec<usize> =
            aggregations.into_iter().filter(|&a| plan.aggregations[a].shard_id.is_some()).collect();
        let Some(shard) = partitioned.first().and_then(|&a| plan.aggregations[a].shard_id.clone()) else {
            continue;
        };
        let mine: Vec<crate::schema::TableSchema> =
            partitioned.iter().flat_map(|&a| tables[a].iter().cloned()).collect();
        let claim = me.with_shard(Some(&shard));
        let migrated = crate::backoff::retry(cfg.store_wait, on_retry, || {
            let mut s = crate::store::open(&address)?;
            s.register(&claim)?;
            let done = s.migrate(&mine, &shard);
            s.release(&claim)?;
            done
        })?;
        out.push((address.redacted(), migrated, shard));
    }
    if out.is_empty() {
        return Err(Error::Schema(
            "nothing to migrate: no aggregation of the app is partitioned (@PartitionById, or \
             siddhi.properties.partitionById: true)"
                .into(),
        ));
    }
    Ok(out)
}
