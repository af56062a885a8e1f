//! `tally-loadgen`: drives a Tally cluster round robin over the binary protocol and checks
//! that the merged totals are exact.
//!
//! `demo` (the README's first command), `run` (one workload, spawned nodes or `--targets`),
//! `sweep` (the same workload at several node counts, with a chart).

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use loadgen::cluster::{Cluster, Spawn};
use loadgen::drive::{self, Plan};
use loadgen::report::{self, NodeFigures, RunReport};
use loadgen::{Prepared, Workload, find_tally, verify};
use std::path::PathBuf;

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
        /// Running nodes' binary ingest addresses (host:port,…) instead of spawning.
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
        /// neighbour hurts every node count alike; each point reports the median round.
        #[arg(long, default_value_t = 1)]
        repeat: usize,
        /// Results JSON (the chart goes beside it, .svg).
        #[arg(long, default_value = "results/sweep.json")]
        out: PathBuf,
    },
}

#[derive(Args, Clone)]
struct Load {
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    #[arg(long, default_value_t = 1_000)]
    symbols: u32,
    /// Days of event time the events cover (so hours, days, months are all exercised).
    #[arg(long, default_value_t = 1.0)]
    span_days: f64,
    /// Out of 1,000 events, how many arrive late (up to an hour out of order).
    #[arg(long, default_value_t = 10)]
    late_per_mille: u32,
    /// Events per second over all connections (default: as fast as possible).
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Store of spawned nodes (default: a fresh SQLite file); postgres://… for PostgreSQL.
    /// With --targets, the store the nodes write (needed to verify).
    #[arg(long)]
    store: Option<String>,
    #[arg(long, default_value_t = 2)]
    connections_per_node: usize,
    /// Batches a connection keeps unanswered (deeper queues: more throughput at saturation,
    /// longer ACK latency).
    #[arg(long, default_value_t = 64)]
    window: usize,
    #[arg(long, default_value = "200ms")]
    flush_interval: String,
    /// Aggregation workers per spawned node (default: the node's, one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// CPU lists for spawned nodes, one per node in turn, run under taskset (e.g. 0 or 0,1).
    #[arg(long, value_delimiter = ';')]
    cpus: Vec<String>,
    /// Hold each spawned node to this share of one CPU (a CPU cgroup quota; needs root).
    #[arg(long)]
    cpu_quota: Option<f64>,
    /// The nodes' token (tally.token) when they have one.
    #[arg(long)]
    token: Option<String>,
    /// With --targets: the aggregation the nodes' app defines (the seed's TradeStream
    /// aggregation, under this name). Spawned nodes get a name of their own per run.
    #[arg(long, default_value = "TradeAggregation")]
    aggregation: String,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Demo { nodes, events, symbols, store, keep } => demo(nodes, events, symbols, store, keep),
        Cmd::Run { nodes, load, targets, out, baseline } => {
            let work = prepare(&load)?;
            let r = run(nodes, &load, &work, &targets, true)?;
            println!("{}", r.table());
            let mut doc = r.json();
            if baseline {
                let url =
                    load.store.as_deref().filter(|s| s.starts_with("postgres")).context(
                        "--baseline needs --store postgres://… (the baseline is PostgreSQL COPY + GROUP BY)",
                    )?;
                eprintln!("baseline: the same events as raw rows by COPY, then GROUP BY per duration …");
                let b = loadgen::baseline::run(url, &work.workload)?;
                let ratio = r.events_per_sec / b.events_per_sec;
                println!(
                    "{:<28} {:.0} events/s (COPY {:.2} s + GROUP BY {:.2} s, {} rows); Tally is {ratio:.1}x",
                    "baseline (raw COPY + GROUP BY)",
                    b.events_per_sec,
                    b.copy.as_secs_f64(),
                    b.group_by.as_secs_f64(),
                    b.rows
                );
                doc["baseline"] = serde_json::json!({
                    "what": "the same events as raw rows by binary COPY into one PostgreSQL table, then one GROUP BY per duration (date_trunc)",
                    "events_per_sec": b.events_per_sec.round(),
                    "copy_sec": b.copy.as_secs_f64(), "group_by_sec": b.group_by.as_secs_f64(), "rows": b.rows,
                    "ratio": (ratio * 100.0).round() / 100.0,
                });
            }
            if let Some(path) = out {
                write_json(&path, report::document(doc))?;
            }
            if !r.verified {
                for m in &r.mismatches {
                    eprintln!("MISMATCH {m}");
                }
                bail!("verification failed: the merged totals differ from the events'");
            }
            Ok(())
        }
        Cmd::Sweep { nodes, load, repeat, out } => sweep(&nodes, &load, repeat, &out),
    }
}

fn workload(load: &Load) -> Workload {
    let span_us = (load.span_days * 86_400_000_000.0) as u64;
    Workload {
        events: load.events,
        symbols: load.symbols,
        seed: load.seed,
        start_ms: 1_710_460_800_000,
        step_us: (span_us / load.events.max(1)).max(1),
        late_per_mille: load.late_per_mille,
        late_max_ms: 3_600_000,
    }
}

/// The workload of `load`, encoded and its totals worked out; refuses empty ones.
fn prepare(load: &Load) -> anyhow::Result<Prepared> {
    if load.events == 0 || load.symbols == 0 {
        bail!("--events and --symbols must be at least 1");
    }
    let w = workload(load);
    eprintln!("encoding {} events of {} symbols over {:.1} days …", w.events, w.symbols, load.span_days);
    Ok(Prepared::new(w))
}

/// One run of the prepared workload; `verbose` shows a progress bar.
fn run(nodes: usize, load: &Load, work: &Prepared, targets: &[String], verbose: bool) -> anyhow::Result<RunReport> {
    if targets.is_empty() && nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    let tally = find_tally().context("cannot find the tally binary (build it: cargo build --release -p tally)")?;
    let dir = tempfile::Builder::new().prefix("tally-loadgen-").tempdir()?;
    let w = &work.workload;
    let batches = &work.batches;
    let store = load.store.clone().unwrap_or_else(|| format!("sqlite:{}", dir.path().join("store.db").display()));
    let cluster = if targets.is_empty() {
        Some(Cluster::spawn(&Spawn {
            tally: &tally,
            work: dir.path(),
            nodes,
            store: &store,
            flush_interval: &load.flush_interval,
            workers: load.workers,
            cpus: &load.cpus,
            cpu_quota: load.cpu_quota,
        })?)
    } else {
        None
    };
    let plan = Plan {
        targets: match &cluster {
            Some(c) => c.nodes.iter().map(|n| n.ingest.clone()).collect(),
            None => targets.to_vec(),
        },
        connections_per_node: load.connections_per_node,
        window: load.window.max(1),
        rate: load.rate,
        token: load.token.clone(),
    };
    let progress = if verbose { ProgressBar::new(w.events) } else { ProgressBar::hidden() };
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} events acknowledged, {per_sec}, eta {eta}")
            .expect("a valid template"),
    );
    let cpu_before = cluster.as_ref().map(|c| c.cpu_seconds()).unwrap_or_default();
    let published = drive::publish(&plan, batches, &progress);
    progress.finish_and_clear();
    let seen = match &cluster {
        Some(c) => NodeFigures {
            peak_rss_bytes: c.peak_rss(),
            rows_flushed: c.flushed_rows().iter().sum(),
            cpu_sec: c.cpu_seconds().iter().zip(&cpu_before).map(|(after, before)| after - before).collect(),
        },
        None => NodeFigures::default(),
    };
    let (app, aggregation, config) = match &cluster {
        Some(c) => (c.app.clone(), c.aggregation.clone(), c.nodes[0].config.clone()),
        None => {
            let app = dir.path().join("app.siddhi");
            std::fs::write(&app, loadgen::app(&load.aggregation))?;
            let config = dir.path().join("verify.yaml");
            std::fs::write(&config, "siddhi:\n  properties:\n    partitionById: true\n    shardId: loadgen-verify\n")?;
            (app, load.aggregation.clone(), config)
        }
    };
    if let Some(c) = cluster {
        c.stop()?;
    }
    let published = published?;
    let verification = if targets.is_empty() || load.store.is_some() {
        Some(verify::verify(&tally, &app, &aggregation, &config, &store, work)?)
    } else {
        eprintln!("not verified: give --store with --targets to check the totals");
        None
    };
    let config = serde_json::json!({
        "symbols": load.symbols, "span_days": load.span_days, "late_per_mille": load.late_per_mille,
        "rate": load.rate, "seed": load.seed, "store": if store.starts_with("sqlite:") { "sqlite" } else { "postgres" },
        "connections_per_node": load.connections_per_node, "flush_interval": load.flush_interval,
        "workers": load.workers, "cpus": load.cpus, "cpu_quota_per_node": load.cpu_quota, "batch_events": loadgen::BATCH_EVENTS, "window_batches": plan.window,
        "targets": if targets.is_empty() { "spawned" } else { "attached" },
        "aggregation": aggregation,
    });
    Ok(RunReport::new(plan.targets.len(), &published, verification.as_ref(), &seen, config))
}

fn demo(nodes: usize, events: u64, symbols: u32, store: Option<String>, keep: bool) -> anyhow::Result<()> {
    let load = Load {
        events,
        symbols,
        span_days: 423.6,
        late_per_mille: 0,
        rate: None,
        seed: 42,
        store: store.clone(),
        connections_per_node: 1,
        window: 64,
        flush_interval: "200ms".into(),
        workers: None,
        cpus: Vec::new(),
        cpu_quota: None,
        token: None,
        aggregation: "TradeAggregation".into(),
    };
    eprintln!("demo: {nodes} nodes, {events} events of {symbols} symbols over {} days, round robin", load.span_days);
    let tally = find_tally().context("cannot find the tally binary")?;
    let dir = tempfile::Builder::new().prefix("tally-demo-").tempdir()?;
    let store = store.unwrap_or_else(|| format!("sqlite:{}", dir.path().join("store.db").display()));
    let work = Prepared::new(workload(&load));
    let cluster = Cluster::spawn(&Spawn {
        tally: &tally,
        work: dir.path(),
        nodes,
        store: &store,
        flush_interval: "200ms",
        workers: None,
        cpus: &[],
        cpu_quota: None,
    })?;
    let plan = Plan {
        targets: cluster.nodes.iter().map(|n| n.ingest.clone()).collect(),
        connections_per_node: 1,
        window: 64,
        rate: None,
        token: None,
    };
    let published = drive::publish(&plan, &work.batches, &ProgressBar::hidden());
    let (app, aggregation, config) =
        (cluster.app.clone(), cluster.aggregation.clone(), cluster.nodes[0].config.clone());
    cluster.stop()?;
    let published = published?;
    let v = verify::verify(&tally, &app, &aggregation, &config, &store, &work)?;
    println!("{:<8} | {:>14} | {:>10} | verified", "per", "total quantity", "trades");
    println!("{}", "-".repeat(48));
    let ok = v.mismatches.is_empty();
    for (per, total, trades, _) in &v.per_duration {
        println!("{per:<8} | {total:>14} | {trades:>10} | {}", if ok { "yes" } else { "see below" });
    }
    println!(
        "\n{nodes} nodes took {} events in {:.2} s ({:.0} events/s over the binary protocol, each batch acknowledged after its flush committed)",
        published.acked_events,
        published.elapsed.as_secs_f64(),
        published.acked_events as f64 / published.elapsed.as_secs_f64()
    );
    if keep {
        println!("kept {}", dir.keep().display());
    }
    if !ok {
        for m in &v.mismatches {
            eprintln!("MISMATCH {m}");
        }
        bail!("the merged totals differ from the events'");
    }
    println!("verified: every bucket of every duration equals the generated events' ({} rows)", v.rows);
    Ok(())
}

/// One node count of a sweep: medians over its rounds.
struct Point {
    nodes: usize,
    events_per_sec: f64,
    p99_ms: f64,
    per_node_cpu_sec: Option<f64>,
    /// This point's median events/s over the first point's.
    ratio_of_medians: f64,
    /// The median over rounds of this point's events/s over the first point's in the
    /// same round.
    median_of_rounds: f64,
}

fn sweep(counts: &[usize], load: &Load, repeat: usize, out: &std::path::Path) -> anyhow::Result<()> {
    if counts.is_empty() || repeat == 0 {
        bail!("--nodes needs at least one node count and --repeat at least 1");
    }
    let work = prepare(load)?;
    // runs[i]: every round's run at counts[i], in round order.
    let mut runs: Vec<Vec<RunReport>> = counts.iter().map(|_| Vec::new()).collect();
    println!("{:>5} | {:>5} | {:>14} | {:>9} | verified", "round", "nodes", "events/s", "p99 ms");
    for round in 1..=repeat {
        for (i, &n) in counts.iter().enumerate() {
            let r = run(n, load, &work, &[], false)?;
            println!(
                "{round:>5} | {n:>5} | {:>14.0} | {:>9.1} | {}",
                r.events_per_sec,
                r.ack_latency_ms.1,
                if r.verified { "yes" } else { "NO" }
            );
            runs[i].push(r);
        }
    }
    // A point is the median of its rounds, figure by figure (not one run's figures). Its
    // scaling is given two ways: the ratio of the medians, and the median of the ratios
    // measured side by side within each round.
    let median_of = |rs: &[RunReport], f: &dyn Fn(&RunReport) -> Option<f64>| -> Option<f64> {
        let mut v: Vec<f64> = rs.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| report::median(&mut v))
    };
    let base = median_of(&runs[0], &|r| Some(r.events_per_sec)).unwrap_or(1.0);
    let points: Vec<Point> = counts
        .iter()
        .zip(&runs)
        .map(|(&nodes, rs)| {
            let events_per_sec = median_of(rs, &|r| Some(r.events_per_sec)).unwrap_or(0.0);
            let mut side_by_side: Vec<f64> =
                rs.iter().zip(&runs[0]).map(|(r, first)| r.events_per_sec / first.events_per_sec).collect();
            Point {
                nodes,
                events_per_sec,
                p99_ms: median_of(rs, &|r| Some(r.ack_latency_ms.1)).unwrap_or(0.0),
                per_node_cpu_sec: median_of(rs, &|r| r.events_per_node_cpu_sec()),
                ratio_of_medians: events_per_sec / base,
                median_of_rounds: report::median(&mut side_by_side),
            }
        })
        .collect();
    println!(
        "\nmedian of {repeat} round(s); scaling as the ratio of the medians and as the median of each round's ratio:"
    );
    println!(
        "{:>5} | {:>14} | {:>9} | {:>9} | {:>9} | {:>18}",
        "nodes", "events/s", "p99 ms", "scaling", "by round", "events/node CPU-s"
    );
    for p in &points {
        println!(
            "{:>5} | {:>14.0} | {:>9.1} | {:>8.2}x | {:>8.2}x | {:>18}",
            p.nodes,
            p.events_per_sec,
            p.p99_ms,
            p.ratio_of_medians,
            p.median_of_rounds,
            p.per_node_cpu_sec.map(|c| format!("{c:.0}")).unwrap_or_else(|| "-".into()),
        );
    }
    let round3 = |x: f64| (x * 1000.0).round() / 1000.0;
    let summary: Vec<serde_json::Value> = points
        .iter()
        .map(|p| {
            serde_json::json!({
                "nodes": p.nodes,
                "events_per_sec_median": p.events_per_sec.round(),
                "ack_latency_p99_ms_median": p.p99_ms,
                "events_per_node_cpu_sec_median": p.per_node_cpu_sec.map(f64::round),
                "scaling_ratio_of_medians": round3(p.ratio_of_medians),
                "scaling_median_of_rounds": round3(p.median_of_rounds),
            })
        })
        .collect();
    let all_verified = runs.iter().flatten().all(|r| r.verified);
    let mut every_run = Vec::new();
    for round in 0..repeat {
        for rs in &runs {
            let mut j = rs[round].json();
            j["round"] = serde_json::json!(round + 1);
            every_run.push(j);
        }
    }
    write_json(
        out,
        report::document(serde_json::json!({
            "rounds": repeat,
            "median": summary,
            "sweep": every_run,
            "verified": all_verified,
        })),
    )?;
    let svg = out.with_extension("svg");
    report::chart(&svg, &points.iter().map(|p| (p.nodes, p.events_per_sec, p.p99_ms)).collect::<Vec<_>>())?;
    println!("wrote {} and {}", out.display(), svg.display());
    if !all_verified {
        bail!("verification failed at some node count");
    }
    Ok(())
}

fn write_json(path: &std::path::Path, doc: serde_json::Value) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))
}
