//! How a connection to a PostgreSQL or MySQL server notices that the server's host is gone.
//!
//! A host that crashes, or drops off the network, sends nothing: no FIN, no RST. A
//! connection waiting for an answer then waits for ever, since without data of its own in
//! flight TCP has nothing to time out (Linux keeps an idle connection's keepalive off, and
//! at two hours when on). When every node's connections are waiting like that, the cluster
//! stops for good, even after the database is back: the flush, the heartbeat and the
//! producer takes all hang on sockets the new server never heard of.
//!
//! So every store connection probes its server after [`IDLE`] without traffic, and gives up
//! after [`PROBES`] unanswered probes [`INTERVAL`] apart, or when data it sent stays
//! unacknowledged for [`USER_TIMEOUT`]. A server that is merely slow (a long merge, a lock
//! wait) answers the probes from its kernel, so a long statement is never cut off; a host
//! that restarted answers with a reset at the first probe. The operation fails with a
//! retryable error, and the flush's retry reconnects. Detection stays well within the
//! 30-second lease (docs/delivery.md), so a node whose store came back does not lose its
//! shard to another node meanwhile.

use std::time::Duration;

/// Quiet time before the first probe.
pub const IDLE: Duration = Duration::from_secs(10);
/// Time between probes.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// Unanswered probes before the connection is given up: after `IDLE + PROBES × INTERVAL`.
pub const PROBES: u32 = 3;
/// Longest time data sent may stay unacknowledged (TCP_USER_TIMEOUT; it also bounds the
/// probes above, so it is no shorter than they take).
pub const USER_TIMEOUT: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restarted_host_is_noticed_well_within_the_lease() {
        assert!(IDLE + INTERVAL * PROBES <= USER_TIMEOUT, "TCP_USER_TIMEOUT would cut the probes short");
        let lease = Duration::from_millis(crate::store::registry::LEASE_MS as u64);
        // The reset comes at the first probe; the heartbeat then has two thirds of the
        // lease left to land on the new connection.
        assert!(IDLE * 3 <= lease);
    }
}
