//! Tally: an active-active streaming aggregation engine.
//!
//! Several nodes take events, keep partial aggregates per time bucket (seconds up to years)
//! and write them, tagged with their shard id, into one shared store; any node answers
//! queries that merge the shards.
//!
//! # Layout: one folder per stage
//!
//! Dependencies flow down this list and never up: a module uses only those above it.
//!
//! | module | stage |
//! |---|---|
//! | [`error`] | the one error type; each error says whether a retry can help |
//! | [`buffer`] | large buffers reused from flush to flush, grown without copying |
//! | [`time`] | durations ([`time::granularity`]), buckets in a zone, time stamps, the clock |
//! | [`config`] | the node file: SI's `deployment.yaml` sections plus `tally:` |
//! | [`lang`] | the app and query languages, from text to a checked [`lang::plan::AppPlan`] |
//! | [`ingest`] | what comes in: the binary batch encoding, JSON events, event checks, group keys |
//! | [`aggregate`] | the worker threads: per-event accumulators, partials with one `merge`, roll-up |
//! | [`store`] | where partials of every node meet: tables, SQL, shard registry, SQLite, PostgreSQL |
//! | [`node`] | one node: workers, the router that feeds them, flushes, heartbeat, retention |
//! | [`query`] | retrieval queries over every shard's rows |
//! | [`server`] | `tally serve`: binary ingest acknowledged after commit, HTTP, metrics |
//! | [`fuzz`] | what the fuzz targets run (fuzz/, scripts/fuzz.sh), replayed by `cargo test` |
//!
//! # The path of one event
//!
//! 1. It arrives in a binary BATCH frame (`server::connection`, decoded in place by
//!    [`ingest::wire::BatchView`]) or as JSON (`ingest::json`, from `server::http` or
//!    [`node::feed`]), and its time stamp is checked (`ingest::check`).
//! 2. The connection's [`node::Router`] appends it to the batch of the worker that owns its
//!    group (a hash of the stream's route key, `ingest::key`) and sends full batches over a
//!    bounded channel ([`aggregate::message::Msg`]).
//! 3. That worker ([`aggregate::worker::Worker`]) reads the event from the batch's columns
//!    and updates the partial of (group, finest bucket) in its accumulator
//!    ([`aggregate::accumulator`]): no lock, no allocation, no formatting.
//! 4. At a flush, every worker swaps its state for an empty one and hands it over
//!    ([`aggregate::message::Handover`]); the flusher (`node::flush`) turns the states into
//!    partials, merges them and rolls them up (`aggregate::rollup`) into the durations
//!    whose roll-up mark they are older than (`node::marks`, docs/rollup.md): live events
//!    go into one journal record per flush ([`store::journal`]); a second is written from
//!    the node's memory of its journal, and a coarse bucket rolled up from the finer rows,
//!    when it has closed.
//! 5. The rows go to each store in one transaction that also records the flush's number in
//!    the node's registry row ([`store::Writer::write`]): applied once, fenced against a
//!    replaced process. Then, and only then, the batch is acknowledged.
//! 6. A query ([`query`]) reads the rows of every shard ([`store::Reader::scan`]), and the
//!    finer rows of buckets not yet rolled up and the journal, and merges them with the same `merge`: node 1
//!    counted 30, node 2 counted 40, the query says 70.
//!
//! # Threads: who owns which
//!
//! Every thread is named, and joined through one helper (`node::background::join`) so
//! that a panic is reported, never taken for a clean end.
//!
//! | thread | started by | owns | reads | writes | stops when |
//! |---|---|---|---|---|---|
//! | `tally-worker-N` (one per core, `tally.workers`) | [`node::Node::start`] | the accumulators of its share of the groups | its bounded channel: batches, flush requests | a `Handover` to the flusher | `Msg::Stop`, after its queue ([`node::Node::stop_workers`]) |
//! | `tally-rollup-N` (a pool) | the flusher | nothing between flushes | the handed-over states | rolled-up partials | the node is dropped |
//! | `tally-store-N` (one per store, during an overlapped flush) | [`node::Node::flush_at`] (scoped to the call) | the store's connection and the flush it writes | the prepared flush | one transaction | the write ends; the call joins it before it returns |
//! | `tally-heartbeat` | [`node::Node::start`] | its own store connections | the node's claims | `HEARTBEAT_MS` of its registry rows | [`node::Node::release`] |
//! | `tally-purge` | [`server::Server::start`] | its own store connections | the retention targets | deletes of its shard's expired rows | the flush thread stops it at shutdown |
//! | `tally-flush` | [`server::Server::start`] | the [`node::Node`] | the interval, wake-ups of waiting acks (group commit), `stopping` | flushes; the committed generation (condvar and watch) | after the last flush ([`server::Server::shutdown`]) |
//! | `tally-accept` | [`server::Server::start`] | the listener | new connections | a reader and an ack thread per connection | `stopping` |
//! | `tally-conn-N` | `tally-accept` | its socket's read side, a [`node::Router`] | frames | batches to the workers; acks to queue | end of stream (shutdown shuts the read side) |
//! | `tally-ack-N` | `tally-accept` | its socket's write side | queued acks, the committed generation | ACK and ERROR frames | its reader ended and every ack is answered |
//! | `tally-http-N` (a tokio runtime, one per core, at least 2) | [`server::Server::start`] | the HTTP listeners (`tally.http`, the app's http sources, the store query API) and a pool of [`node::Router`]s | HTTP requests | events to the workers, a wake-up of the flush thread; answers once committed (a watch channel) | `Http::stop` at shutdown: accept loops end, requests under way get a second |
//!
//! Outside a server (`tally ingest`, an embedding program) the caller's thread routes and
//! flushes. Shutdown order, everywhere: stop accepting, drain (the workers finish their
//! queues), flush (retried while the store is down, for `tally.store_wait`), acknowledge,
//! join.
pub mod aggregate;
pub mod buffer;
pub mod config;
pub mod error;
pub mod fuzz;
pub mod ingest;
pub mod lang;
pub mod node;
pub mod query;
pub mod server;
pub mod store;
pub mod time;

pub use error::{Error, Result};
