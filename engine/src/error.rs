//! The one error type of the engine library.
//!
//! Every variant says whether trying the same thing again can help
//! ([`Error::is_retryable`]): a store that is down or busy can come back; a bad app, query,
//! config or event stays bad until a person changes it.

use std::fmt;

/// A problem found in a piece of source text (an app or a query), with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based line.
    pub line: u32,
    /// 1-based column, counted in characters.
    pub column: u32,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}: {}", self.line, self.column, self.message)
    }
}

/// All the problems found in one text; checking goes on after the first, so that a person
/// sees every error at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, line: u32, column: u32, message: impl Into<String>) {
        self.0.push(Diagnostic { line, column, message: message.into() });
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Why one event was refused: its values do not fit its stream, or its time stamp is not
/// usable. The message names the attribute and quotes the value; a caller that knows more
/// (the line, the event's index in a batch) says so with [`BadEvent::at`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BadEvent {
    pub message: String,
}

impl From<String> for BadEvent {
    fn from(message: String) -> BadEvent {
        BadEvent { message }
    }
}

impl From<&str> for BadEvent {
    fn from(message: &str) -> BadEvent {
        BadEvent { message: message.into() }
    }
}

impl BadEvent {
    pub fn new(message: impl Into<String>) -> BadEvent {
        BadEvent { message: message.into() }
    }

    /// The same refusal, naming event `index` of its batch or request.
    pub fn at(self, index: usize) -> BadEvent {
        BadEvent { message: format!("event {index}: {}", self.message) }
    }
}

/// Errors of the engine library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Siddhi app has errors; each names its line and column.
    #[error("the app {source_name} has {n} error(s):\n{diags}", n = .diags.len())]
    App { source_name: String, diags: Diagnostics },

    /// The retrieval query has errors; each names its line and column within the query.
    #[error("invalid query:\n{0}")]
    Query(Diagnostics),

    /// The node configuration (deployment.yaml) is wrong.
    #[error("configuration {source_name}: {message}")]
    Config { source_name: String, message: String },

    /// One event could not be taken (nothing of it was counted); the message names the
    /// attribute and quotes the value.
    #[error(transparent)]
    BadEvent(#[from] BadEvent),

    /// The store refused or failed. `code` is the SQLSTATE (PostgreSQL) or the SQLite
    /// result code name, when there is one.
    #[error("{backend} store: {message}{}", code_suffix(backend, code.as_deref()))]
    Store { backend: &'static str, code: Option<String>, message: String, retryable: bool },

    /// The store's tables do not fit the app, or the store address is wrong.
    #[error("{0}")]
    Schema(String),

    /// The shard registry refused this node (changed shard id, a live node holds it, or
    /// this process's registration was taken over).
    #[error("{0}")]
    Shard(String),

    /// A client broke the binary protocol (framing, HELLO, token); its connection was
    /// closed after an ERROR frame saying why.
    #[error("{0}")]
    Protocol(String),

    /// Reading or writing a file failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// Asked for something this version does not do yet.
    #[error("{0}")]
    Unsupported(String),

    /// Something the engine's own checks should have made impossible (a bug): the node
    /// stops committing, so that nothing it may not have counted is acknowledged.
    #[error("internal error (a bug in Tally; please report it with this message): {0}")]
    Internal(String),

    /// The node is stopping and takes no more work.
    #[error("the node is shutting down and takes no more events")]
    Closed,

    /// Another live node process holds this producer (docs/delivery.md): retry shortly.
    #[error("{0}")]
    ProducerHeld(String),

    /// A node answered a client's HELLO with an ERROR frame; `retryable` as the frame says
    /// (a node that cannot reach its store to take the producer answers busy, retryable).
    #[error("the node refused the connection: {message}")]
    Refused { message: String, retryable: bool },
}

impl Error {
    /// Whether the same request can succeed if it is simply tried again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Store { retryable, .. } | Error::Refused { retryable, .. } => *retryable,
            // A peer that refused or dropped the connection (a node restarting) can be
            // back a moment later; a missing file or a bad path will not.
            Error::Io { source, .. } => {
                use std::io::ErrorKind::*;
                matches!(
                    source.kind(),
                    Interrupted
                        | WouldBlock
                        | TimedOut
                        | ConnectionRefused
                        | ConnectionReset
                        | ConnectionAborted
                        | BrokenPipe
                        | NotConnected
                )
            }
            Error::Closed | Error::ProducerHeld(_) => true,
            Error::App { .. }
            | Error::Query(_)
            | Error::Config { .. }
            | Error::BadEvent(_)
            | Error::Schema(_)
            | Error::Shard(_)
            | Error::Unsupported(_)
            | Error::Protocol(_)
            | Error::Internal(_) => false,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io { context: context.into(), source }
    }

    pub(crate) fn config(source_name: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Config { source_name: source_name.into(), message: message.into() }
    }
}

/// ` (SQLSTATE 23505)` for PostgreSQL, ` (code DatabaseBusy)` for SQLite.
fn code_suffix(backend: &str, code: Option<&str>) -> String {
    match (backend, code) {
        (_, None) => String::new(),
        ("postgres" | "mysql", Some(c)) => format!(" (SQLSTATE {c})"),
        (_, Some(c)) => format!(" (code {c})"),
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostics_print_every_position() {
        let mut d = Diagnostics::default();
        d.push(1, 5, "expected `stream`");
        d.push(3, 1, "unknown function `median`");
        let e = Error::App { source_name: "app.siddhi".into(), diags: d };
        let text = e.to_string();
        assert!(text.contains("2 error(s)"), "{text}");
        assert!(text.contains("line 1, column 5: expected `stream`"), "{text}");
        assert!(text.contains("line 3, column 1: unknown function `median`"), "{text}");
        assert!(!e.is_retryable());
    }

    #[test]
    fn store_errors_carry_their_code_and_retry_flag() {
        let e = Error::Store {
            backend: "postgres",
            code: Some("40001".into()),
            message: "could not serialize access".into(),
            retryable: true,
        };
        assert_eq!(e.to_string(), "postgres store: could not serialize access (SQLSTATE 40001)");
        assert!(e.is_retryable());
    }

    #[test]
    fn a_refused_or_dropped_connection_is_worth_retrying_a_missing_file_is_not() {
        use std::io::ErrorKind::{BrokenPipe, ConnectionRefused, ConnectionReset, NotFound, PermissionDenied};
        for kind in [ConnectionRefused, ConnectionReset, BrokenPipe] {
            assert!(Error::io("cannot connect to the node", kind.into()).is_retryable(), "{kind:?}");
        }
        for kind in [NotFound, PermissionDenied] {
            assert!(!Error::io("cannot read app.siddhi", kind.into()).is_retryable(), "{kind:?}");
        }
    }
}
