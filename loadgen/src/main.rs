//! `tally-loadgen`: drives Tally nodes with a deterministic workload and checks that the
//! merged totals are exact.
//!
//! This first version drives nodes through `tally ingest` processes (one per node, all at
//! once, one shared store); the node server and its binary protocol come with `tally serve`.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use loadgen::{Workload, expected_totals, find_tally};
use std::process::{Command, Stdio};
use std::time::Instant;

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
        /// Keep the working directory (app, node files, events, store) and print its path.
        #[arg(long)]
        keep: bool,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Demo { nodes, events, symbols, store, keep } => demo(nodes, events, symbols, store, keep),
    }
}

fn demo(nodes: usize, events: u64, symbols: u32, store: Option<String>, keep: bool) -> anyhow::Result<()> {
    if nodes == 0 || events == 0 || symbols == 0 {
        bail!("--nodes, --events and --symbols must be at least 1");
    }
    let tally = find_tally().context("cannot find the tally binary")?;
    let dir = tempfile::Builder::new().prefix("tally-demo-").tempdir()?;
    let work = dir.path().to_path_buf();
    let store = store.unwrap_or_else(|| format!("sqlite:{}", work.join("store.db").display()));
    let workload = Workload { events, symbols, seed: 42, start_ms: 1_710_460_800_000, step_ms: 122_000 };
    eprintln!(
        "demo: {nodes} nodes, {events} events of {symbols} symbols over {:.1} days, round robin, store {store}",
        (events * workload.step_ms) as f64 / 86_400_000.0
    );
    std::fs::write(work.join("app.siddhi"), loadgen::APP)?;
    let mut files = Vec::new();
    for n in 0..nodes {
        let id = format!("node-{}", n + 1);
        let config = work.join(format!("{id}.yaml"));
        std::fs::write(
            &config,
            format!("wso2.carbon:\n  id: {id}\nsiddhi:\n  properties:\n    partitionById: true\n    shardId: {id}\n"),
        )?;
        let events_path = work.join(format!("{id}.jsonl"));
        workload.write_node_events(&events_path, n, nodes)?;
        files.push((id, config, events_path));
    }
    let started = Instant::now();
    let children = files
        .iter()
        .map(|(id, config, events_path)| {
            Command::new(&tally)
                .args(["ingest", "--app"])
                .arg(work.join("app.siddhi"))
                .arg("--config")
                .arg(config)
                .args(["--store", &store])
                .arg(events_path)
                .stderr(Stdio::piped())
                .spawn()
                .with_context(|| format!("cannot start {} for {id}", tally.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    for ((id, ..), child) in files.iter().zip(children) {
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("node {id} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
    }
    let elapsed = started.elapsed();
    let expected = expected_totals(&workload);
    let mut mismatches = 0;
    let mut rows = Vec::new();
    for per in ["seconds", "minutes", "hours", "days", "months", "years"] {
        let q = format!(
            "from TradeAggregation within 0L, 4102444800000L per '{per}' select symbol, sum(total) as total, sum(trades) as trades group by symbol"
        );
        let out = Command::new(&tally)
            .args(["query", "--app"])
            .arg(work.join("app.siddhi"))
            .arg("--config")
            .arg(&files[0].1)
            .args(["--store", &store, "--format", "json", &q])
            .output()?;
        if !out.status.success() {
            bail!("query per {per} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let mut got = std::collections::BTreeMap::new();
        for r in answer["records"].as_array().into_iter().flatten() {
            got.insert(
                r[0].as_str().unwrap_or("").to_string(),
                (r[1].as_i64().unwrap_or(-1), r[2].as_i64().unwrap_or(-1)),
            );
        }
        let ok = got == expected;
        if !ok {
            mismatches += 1;
            for (sym, want) in &expected {
                if got.get(sym) != Some(want) {
                    eprintln!("MISMATCH per {per}: {sym}: expected (total, trades) {want:?}, got {:?}", got.get(sym));
                }
            }
        }
        rows.push((per, got.values().map(|v| v.0).sum::<i64>(), got.values().map(|v| v.1).sum::<i64>(), ok));
    }
    println!("{:<8} | {:>14} | {:>10} | verified", "per", "total quantity", "trades");
    println!("{}", "-".repeat(48));
    for (per, total, trades, ok) in &rows {
        println!("{per:<8} | {total:>14} | {trades:>10} | {}", if *ok { "yes" } else { "NO" });
    }
    println!(
        "\n{nodes} nodes ingested {events} events in {:.2} s ({:.0} events/s through `tally ingest`, JSON lines, including start-up and the final flush)",
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64()
    );
    if keep {
        let kept = dir.keep();
        println!("kept {}", kept.display());
    }
    if mismatches > 0 {
        bail!("{mismatches} duration(s) did not add up");
    }
    println!("verified: every duration's merged totals equal the generated events'");
    Ok(())
}
