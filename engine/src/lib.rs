//! Tally: an active-active streaming aggregation engine.
pub mod bucket;
pub mod duration;
pub mod error;
pub mod timestamp;
pub mod types;

pub use error::{Error, Result};
