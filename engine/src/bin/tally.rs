//! `tally`: check an app, ingest events as one node, query the merged aggregates.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status of an ingest that kept every good event but rejected some.
const EXIT_REJECTED: u8 = 3;
/// Rejected lines printed one by one before only counting.
const MAX_REJECTIONS_SHOWN: u64 = 100;

#[derive(Parser)]
#[command(
    name = "tally",
    version,
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
        #[arg(long)]
        app: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Store address; overrides @store and the node file (sqlite:PATH, postgres://…).
        #[arg(long)]
        store: Option<String>,
        /// Files of events, one JSON object a line; `-` reads standard input.
        #[arg(required = true)]
        events: Vec<PathBuf>,
    },
    /// Run one retrieval query over every shard in the store.
    Query {
        #[arg(long)]
        app: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        store: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// e.g. from TradeAggregation within "2024-03-15 **:**:**" per "hours" select symbol, total
        query: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
    Csv,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(app: &Path, config: Option<&Path>) -> anyhow::Result<(tally::config::NodeConfig, tally::plan::AppPlan)> {
    let loaded = tally::command::load(app, config)?;
    for w in &loaded.1.warnings {
        eprintln!("warning: {}: {w}", app.display());
    }
    Ok(loaded)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check { app, config } => {
            let (_, plan) = load(&app, config.as_deref())?;
            let names: Vec<&str> = plan.aggregations.iter().map(|a| a.name.as_str()).collect();
            eprintln!(
                "ok: {} is valid ({} stream(s); aggregation(s): {})",
                app.display(),
                plan.streams.len(),
                names.join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Ingest { app, config, store, events } => {
            let (cfg, plan) = load(&app, config.as_deref())?;
            let mut shown = 0u64;
            let mut on_reject = |path: &Path, r: tally::ingest::Rejection| {
                shown += 1;
                if shown <= MAX_REJECTIONS_SHOWN {
                    eprintln!("rejected: {}: {r}", path.display());
                }
            };
            let mut on_retry = |e: &tally::Error, wait: std::time::Duration| {
                eprintln!(
                    "store not available ({e}); keeping every buffered partial and retrying in {:.1}s",
                    wait.as_secs_f64()
                );
            };
            let report = tally::command::ingest(plan, &cfg, store.as_deref(), &events, &mut on_reject, &mut on_retry)
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
        Command::Query { app, config, store, format, query } => {
            let (cfg, plan) = load(&app, config.as_deref())?;
            let result = tally::command::query(&plan, &cfg, store.as_deref(), &query)?;
            let text = match format {
                Format::Json => tally::query::format::json(&result) + "\n",
                Format::Csv => tally::query::format::csv(&result),
                Format::Table => tally::query::format::table(&result),
            };
            std::io::stdout().lock().write_all(text.as_bytes()).context("cannot write the answer")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
