//! The shard registry (SEMANTICS §5): which node id uses which shard id, which process of
//! it is live, and the last flush each node applied.
//!
//! One row per node id in `TALLY_SHARD_REGISTRY`, in the same database as the aggregation
//! tables. A node registers when it starts (in one transaction: read every row, decide,
//! upsert its own), refreshes its heartbeat while it runs, and marks itself released when it
//! stops. Every flush updates the row in the flush's own transaction, which gives two things:
//!
//! - **applied once**: the row keeps the node's last flush sequence number, and a flush
//!   whose number is not above it is skipped, so a flush retried after an ambiguous commit
//!   counts once;
//! - **fencing**: the update names this process's instance id, so a process whose
//!   registration was taken over (it was presumed dead) can no longer write.
//!
//! The decision itself ([`decide`]) is plain code over the rows, tested without a database.

mod process;
mod sql;

pub use sql::{for_dialect, statements};

use crate::error::{Error, Result};
use process::{hostname, process_exists, random_u64};

/// The registry table.
pub const TABLE: &str = "TALLY_SHARD_REGISTRY";

/// A registration older than this without a heartbeat is presumed dead.
pub const LEASE_MS: i64 = 30_000;

/// How often a running node refreshes its heartbeat (well inside the lease).
pub const HEARTBEAT_EVERY_MS: i64 = 5_000;

/// Who this process is, as it registers in a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// `wso2.carbon.id`, or a generated one for a node without an id (then not kept).
    pub node_id: String,
    /// Whether `node_id` came from the configuration (a generated id has no history).
    pub named: bool,
    /// The shard id this node writes under in this store; `None` when none of its
    /// aggregations in this store is partitioned.
    pub shard_id: Option<String>,
    /// Unique to this process run.
    pub instance: String,
    pub host: String,
    pub pid: u32,
}

impl Claim {
    /// A claim for this process.
    pub fn new(node_id: Option<&str>, shard_id: Option<&str>) -> Claim {
        let host = hostname();
        let pid = std::process::id();
        let instance = format!("{host}:{pid}:{:016x}", random_u64());
        Claim {
            node_id: node_id.map(str::to_string).unwrap_or_else(|| format!("unnamed:{instance}")),
            named: node_id.is_some(),
            shard_id: shard_id.map(str::to_string),
            instance,
            host,
            pid,
        }
    }

    /// The same process, claiming `shard_id` (a store whose aggregations are partitioned)
    /// or none.
    pub fn with_shard(&self, shard_id: Option<&str>) -> Claim {
        Claim { shard_id: shard_id.map(str::to_string), ..self.clone() }
    }
}

/// One row of the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub node_id: String,
    pub shard_id: Option<String>,
    pub instance: String,
    pub host: String,
    pub pid: i64,
    pub heartbeat_ms: i64,
    pub released: bool,
    pub flush_seq: i64,
}

/// Whether the process behind an entry may still be running.
pub(crate) fn live(e: &Entry, now_ms: i64, me: &Claim) -> bool {
    if e.released || now_ms - e.heartbeat_ms > LEASE_MS {
        return false;
    }
    // A process of this host that no longer exists is dead whatever its heartbeat says
    // (a node killed and restarted at once need not wait for the lease).
    e.host != me.host || process_exists(e.pid)
}

/// Decides a registration: `Ok(last flush sequence of this node id)` to go ahead, or the
/// reason for refusing. `rows` is the whole registry.
pub fn decide(claim: &Claim, rows: &[Entry], now_ms: i64) -> Result<i64> {
    let own = rows.iter().find(|e| e.node_id == claim.node_id);
    if let (Some(own), Some(mine)) = (own, &claim.shard_id)
        && let Some(before) = &own.shard_id
        && before != mine
    {
        return Err(Error::Shard(format!(
            "node `{}` used shard id `{before}` before and is now configured with `{mine}`: a shard id must not \
             change after first use, or its rows would be counted under two shards. Set \
             siddhi.properties.shardId back to `{before}`; to really retire `{before}`, delete its registration \
             (DELETE FROM {TABLE} WHERE NODE_ID = '{}') knowing its rows stay in the tables under `{before}`",
            claim.node_id, claim.node_id
        )));
    }
    for e in rows {
        if e.instance == claim.instance || !live(e, now_ms, claim) {
            continue;
        }
        let same_node = e.node_id == claim.node_id;
        let same_shard = claim.shard_id.is_some() && e.shard_id == claim.shard_id;
        if same_node || same_shard {
            let what = if same_node {
                format!("node id `{}`", claim.node_id)
            } else {
                format!("shard id `{}`", claim.shard_id.as_deref().unwrap_or_default())
            };
            return Err(Error::Shard(format!(
                "{what} is held by a live node: `{}` on host {} (pid {}), last heartbeat {:.1} s ago. Two live nodes \
                 with one shard id would write the same rows. Stop that node, or give this one its own \
                 wso2.carbon.id and siddhi.properties.shardId; a node that died is presumed dead {} s after its \
                 last heartbeat",
                e.node_id,
                e.host,
                e.pid,
                (now_ms - e.heartbeat_ms) as f64 / 1000.0,
                LEASE_MS / 1000
            )));
        }
    }
    Ok(own.map(|e| e.flush_seq).unwrap_or(0))
}

/// The message for a process whose registration another one took over.
pub fn fenced(claim: &Claim, holder: Option<&str>) -> Error {
    Error::Shard(format!(
        "node `{}` (this process, {}) no longer holds its registration{}: it was presumed dead after {} s \
         without a heartbeat. It stops writing so that no row is counted twice; restart it once the other \
         process is stopped",
        claim.node_id,
        claim.instance,
        holder.map(|h| format!(" (now held by {h})")).unwrap_or_default(),
        LEASE_MS / 1000
    ))
}

/// A flush whose number the registry row did not take (no row changed): if the row still
/// names this process (`holder`), the number was applied before, a retry after an
/// ambiguous commit; otherwise another process took the registration over and this one
/// is fenced off.
pub fn not_recorded(claim: &Claim, holder: Option<&str>) -> Result<Applied> {
    match holder {
        Some(i) if i == claim.instance => Ok(Applied::AlreadyApplied),
        other => Err(fenced(claim, other)),
    }
}

/// What the registry row says of flush `seq` before its writes, read without a lock:
/// `row` is its holder and last flush number. `Some` settles the flush at once (its number
/// was applied before: a retry after an ambiguous commit), an error says this process was
/// fenced off, and `None` goes ahead.
///
/// Only a hint that saves a flush's work: the PostgreSQL and MySQL stores record the flush
/// number last, just before the commit, and that update decides (it reads the row's
/// latest version and locks it). Recorded first, its lock lasted the whole flush and held
/// up the node's heartbeat on the same row; under repeated store restarts a node whose
/// flushes kept being cut off stopped beating for the lease and lost its producers while
/// alive (found by `--chaos store-restart` on MySQL).
pub fn before_flush(claim: &Claim, row: Option<(String, i64)>, seq: i64) -> Result<Option<Applied>> {
    match row {
        Some((instance, last)) if instance == claim.instance => Ok((last >= seq).then_some(Applied::AlreadyApplied)),
        other => Err(fenced(claim, other.as_ref().map(|(i, _)| i.as_str()))),
    }
}

/// The outcome of one flush write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The rows were merged.
    Written,
    /// This flush sequence number was applied before (a retry after an ambiguous commit):
    /// nothing was changed.
    AlreadyApplied,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn before_a_flush_the_registry_row_settles_a_retry_or_a_fenced_process() {
        let me = claim("node-a", None);
        assert_eq!(before_flush(&me, Some((me.instance.clone(), 6)), 7).unwrap(), None);
        assert_eq!(before_flush(&me, Some((me.instance.clone(), 7)), 7).unwrap(), Some(Applied::AlreadyApplied));
        let e = before_flush(&me, Some(("another".into(), 3)), 7).unwrap_err();
        assert!(matches!(e, Error::Shard(_)) && e.to_string().contains("(now held by another)"), "{e}");
        assert!(matches!(before_flush(&me, None, 7), Err(Error::Shard(_))));
    }

    fn claim(node: &str, shard: Option<&str>) -> Claim {
        Claim { host: "elsewhere-test-host".into(), ..Claim::new(Some(node), shard) }
    }

    fn entry(node: &str, shard: Option<&str>, heartbeat_ms: i64) -> Entry {
        Entry {
            node_id: node.into(),
            shard_id: shard.map(str::to_string),
            instance: format!("other:{node}"),
            host: "other-host".into(),
            pid: 1,
            heartbeat_ms,
            released: false,
            flush_seq: 41,
        }
    }

    #[test]
    fn first_registration_and_restart_continue_the_sequence() {
        let c = claim("wso2-si-1", Some("wso2-si-1"));
        assert_eq!(decide(&c, &[], 1_000_000).unwrap(), 0);
        let mut released = entry("wso2-si-1", Some("wso2-si-1"), 999_000);
        released.released = true;
        assert_eq!(decide(&c, &[released], 1_000_000).unwrap(), 41);
        // Not released, but silent for longer than the lease: presumed dead.
        let stale = entry("wso2-si-1", Some("wso2-si-1"), 1_000_000 - LEASE_MS - 1);
        assert_eq!(decide(&c, &[stale], 1_000_000).unwrap(), 41);
    }

    #[test]
    fn a_changed_shard_id_is_refused_and_names_the_old_one() {
        let c = claim("wso2-si-1", Some("shard-b"));
        let mut old = entry("wso2-si-1", Some("shard-a"), 0);
        old.released = true;
        let e = decide(&c, &[old], 1_000_000).unwrap_err().to_string();
        assert!(e.contains("used shard id `shard-a` before") && e.contains("`shard-b`"), "{e}");
        assert!(!Error::Shard(e).is_retryable());
    }

    #[test]
    fn a_second_live_holder_of_a_shard_or_node_id_is_refused() {
        let now = 1_000_000;
        let c = claim("wso2-si-2", Some("wso2-si-1"));
        let e = decide(&c, &[entry("wso2-si-1", Some("wso2-si-1"), now - 1_000)], now).unwrap_err().to_string();
        assert!(e.contains("shard id `wso2-si-1` is held by a live node: `wso2-si-1` on host other-host"), "{e}");
        let same_node = claim("wso2-si-1", Some("wso2-si-1"));
        let e = decide(&same_node, &[entry("wso2-si-1", Some("wso2-si-1"), now - 1_000)], now).unwrap_err();
        assert!(e.to_string().contains("node id `wso2-si-1` is held"), "{e}");
        // Other shards do not matter, nor does an unpartitioned claim's missing shard.
        assert_eq!(decide(&c, &[entry("n3", Some("s3"), now)], now).unwrap(), 0);
        assert_eq!(decide(&claim("n4", None), &[entry("n3", None, now)], now).unwrap(), 0);
    }

    #[test]
    fn a_dead_process_on_this_host_does_not_hold_its_shard() {
        let now = 1_000_000;
        let c = Claim::new(Some("n1"), Some("s1"));
        let mut dead = entry("n1", Some("s1"), now);
        dead.host = c.host.clone();
        dead.pid = i64::from(u32::MAX) + 7; // no such process
        assert_eq!(decide(&c, std::slice::from_ref(&dead), now).unwrap(), 41);
        dead.pid = i64::from(std::process::id()); // alive: this test
        assert!(decide(&c, &[dead], now).is_err());
    }

    #[test]
    fn instances_differ() {
        let a = Claim::new(Some("n"), None);
        let b = Claim::new(Some("n"), None);
        assert_ne!(a.instance, b.instance);
        assert!(Claim::new(None, None).node_id.starts_with("unnamed:"));
    }
}
