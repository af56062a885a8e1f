//! `tally-loadgen`: drives a Tally cluster round robin over the binary protocol and checks
//! that the merged totals are exact.
//!
//! `demo` (the README's first command), `run` (one workload, spawned nodes or `--targets`),
//! `sweep` (the same workload at several node counts, with a chart).

use clap::{Parser, Subcommand};
use loadgen::run::Load;
use std::path::PathBuf;
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "tally-loadgen", version, about = "Drive Tally nodes round robin and verify the merged totals")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The README demo: three nodes on the embedded SQLite store, verified.
    Demo {
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        #[arg(long, default_value_t = 300_000)]
        events: u64,
        #[arg(long, default_value_t = 20)]
        symbols: u32,
        /// Store address (default: a fresh SQLite file in a temporary directory).
        #[arg(long)]
        store: Option<String>,
        /// Keep the working directory (app, node files, store) and print its path.
        #[arg(long)]
        keep: bool,
    },
    /// One run: spawn N nodes (or attach to --targets), publish, verify, report.
    Run {
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        #[command(flatten)]
        load: Load,
        /// Running nodes' addresses (host:port,…) instead of spawning: binary ingest, or
        /// tally.http with --protocol http.
        #[arg(long, value_delimiter = ',')]
        targets: Vec<String>,
        /// Write the results JSON here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also run the baseline (raw rows by COPY into PostgreSQL, then GROUP BY) on the
        /// same events and report the ratio; needs --store postgres://….
        #[arg(long)]
        baseline: bool,
    },
    /// The same workload at each node count; a table, results JSON and an SVG chart.
    Sweep {
        /// Node counts, e.g. 1,2,4.
        #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
        nodes: Vec<usize>,
        #[command(flatten)]
        load: Load,
        /// Rounds of the whole sweep, interleaved (1, 2, 4, 1, 2, 4, …) so that a noisy
        /// neighbour hurts every node count alike; each point reports the medians of its rounds.
        #[arg(long, default_value_t = 1)]
        repeat: usize,
        /// Group-by key counts to sweep as well, e.g. 1000,100000,1000000 (default: just
        /// --symbols). Each is its own series: prepared once, its node counts interleaved
        /// over the rounds, its scaling against its own first node count.
        #[arg(long, value_delimiter = ',')]
        symbols_axis: Vec<u32>,
        /// Results JSON (the chart goes beside it, .svg).
        #[arg(long, default_value = "results/sweep.json")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let done = match Cli::parse().command {
        Cmd::Demo { nodes, events, symbols, store, keep } => loadgen::run::demo(nodes, events, symbols, store, keep),
        Cmd::Run { nodes, load, targets, out, baseline } => {
            loadgen::run::run_and_report(nodes, &load, &targets, out.as_deref(), baseline)
        }
        Cmd::Sweep { nodes, load, repeat, symbols_axis, out } => {
            loadgen::sweep::sweep(&nodes, &symbols_axis, &load, repeat, &out)
        }
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tally-loadgen: {e}");
            if e.is_retryable() {
                eprintln!("tally-loadgen: this may pass if run again (a node or the database was unreachable)");
            }
            ExitCode::FAILURE
        }
    }
}
