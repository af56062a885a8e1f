//! `tally migrate`: gives the existing tables of partitioned aggregations the `SHARD_ID`
//! column and the key that includes it. The node registers first, so its shard id is
//! checked against the registry (and recorded) before any table changes.

use crate::config::NodeConfig;
use crate::error::{Error, Result};
use crate::lang::plan::AppPlan;
use crate::store::schema::TableSchema;
use crate::store::{self, Claim};
use std::time::Duration;

/// Migrates the tables of the app's partitioned aggregations that exist without
/// `SHARD_ID`, in each store: `(store, tables migrated, shard id)`. The node registers
/// first, so the shard id is checked against the registry (and recorded).
pub fn migrate(
    plan: &AppPlan,
    cfg: &NodeConfig,
    store: Option<&str>,
    on_retry: &mut dyn FnMut(&Error, Duration),
) -> Result<Vec<(String, Vec<String>, String)>> {
    let tables = TableSchema::all(plan);
    let me = Claim::new(cfg.node_id.as_deref(), cfg.effective_shard_id());
    let mut out = Vec::new();
    for (address, aggregations) in store::address::by_store(plan, store, &cfg.settings.store)? {
        let partitioned: Vec<usize> =
            aggregations.into_iter().filter(|&a| plan.aggregations[a].shard_id.is_some()).collect();
        let Some(shard) = partitioned.first().and_then(|&a| plan.aggregations[a].shard_id.clone()) else {
            continue;
        };
        let mine: Vec<TableSchema> = partitioned.iter().flat_map(|&a| tables[a].iter().cloned()).collect();
        let claim = me.with_shard(Some(&shard));
        let migrated = crate::node::backoff::retry(cfg.store_wait, on_retry, || {
            let mut s = store::open(&address)?;
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
