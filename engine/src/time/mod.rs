//! Time: the aggregation durations, which bucket of a duration an instant falls in (in the
//! aggregation's time zone), time-stamp strings, and the wall clock.
//!
//! Depends on nothing else in the engine.

pub mod bucket;
pub mod clock;
pub mod granularity;
pub mod timestamp;
