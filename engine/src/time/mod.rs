//! Time: the aggregation durations, which bucket of a duration an instant falls in (in the
//! aggregation's time zone), time-stamp strings, and the wall clock.
//!
//! Depends on nothing else in the engine.

pub mod bucket;
pub mod clock;
pub mod granularity;
pub mod timestamp;

/// A time zone or a time stamp that could not be read. The message says what was wrong and
/// what is accepted; the caller adds where it was (the node file's key, a query position).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadTime(pub String);
