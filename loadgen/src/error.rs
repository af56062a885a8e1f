//! The one error type of the `loadgen` library. Each error says what went wrong and where,
//! and whether trying the same thing again can help ([`Error::is_retryable`]): a node that
//! went away can come back; wrong totals, bad options or a missing binary will not mend.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Options that cannot make a run (no events, a baseline without PostgreSQL, …).
    #[error("{0}")]
    Usage(String),
    /// A file, directory, process or cgroup the run needs: what was being done, and why not.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A node that did not start, or did not stop cleanly; its own words are in the message.
    #[error("{0}")]
    Node(String),
    /// Batches left unacknowledged: refused for good, the nodes gone, or the run stalled.
    #[error("{message}")]
    Publish { message: String, retryable: bool },
    /// The verification's query failed or answered something unreadable.
    #[error("{0}")]
    Query(String),
    /// The merged totals differ from the events': what the tool exists to catch.
    #[error("{0}")]
    Mismatch(String),
    /// From Tally's library: the binary protocol's client, or PostgreSQL (the baseline) with
    /// its SQLSTATE.
    #[error(transparent)]
    Tally(#[from] tally::Error),
    /// The sweep's chart could not be drawn.
    #[error("cannot draw the chart {}: {message}", path.display())]
    Chart { path: PathBuf, message: String },
}

impl Error {
    /// Whether running the same thing again may succeed without changing anything.
    pub fn is_retryable(&self) -> bool {
        use std::io::ErrorKind::{BrokenPipe, ConnectionRefused, ConnectionReset, Interrupted, TimedOut};
        match self {
            Error::Publish { retryable, .. } => *retryable,
            Error::Tally(e) => e.is_retryable(),
            Error::Io { source, .. } => {
                matches!(source.kind(), Interrupted | TimedOut | ConnectionRefused | ConnectionReset | BrokenPipe)
            }
            Error::Usage(_) | Error::Node(_) | Error::Query(_) | Error::Mismatch(_) | Error::Chart { .. } => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Names what an I/O call was doing when it failed.
pub(crate) trait IoContext<T> {
    fn doing(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn doing(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io { what: what(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_says_whether_a_retry_can_help() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(Error::Io { what: "x".into(), source: refused }.is_retryable());
        let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
        let e = Error::Io { what: "cannot write results/x.json".into(), source: missing };
        assert!(!e.is_retryable());
        assert!(e.to_string().starts_with("cannot write results/x.json: "), "{e}");
        assert!(Error::Publish { message: "stalled".into(), retryable: true }.is_retryable());
        assert!(!Error::Mismatch("per hours …".into()).is_retryable());
        assert!(!Error::Usage("--events must be at least 1".into()).is_retryable());
    }
}
