//! Aggregation on the worker threads: the per-event accumulator, the worker loop and its
//! messages, the owned partial aggregates with their one `merge`, and the roll-up from the
//! finest duration into every coarser one.

pub mod accumulator;
pub(crate) mod by_bucket;
pub mod intern;
pub mod message;
pub(crate) mod partial;
pub(crate) mod rollup;
pub mod worker;
