//! `tally`: check an app, ingest events as one node, query the merged aggregates.

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tally::config::NodeConfig;
use tally::lang::plan::AppPlan;
use tally::node::retention::PurgeNotice;
use tally::server::{Notice, Server};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay`: its place in `mi_option_e` of mimalloc v3, which
/// libmimalloc-sys builds by default (the crate names no constant for it; a test below
/// checks that this option has the documented default).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// mimalloc's `mi_option_allow_thp` (v3: whether it asks for transparent huge pages), by
/// its place in `mi_option_e` as above; checked by the same test.
const MI_OPTION_ALLOW_THP: libmimalloc_sys::mi_option_t = 43;

/// How long memory the node freed stays committed before mimalloc returns it to the
/// system, in ms (mimalloc's default is 1 s). For speed: with many keys a flush allocates
/// and frees hundreds of MB (maps of the open seconds, row lists, journal records), and a
/// flush takes longer than a second. Returned after a second, that memory came back as
/// fresh pages the kernel zeroed: profiled with 1 M keys on PostgreSQL, 62% of the flush
/// thread. With this and the inline keys of 2d56065 that shape took 19.0-19.9 node CPU
/// seconds instead of 21.7-23.7, peak RSS +0.2-0.3 GiB (results/issue12-2d56065).
/// `MIMALLOC_PURGE_DELAY` in the environment still decides when it is set.
const PURGE_DELAY_MS: std::ffi::c_long = 10_000;

// The unsafe calls of the workspace: mimalloc's options and prctl have no safe binding.
#[allow(unsafe_code)]
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a plain integer option; mimalloc reads options atomically.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) }
    }
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // No transparent huge pages for this process: what mimalloc itself does when
        // `MIMALLOC_ALLOW_THP=0` (the option, and PR_SET_THP_DISABLE, which also covers the
        // memory it asked huge pages for before `main`). For speed: mimalloc commits and
        // gives back memory in parts of 64 KiB and up, but on a machine whose THP mode is
        // `madvise` each first touch of a fresh 2 MiB range of its arenas faulted in, and
        // the kernel zeroed, a whole huge page. Profiled on the sparse stream (PostgreSQL),
        // that zeroing was 56% of the node's samples from only ~18 K page faults in the
        // run; without huge pages the node took 7.6-9.5 CPU seconds instead of 17.1-20.9
        // for the same 10 M events (results/issue12-thp-sparse). `MIMALLOC_ALLOW_THP` in
        // the environment decides when it is set. A failed prctl (an old kernel) only
        // leaves huge pages on.
        // SAFETY: sets a plain integer option (as above); prctl with these arguments only
        // sets a flag of this process and reads no memory.
        unsafe {
            libmimalloc_sys::mi_option_set(MI_OPTION_ALLOW_THP, 0);
            libc::prctl(
                libc::PR_SET_THP_DISABLE,
                1 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            );
        }
    }
}

/// Exit status of an ingest that kept every good event but rejected some.
const EXIT_REJECTED: u8 = 3;
/// `tally serve` was fenced off: another process took its registration or a producer.
const EXIT_FENCED: u8 = 4;
/// Rejected lines printed one by one before only counting.
const MAX_REJECTIONS_SHOWN: u64 = 100;

#[derive(Parser)]
#[command(
    name = "tally",
    // The commit it was built from (cli/build.rs): tally-loadgen reports it.
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("TALLY_BUILD_SHA"), ")"),
    about = "Active-active streaming aggregation: Siddhi incremental aggregation, exact merged totals across nodes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check an app and a node configuration without touching any store.
    Check {
        #[arg(long)]
        app: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run the app as one node over JSON-lines events, then flush everything to the store.
    Ingest {
        #[command(flatten)]
        node: NodeArgs,
        /// Files of events, one JSON object a line; `-` reads standard input.
        #[arg(required = true)]
        events: Vec<PathBuf>,
    },
    /// Run one retrieval query over every shard in the store.
    Query {
        #[command(flatten)]
        node: NodeArgs,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// e.g. from TradeAggregation within "2024-03-15 **:**:**" per "hours" select symbol, total
        query: String,
    },
    /// Run the app as a node server: binary ingest over TCP, acknowledged after commit,
    /// flushes on a tick, retention on schedule; until SIGINT or SIGTERM.
    Serve {
        #[command(flatten)]
        node: NodeArgs,
        /// Binary ingest address (overrides tally.ingest); port 0 picks a free port.
        #[arg(long)]
        ingest: Option<String>,
        /// HTTP address (overrides tally.http); port 0 picks a free port.
        #[arg(long)]
        http: Option<String>,
    },
    /// Delete buckets older than each duration's retention (@purge), once, for this node's
    /// shard. A running node does this on its schedule; `ingest` never purges.
    Purge {
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Give existing tables of partitioned aggregations the SHARD_ID column (filled with this
    /// node's shard id) and the primary key that includes it, in one transaction.
    Migrate {
        #[command(flatten)]
        node: NodeArgs,
    },
}

/// What every command that runs as a node takes: the app, the node file, the store.
#[derive(Args)]
struct NodeArgs {
    /// The Siddhi app (.siddhi).
    #[arg(long)]
    app: PathBuf,
    /// The node file (SI deployment.yaml sections, `tally:`); without it, every default.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Store address; overrides @store and the node file (sqlite:PATH, postgres://…).
    #[arg(long)]
    store: Option<String>,
}

impl NodeArgs {
    /// The node file and the checked app, warnings printed.
    fn load(&self) -> anyhow::Result<(NodeConfig, AppPlan)> {
        load(&self.app, self.config.as_deref())
    }

    fn store(&self) -> Option<&str> {
        self.store.as_deref()
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
    Csv,
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Reads the node file (every default without one), checks the app against it, and prints
/// the app's warnings.
fn load(app: &Path, config: Option<&Path>) -> anyhow::Result<(NodeConfig, AppPlan)> {
    let cfg = match config {
        Some(p) => NodeConfig::load(p)?,
        None => NodeConfig::default(),
    };
    let plan = tally::lang::plan::load(app, &cfg)?;
    for w in &plan.warnings {
        eprintln!("warning: {}: {w}", app.display());
    }
    Ok((cfg, plan))
}

/// The log line of a node waiting for its store.
fn on_retry(e: &tally::Error, wait: Duration) {
    eprintln!("store not available ({e}); keeping every buffered partial and retrying in {:.1}s", wait.as_secs_f64());
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check { app, config } => check(&app, config.as_deref()),
        Command::Ingest { node, events } => ingest(&node, &events),
        Command::Query { node, format, query: text } => query(&node, format, &text),
        Command::Serve { node, ingest, http } => serve(&node, ingest.as_deref(), http.as_deref()),
        Command::Purge { node } => purge(&node),
        Command::Migrate { node } => migrate(&node),
    }
}

fn check(app: &Path, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (_, plan) = load(app, config)?;
    let names: Vec<&str> = plan.aggregations.iter().map(|a| a.name.as_str()).collect();
    eprintln!(
        "ok: {} is valid ({} stream(s); aggregation(s): {})",
        app.display(),
        plan.streams.len(),
        names.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

fn ingest(node: &NodeArgs, events: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let (cfg, plan) = node.load()?;
    let mut shown = 0u64;
    let mut on_reject = |path: &Path, r: tally::node::feed::Rejection| {
        shown += 1;
        if shown <= MAX_REJECTIONS_SHOWN {
            eprintln!("rejected: {}: {r}", path.display());
        }
    };
    let report = tally::node::feed::ingest(plan, &cfg, node.store(), events, &mut on_reject, &mut on_retry)
        .context("ingest failed")?;
    if report.rejected > MAX_REJECTIONS_SHOWN {
        eprintln!("rejected: … and {} more", report.rejected - MAX_REJECTIONS_SHOWN);
    }
    eprintln!(
        "ingested {} event(s), rejected {}, wrote {} row(s) in {} flush(es)",
        report.accepted, report.rejected, report.rows_written, report.flushes
    );
    Ok(if report.rejected > 0 { ExitCode::from(EXIT_REJECTED) } else { ExitCode::SUCCESS })
}

fn query(node: &NodeArgs, format: Format, text: &str) -> anyhow::Result<ExitCode> {
    let (cfg, plan) = node.load()?;
    let result = tally::query::run_on_store(&plan, &cfg, node.store(), text)?;
    let out = match format {
        Format::Json => tally::query::format::json(&result) + "\n",
        Format::Csv => tally::query::format::csv(&result),
        Format::Table => tally::query::format::table(&result),
    };
    std::io::stdout().lock().write_all(out.as_bytes()).context("cannot write the answer")?;
    Ok(ExitCode::SUCCESS)
}

/// The log line of each thing a running server reports.
fn log_notice(n: Notice) {
    match n {
        Notice::FlushFailed(e) => eprintln!("flush failed ({e}); its rows are kept and retried at the next tick"),
        Notice::LastFlushWaiting { message, retry_in } => {
            eprintln!("last flush: store not available ({message}); retrying in {:.1}s", retry_in.as_secs_f64())
        }
        Notice::Purge(PurgeNotice::Purged(done)) => {
            for p in done.iter().filter(|p| p.rows > 0) {
                eprintln!("purged {} row(s) from {}", p.rows, p.table);
            }
        }
        Notice::Purge(PurgeNotice::Failed { error, retry_in }) => {
            eprintln!("purge failed ({error}); retrying in {:.0}s", retry_in.as_secs_f64())
        }
        Notice::Connection { peer, message } => eprintln!("connection {peer}: {message}"),
        Notice::Accept(message) => eprintln!("cannot accept a connection ({message}); still listening"),
        Notice::Http(message) => eprintln!("http: {message}"),
        Notice::Thread(e) => eprintln!("{e}"),
        Notice::Producer(message) | Notice::Heartbeat(message) => eprintln!("{message}"),
        Notice::Fenced(e) => {
            // Nothing this process holds may be committed any more: exit now, without the
            // last flush, so that a supervisor restarts it with a fresh registration.
            eprintln!("{e}");
            std::process::exit(EXIT_FENCED.into());
        }
    }
}

fn serve(node: &NodeArgs, ingest: Option<&str>, http: Option<&str>) -> anyhow::Result<ExitCode> {
    let (cfg, plan) = node.load()?;
    // Registered before anything starts, so a signal during start-up is not lost.
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
        .context("cannot handle SIGINT/SIGTERM")?;
    let server = Server::start(Arc::new(plan), &cfg, node.store(), ingest, http, &mut on_retry, Arc::new(log_notice))?;
    println!("listening ingest={} http={}", server.ingest_addr(), server.http_addr());
    for l in server.listening().iter().skip(1) {
        println!("listening http={} for {}", l.addr, l.serves.join(", "));
    }
    std::io::stdout().flush().context("cannot write to stdout")?;
    if let Some(sig) = signals.forever().next() {
        eprintln!("signal {sig}: stopping (no new connections or batches; the last flush, then the acks)");
    }
    server.shutdown().context("the last flush could not be committed")?;
    eprintln!("stopped");
    Ok(ExitCode::SUCCESS)
}

fn purge(node: &NodeArgs) -> anyhow::Result<ExitCode> {
    let (cfg, plan) = node.load()?;
    let purged = tally::node::retention::purge_once(&plan, &cfg, node.store(), &mut on_retry)?;
    if purged.is_empty() {
        eprintln!("nothing to purge: every duration keeps its rows for ever (or @purge(enable='false'))");
    }
    for p in purged {
        let shard = p.shard.map(|s| format!(" of shard {s}")).unwrap_or_default();
        println!(
            "purged {} row(s){shard} from {} (buckets before {})",
            p.rows,
            p.table,
            tally::time::timestamp::format_utc(p.before_ms)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn migrate(node: &NodeArgs) -> anyhow::Result<ExitCode> {
    let (cfg, plan) = node.load()?;
    let migrated = tally::node::migrate::migrate(&plan, &cfg, node.store(), &mut on_retry)?;
    for (store, tables, shard) in &migrated {
        if tables.is_empty() {
            println!("{store}: nothing to migrate (every table exists with SHARD_ID, or not yet)");
        } else {
            println!("{store}: migrated {} (SHARD_ID = {shard})", tables.join(", "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)]
    fn the_allocator_options_set_are_the_purge_delay_and_huge_pages() {
        // SAFETY: reads and sets plain integer options; prctl(PR_GET_THP_DISABLE) only
        // reads a flag of this process.
        unsafe {
            if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() && std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
                // mimalloc v3 documents 1000 ms and 1 as the defaults: other options have
                // other ones.
                assert_eq!(libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY), 1000);
                assert_eq!(libmimalloc_sys::mi_option_get(MI_OPTION_ALLOW_THP), 1);
                tune_allocator();
                assert_eq!(libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY), PURGE_DELAY_MS);
                assert_eq!(libmimalloc_sys::mi_option_get(MI_OPTION_ALLOW_THP), 0);
                assert_eq!(libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0), 1, "THP disabled for the process");
            }
        }
    }
}
