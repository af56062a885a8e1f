//! Tally: an active-active streaming aggregation engine.
pub mod accumulator;
pub mod backoff;
pub mod bucket;
pub mod command;
pub mod config;
pub mod duration;
pub mod error;
pub mod expr;
pub mod flush;
pub mod ingest;
pub mod intern;
pub mod key;
pub mod node;
pub mod partial;
pub mod plan;
pub mod query;
pub mod retention;
pub mod rollup;
pub mod router;
pub mod schema;
pub mod store;
pub mod syntax;
pub mod timestamp;
pub mod types;
pub mod wire;
pub mod worker;

pub use error::{Error, Result};
