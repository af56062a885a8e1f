//! One run: the workload encoded, a cluster spawned (or attached), the events published
//! round robin, the merged totals verified, the figures reported; the baseline beside it;
//! and the README demo.

use crate::cluster::{Cluster, Spawn};
use crate::drive::{self, Plan};
use crate::error::{Error, IoContext, Result};
use crate::report::{self, NodeFigures, RunReport};
use crate::{Prepared, Workload, find_tally, verify};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};

/// What a run sends and how: the workload, the nodes and the client. Also the command
/// line options of `run` and `sweep`.
#[derive(clap::Args, Clone, Debug)]
pub struct Load {
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    #[arg(long, default_value_t = 1_000)]
    pub symbols: u32,
    /// Days of event time the events cover (so hours, days, months are all exercised).
    #[arg(long, default_value_t = 1.0)]
    pub span_days: f64,
    /// Out of 1,000 events, how many arrive late (up to an hour out of order).
    #[arg(long, default_value_t = 10)]
    pub late_per_mille: u32,
    /// Events per second over all connections (default: as fast as possible).
    #[arg(long)]
    pub rate: Option<f64>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Store of spawned nodes (default: a fresh SQLite file); postgres://… for PostgreSQL.
    /// With --targets, the store the nodes write (needed to verify).
    #[arg(long)]
    pub store: Option<String>,
    #[arg(long, default_value_t = 2)]
    pub connections_per_node: usize,
    /// Batches a connection keeps unanswered (deeper queues: more throughput at saturation,
    /// longer ACK latency).
    #[arg(long, default_value_t = 64)]
    pub window: usize,
    #[arg(long, default_value = "200ms")]
    pub flush_interval: String,
    /// Aggregation workers per spawned node (default: the node's, one per core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// CPU lists for spawned nodes, one per node in turn, run under taskset (e.g. 0 or 0,1).
    #[arg(long, value_delimiter = ';')]
    pub cpus: Vec<String>,
    /// Hold each spawned node to this share of one CPU (a CPU cgroup quota; needs root).
    #[arg(long)]
    pub cpu_quota: Option<f64>,
    /// The nodes' token (tally.token) when they have one.
    #[arg(long)]
    pub token: Option<String>,
    /// With --targets: the aggregation the nodes' app defines (the seed's TradeStream
    /// aggregation, under this name). Spawned nodes get a name of their own per run.
    #[arg(long, default_value = "TradeAggregation")]
    pub aggregation: String,
    /// How events reach the nodes: pre-encoded binary batches, or SI-style JSON posts.
    #[arg(long, value_enum, default_value_t = Protocol::Binary)]
    pub protocol: Protocol,
    /// With --protocol http: events per request (1: `{"event": …}`, more: an array).
    #[arg(long, default_value_t = 1)]
    pub events_per_request: usize,
    /// With --protocol http: concurrent keep-alive clients over all nodes, each with one
    /// request in flight.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Events per binary batch (with --window 1 and one connection: one small batch at a
    /// time, the low-load shape).
    #[arg(long, default_value_t = crate::BATCH_EVENTS)]
    pub batch_events: usize,
    /// Protocol version 2 (docs/delivery.md): a producer per connection, numbered batches,
    /// unanswered batches resent under their own numbers to the next node: exactly once.
    #[arg(long)]
    pub exactly_once: bool,
    /// A fault to inject while publishing (spawned nodes only; implies --exactly-once).
    #[arg(long, value_enum)]
    pub chaos: Option<Chaos>,
    /// Seconds between two faults.
    #[arg(long, default_value_t = 2.0)]
    pub chaos_every: f64,
    /// With --chaos store-restart: the shell command that restarts the store.
    #[arg(long)]
    pub chaos_command: Option<String>,
}

/// A fault `--chaos` injects.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chaos {
    /// SIGKILL a node picked at random, and start it again at once (same node id, files
    /// and addresses).
    KillNode,
    /// Restart the store with `--chaos-command` (e.g. `scripts/postgres.sh restart`).
    StoreRestart,
    /// Cut the client connections of a node picked at random for half the period (through
    /// a TCP proxy in front of each node), without stopping the node.
    Partition,
    /// Stop a node picked at random (SIGSTOP) for half the period, then continue it: it
    /// stops reading, flushing and renewing its lease, its connections stay open. A stall
    /// longer than the producers' 10 s read timeout sends them to another node while the
    /// stalled one still holds their batches (the slow-node race of docs/delivery.md).
    Stall,
}

/// How events reach the nodes.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// The binary protocol: batches of 4,096 events, pipelined (`--window`).
    Binary,
    /// HTTP/1.1 JSON posts as SI's http source takes them, closed-loop clients.
    Http,
}

/// The `tally` binary the nodes and the verification run (beside this one, `$TALLY`, or on
/// `PATH`).
fn tally_binary() -> Result<PathBuf> {
    find_tally().ok_or_else(|| Error::Io {
        what: "cannot find the tally binary beside tally-loadgen, in $TALLY or on PATH (build it: cargo build --release -p tally-cli)".into(),
        source: std::io::ErrorKind::NotFound.into(),
    })
}

/// The workload `load` describes.
pub fn workload(load: &Load) -> Workload {
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
pub fn prepare(load: &Load) -> Result<Prepared> {
    if load.events == 0 || load.symbols == 0 {
        return Err(Error::Usage("--events and --symbols must be at least 1".into()));
    }
    let w = workload(load);
    eprintln!("encoding {} events of {} symbols over {:.1} days …", w.events, w.symbols, load.span_days);
    Ok(Prepared::with_batches_of(w, load.batch_events))
}

/// One run of the prepared workload; `verbose` shows a progress bar.
pub fn run(nodes: usize, load: &Load, work: &Prepared, targets: &[String], verbose: bool) -> Result<RunReport> {
    if targets.is_empty() && nodes == 0 {
        return Err(Error::Usage("--nodes must be at least 1".into()));
    }
    let tally = tally_binary()?;
    let dir = tempfile::Builder::new()
        .prefix("tally-loadgen-")
        .tempdir()
        .doing(|| "cannot make a working directory".into())?;
    let w = &work.workload;
    let batches = &work.batches;
    let store = load.store.clone().unwrap_or_else(|| format!("sqlite:{}", dir.path().join("store.db").display()));
    let mut cluster = if targets.is_empty() {
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
    // --chaos partition: the producers reach each node through a proxy that can be cut.
    let proxies: Vec<crate::proxy::Proxy> = match (&cluster, load.chaos) {
        (Some(c), Some(Chaos::Partition)) => {
            c.nodes.iter().map(|n| crate::proxy::Proxy::start(&n.ingest)).collect::<Result<_>>()?
        }
        _ => Vec::new(),
    };
    let plan = Plan {
        targets: match &cluster {
            Some(_) if !proxies.is_empty() => proxies.iter().map(|p| p.addr.clone()).collect(),
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
    let http_requests = (load.protocol == Protocol::Http).then(|| {
        eprintln!("encoding the events as JSON requests of {} …", load.events_per_request.max(1));
        crate::http::requests(w, load.events_per_request, load.token.as_deref())
    });
    let cpu_before = cluster.as_ref().map(|c| c.cpu_seconds()).unwrap_or_default();
    if load.chaos.is_some() && (cluster.is_none() || load.protocol != Protocol::Binary) {
        return Err(Error::Usage("--chaos needs spawned nodes (no --targets) and --protocol binary".into()));
    }
    let mut kills = 0;
    let published = match &http_requests {
        None if load.exactly_once || load.chaos.is_some() => {
            // Producer ids of their own: a PostgreSQL store remembers earlier runs' producers.
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            let run_id = format!("{}-{}", std::process::id(), now.as_millis());
            let cell = std::sync::Mutex::new(cluster.take());
            let done = std::sync::atomic::AtomicBool::new(false);
            let published = std::thread::scope(|s| {
                let (cell, done, proxies) = (&cell, &done, &proxies);
                let chaos = load.chaos.map(|kind| {
                    let plan =
                        crate::chaos::Plan { kind, every_sec: load.chaos_every, command: load.chaos_command.clone() };
                    s.spawn(move || crate::chaos::inject(&plan, cell, proxies, done))
                });
                let p = crate::producer::publish(&plan, batches, &progress, &run_id);
                done.store(true, std::sync::atomic::Ordering::SeqCst);
                kills = chaos.map(|h| h.join().expect("the chaos thread")).transpose()?.unwrap_or(0);
                Ok::<_, Error>(p)
            })?;
            cluster = cell.into_inner().expect("the cluster lock");
            published
        }
        None => drive::publish(&plan, batches, &progress),
        Some(requests) => {
            let http_plan = crate::http::HttpPlan {
                targets: match &cluster {
                    Some(c) => c.nodes.iter().map(|n| n.http.clone()).collect(),
                    None => targets.to_vec(),
                },
                clients: load.clients,
                token: load.token.clone(),
            };
            crate::http::publish(&http_plan, requests, &progress)
        }
    };
    progress.finish_and_clear();
    let seen = match &cluster {
        Some(c) => {
            let mut f = NodeFigures {
                peak_rss_bytes: c.peak_rss(),
                rows_flushed: c.flushed_rows().iter().sum(),
                journal_rows: c.journal_rows().iter().sum(),
                flushes: c.flushes().iter().sum(),
                cpu_sec: c.cpu_seconds().iter().zip(&cpu_before).map(|(after, before)| after - before).collect(),
                ..NodeFigures::default()
            };
            f.breakdown(&c.summed("tally_rows_written_total"), &c.summed("tally_flush_phase_seconds_total"));
            f
        }
        None => NodeFigures::default(),
    };
    let (app, aggregation, config) = match &cluster {
        Some(c) => (c.app.clone(), c.aggregation.clone(), c.nodes[0].config.clone()),
        None => {
            let app = dir.path().join("app.siddhi");
            std::fs::write(&app, crate::app(&load.aggregation)).doing(|| format!("cannot write {}", app.display()))?;
            let config = dir.path().join("verify.yaml");
            std::fs::write(&config, "siddhi:\n  properties:\n    partitionById: true\n    shardId: loadgen-verify\n")
                .doing(|| format!("cannot write {}", config.display()))?;
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
        "rate": load.rate, "seed": load.seed, "store": store_kind(&store),
        "connections_per_node": load.connections_per_node, "flush_interval": load.flush_interval,
        "workers": load.workers, "cpus": load.cpus, "cpu_quota_per_node": load.cpu_quota, "batch_events": load.batch_events, "window_batches": plan.window,
        "targets": if targets.is_empty() { "spawned" } else { "attached" },
        "aggregation": aggregation,
        "protocol": match load.protocol { Protocol::Binary => "binary", Protocol::Http => "http" },
        "events_per_request": (load.protocol == Protocol::Http).then_some(load.events_per_request.max(1)),
        "http_clients": (load.protocol == Protocol::Http).then_some(load.clients),
        "exactly_once": load.exactly_once || load.chaos.is_some(),
        "chaos": load.chaos.map(|c| format!("{c:?}")), "chaos_every_sec": load.chaos.map(|_| load.chaos_every),
    });
    let mut report = RunReport::new(plan.targets.len(), &published, verification.as_ref(), &seen, config);
    match load.chaos {
        Some(Chaos::KillNode) => report.kills = kills,
        Some(Chaos::StoreRestart) => report.store_restarts = kills,
        Some(Chaos::Partition) => report.partitions = kills,
        Some(Chaos::Stall) => report.stalls = kills,
        None => {}
    }
    Ok(report)
}

/// `tally-loadgen run`: one run, its table, `--baseline` beside it, the results JSON at
/// `out`; an error when the totals differ.
pub fn run_and_report(nodes: usize, load: &Load, targets: &[String], out: Option<&Path>, baseline: bool) -> Result<()> {
    let work = prepare(load)?;
    let r = run(nodes, load, &work, targets, true)?;
    println!("{}", r.table());
    let mut doc = r.json();
    if baseline {
        let url = load.store.as_deref().filter(|s| s.starts_with("postgres")).ok_or_else(|| {
            Error::Usage("--baseline needs --store postgres://… (the baseline is PostgreSQL COPY + GROUP BY)".into())
        })?;
        eprintln!("baseline: the same events as raw rows by COPY, then GROUP BY per duration …");
        let b = crate::baseline::run(url, &work.workload)?;
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
        let mut doc = report::document(doc);
        // The commit of the binary that ran, not of the checkout (they differ when an old
        // build runs beside a new one).
        if let Some(sha) = tally_binary().ok().and_then(|b| report::binary_sha(&b)) {
            doc["git_sha"] = serde_json::Value::String(sha);
        }
        report::write_json(path, doc)?;
    }
    if !r.verified {
        for m in &r.mismatches {
            eprintln!("MISMATCH {m}");
        }
        return Err(Error::Mismatch(
            "verification failed: the merged totals differ from the events' (the MISMATCH lines above)".into(),
        ));
    }
    Ok(())
}

/// The README demo: `nodes` nodes on the embedded store (or `store`), verified, with a
/// table per duration; `keep` keeps the working directory.
pub fn demo(nodes: usize, events: u64, symbols: u32, store: Option<String>, keep: bool) -> Result<()> {
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
        protocol: Protocol::Binary,
        events_per_request: 1,
        clients: 16,
        batch_events: crate::BATCH_EVENTS,
        exactly_once: false,
        chaos: None,
        chaos_every: 2.0,
        chaos_command: None,
    };
    eprintln!("demo: {nodes} nodes, {events} events of {symbols} symbols over {} days, round robin", load.span_days);
    let tally = tally_binary()?;
    let dir =
        tempfile::Builder::new().prefix("tally-demo-").tempdir().doing(|| "cannot make a working directory".into())?;
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
        return Err(Error::Mismatch("the merged totals differ from the events' (the MISMATCH lines above)".into()));
    }
    println!("verified: every bucket of every duration equals the generated events' ({} rows)", v.rows);
    Ok(())
}

/// What kind of store a run used, for its record.
fn store_kind(url: &str) -> &'static str {
    match tally::store::StoreAddress::parse(url, None, None) {
        Ok(tally::store::StoreAddress::Sqlite { .. }) => "sqlite",
        Ok(tally::store::StoreAddress::Postgres { .. }) => "postgres",
        Ok(tally::store::StoreAddress::Mysql(_)) => "mysql",
        Err(_) => "unknown",
    }
}
