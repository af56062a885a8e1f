//! `tally-loadgen`: drives Tally nodes with a deterministic workload and checks that the
//! merged totals are exact.
//!
//! The demo starts `tally serve` nodes on one shared store, publishes pre-encoded batches
//! round robin over the binary protocol (`tally::server::client`), counts a batch once its
//! node acknowledged it (after commit), stops the nodes with SIGTERM, and checks every
//! duration's merged totals against the generated events'.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use loadgen::{Workload, expected_totals, find_tally};
use std::process::{Command, Stdio};
use std::time::Instant;
use tally::server::client::Client;
use tally::server::protocol::Reply;
use tally::types::{AttrType, Value};
use tally::wire::BatchBuilder;

/// Events a batch.
const BATCH_EVENTS: usize = 4096;
/// Batches a connection keeps unanswered.
const WINDOW: usize = 64;

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
            format!(
                "wso2.carbon:\n  id: {id}\nsiddhi:\n  properties:\n    partitionById: true\n    shardId: {id}\ntally:\n  flush_interval: 200ms\n"
            ),
        )?;
        files.push((id, config));
    }
    // The nodes, each on free ports; each prints where it listens.
    let mut servers = Vec::new();
    for (id, config) in &files {
        let mut child = Command::new(&tally)
            .args(["serve", "--app"])
            .arg(work.join("app.siddhi"))
            .arg("--config")
            .arg(config)
            .args(["--store", &store, "--ingest", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {} for {id}", tally.display()))?;
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().expect("piped")), &mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening ingest=")
            .and_then(|r| r.split(' ').next())
            .with_context(|| {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                format!("node {id} did not start: {}", err.trim())
            })?
            .to_string();
        servers.push((id.clone(), child, addr));
    }
    // Pre-encode the batches, so that generating events is not what is measured.
    let types = [AttrType::String, AttrType::Double, AttrType::Long, AttrType::Long];
    let names: Vec<String> = (0..symbols).map(loadgen::symbol_name).collect();
    let mut builder = BatchBuilder::new(&types);
    let mut batches = Vec::new();
    for t in workload.trades() {
        builder.push_values(&[
            Value::Str(names[t.symbol as usize].clone()),
            Value::Double(t.price),
            Value::Long(t.quantity),
            Value::Long(t.timestamp),
        ]);
        if builder.len() == BATCH_EVENTS {
            batches.push(builder.finish());
        }
    }
    if !builder.is_empty() {
        batches.push(builder.finish());
    }
    let started = Instant::now();
    let mut clients = servers
        .iter()
        .map(|(id, _, addr)| Client::connect(addr.as_str(), None).with_context(|| format!("cannot connect to {id}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut unanswered = vec![0usize; nodes];
    let mut acked = 0u64;
    let take_reply = |c: &mut Client, id: &str| -> anyhow::Result<u64> {
        match c.recv()? {
            Reply::Ack { events, .. } => Ok(events as u64),
            other => bail!("node {id} refused a batch: {other:?}"),
        }
    };
    for (k, b) in batches.iter().enumerate() {
        let n = k % nodes;
        clients[n].send("TradeStream", b)?;
        unanswered[n] += 1;
        if unanswered[n] >= WINDOW {
            clients[n].flush()?;
            acked += take_reply(&mut clients[n], &servers[n].0)?;
            unanswered[n] -= 1;
        }
    }
    for (n, c) in clients.iter_mut().enumerate() {
        c.flush()?;
        while unanswered[n] > 0 {
            acked += take_reply(c, &servers[n].0)?;
            unanswered[n] -= 1;
        }
    }
    if acked != events {
        bail!("{acked} events acknowledged, {events} sent");
    }
    drop(clients);
    for (id, child, _) in servers {
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("node {id} did not stop cleanly ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
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
        "\n{nodes} nodes took {events} events in {:.2} s ({:.0} events/s over the binary protocol, each batch acknowledged after its flush committed)",
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
