//! Tally: an active-active streaming aggregation engine.
pub mod accumulator;
pub mod bucket;
pub mod config;
pub mod duration;
pub mod error;
pub mod expr;
pub mod intern;
pub mod key;
pub mod partial;
pub mod plan;
pub mod syntax;
pub mod timestamp;
pub mod types;
pub mod wire;

pub use error::{Error, Result};
