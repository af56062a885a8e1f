//! The languages: a Siddhi app (streams and aggregations) and a retrieval query, from text
//! to a checked plan. Attribute types and values, the parser, typed expressions.
//!
//! Depends on `time` (durations, zones) and `config` (the node's partitioning and zone).

pub(crate) mod expr;
pub mod plan;
pub(crate) mod syntax;
pub mod types;
