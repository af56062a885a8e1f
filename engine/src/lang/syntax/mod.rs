//! The app and query language: tokens, syntax tree and parser.
pub mod ast;
mod expression;
pub mod lexer;
pub mod parser;

pub use parser::{parse_app, parse_query};
