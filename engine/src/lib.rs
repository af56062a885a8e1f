//! Tally: an active-active streaming aggregation engine.
pub mod bucket;
pub mod config;
pub mod duration;
pub mod error;
pub mod expr;
pub mod plan;
pub mod syntax;
pub mod timestamp;
pub mod types;

pub use error::{Error, Result};
