//! Tally: an active-active streaming aggregation engine.
pub mod aggregate;
pub mod config;
pub mod error;
pub mod ingest;
pub mod lang;
pub mod node;
pub mod query;
pub mod server;
pub mod store;
pub mod time;

pub use error::{Error, Result};
