//! Producers (docs/delivery.md): which node process holds a version 2 client, and the
//! highest sequence number of its batches that is committed.
//!
//! One row per producer in `TALLY_PRODUCERS`. A node takes a producer when the client says
//! HELLO ([`decide`] over the row and its holder's registration), raises `MAX_SEQ` in each
//! flush transaction that holds the producer's batches, on the condition that it still
//! holds it (so a node that lost the producer while cut off cannot commit its copy of a
//! batch another node took), and releases it once the connection's batches are answered.

use crate::error::{Error, Result};
use crate::store::registry::{Claim, Entry, LEASE_MS, live};

/// The producers table.
pub const TABLE: &str = "TALLY_PRODUCERS";

/// A released producer unchanged this long is forgotten (the record stays bounded).
pub const FORGET_AFTER_MS: i64 = 7 * 24 * 3600 * 1000;

/// SQL of the producers table, with `?n` parameters (see
/// [`crate::store::registry::for_dialect`]).
pub mod statements {
    pub const CREATE: &str = "CREATE TABLE IF NOT EXISTS \"TALLY_PRODUCERS\" (\"PRODUCER\" TEXT NOT NULL PRIMARY KEY, \
        \"HOLDER\" TEXT, \"NODE_ID\" TEXT, \"MAX_SEQ\" BIGINT NOT NULL DEFAULT 0, \"UPDATED_MS\" BIGINT NOT NULL)";
    /// ?1 producer. Locks the row until the transaction ends on PostgreSQL.
    pub const SELECT: &str = "SELECT \"HOLDER\", \"MAX_SEQ\" FROM \"TALLY_PRODUCERS\" WHERE \"PRODUCER\" = ?1";
    /// ?1 instance: the holder's registration.
    pub const HOLDER_ENTRY: &str = "SELECT \"NODE_ID\", \"SHARD_ID\", \"INSTANCE\", \"HOST\", \"PID\", \
        \"HEARTBEAT_MS\", \"RELEASED\", \"FLUSH_SEQ\" FROM \"TALLY_SHARD_REGISTRY\" WHERE \"INSTANCE\" = ?1";
    /// ?1 producer, ?2 instance, ?3 node, ?4 now.
    pub const TAKE: &str = "INSERT INTO \"TALLY_PRODUCERS\" (\"PRODUCER\", \"HOLDER\", \"NODE_ID\", \"MAX_SEQ\", \
        \"UPDATED_MS\") VALUES (?1, ?2, ?3, 0, ?4) ON CONFLICT (\"PRODUCER\") DO UPDATE SET \"HOLDER\" = ?2, \
        \"NODE_ID\" = ?3, \"UPDATED_MS\" = ?4";
    /// ?1 producer, ?2 instance, ?3 sequence number, ?4 now. One row changed: still held.
    pub const RECORD: &str = "UPDATE \"TALLY_PRODUCERS\" SET \"MAX_SEQ\" = CASE WHEN \"MAX_SEQ\" < ?3 THEN ?3 \
        ELSE \"MAX_SEQ\" END, \"UPDATED_MS\" = ?4 WHERE \"PRODUCER\" = ?1 AND \"HOLDER\" = ?2";
    /// ?1 producer, ?2 instance, ?3 now.
    pub const RELEASE: &str = "UPDATE \"TALLY_PRODUCERS\" SET \"HOLDER\" = NULL, \"UPDATED_MS\" = ?3 \
        WHERE \"PRODUCER\" = ?1 AND \"HOLDER\" = ?2";
    /// ?1 cutoff.
    pub const FORGET: &str = "DELETE FROM \"TALLY_PRODUCERS\" WHERE \"HOLDER\" IS NULL AND \"UPDATED_MS\" < ?1";
}

/// A producer taken by this process: batches up to `max_seq` are committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    pub max_seq: i64,
}

/// Decides whether `me` may take `producer`, held by `holder` (its instance id, and its
/// registration when it has one). `Ok` to go ahead, or [`Error::ProducerHeld`].
pub fn decide(producer: &str, me: &Claim, holder: Option<(&str, Option<&Entry>)>, now_ms: i64) -> Result<()> {
    let Some((instance, entry)) = holder else { return Ok(()) };
    if instance == me.instance {
        return Ok(());
    }
    match entry {
        // No registration: the holder's row was removed (a generated node id that stopped).
        None => Ok(()),
        Some(e) if !live(e, now_ms, me) => Ok(()),
        Some(e) => Err(Error::ProducerHeld(format!(
            "producer `{producer}` is held by node `{}` (process {}), which may still commit batches it took from \
             it; retry in a second: the holder releases it once it has answered them, or loses it {} s after its \
             last heartbeat",
            e.node_id,
            e.instance,
            LEASE_MS / 1000
        ))),
    }
}

/// The error of a flush whose producer was taken by another process meanwhile.
pub fn lost(producer: &str, me: &Claim) -> Error {
    Error::Shard(format!(
        "node `{}` (this process, {}) lost producer `{producer}` to another node while its batches waited for \
         this flush: it was presumed dead after {} s without a heartbeat. The flush is rolled back so that no \
         batch is counted twice; this node stops, and its unacknowledged batches are counted where their \
         clients resent them. Restart it",
        me.node_id,
        me.instance,
        LEASE_MS / 1000
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(instance: &str, heartbeat_ms: i64, released: bool) -> Entry {
        Entry {
            node_id: "node-a".into(),
            shard_id: None,
            instance: instance.into(),
            host: "some-other-host".into(),
            pid: 1,
            heartbeat_ms,
            released,
            flush_seq: 0,
        }
    }

    #[test]
    fn a_producer_is_taken_when_free_own_or_its_holder_is_not_live() {
        let me = Claim::new(Some("node-b"), None);
        let now = 1_000_000;
        assert!(decide("p", &me, None, now).is_ok());
        assert!(decide("p", &me, Some((&me.instance, None)), now).is_ok());
        assert!(decide("p", &me, Some(("gone", None)), now).is_ok());
        let stale = entry("a", now - LEASE_MS - 1, false);
        assert!(decide("p", &me, Some(("a", Some(&stale))), now).is_ok());
        let released = entry("a", now, true);
        assert!(decide("p", &me, Some(("a", Some(&released))), now).is_ok());
        let live = entry("a", now - 10, false);
        let e = decide("p", &me, Some(("a", Some(&live))), now).unwrap_err();
        assert!(matches!(e, Error::ProducerHeld(_)) && e.is_retryable(), "{e}");
        assert!(e.to_string().contains("node `node-a`"), "{e}");
    }
}
