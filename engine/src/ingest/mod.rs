//! What comes into a node, before it is routed: the binary batch encoding (`wire`), JSON
//! events (`json`), SI's JSON request bodies read without a tree (`body`), the checks an event must pass (`check`) and the group-key encoding
//! (`key`). Plain functions over bytes and values; no threads, no state.

pub(crate) mod body;
pub(crate) mod check;
pub(crate) mod json;
pub(crate) mod key;
pub(crate) mod key_bytes;
pub mod wire;
