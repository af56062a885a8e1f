//! One node's ingest rate over loopback with the binary protocol, end to end: `tally serve`
//! (a separate process, one worker) takes the engine-core workload (TradeStream, sec … year
//! by symbol, 1,000 symbols) as pre-encoded 4,096-event batches from pipelined
//! connections, and every batch counts only once its ACK arrived (after its flush
//! committed to the store).
//!
//! Reported: events/s of wall time, the node's CPU seconds (user + system, from
//! /proc/PID/stat) and events per CPU-second of the node — the "per core" figure — beside
//! the engine-core ceiling of results/engine-core.json.
//!
//! Usage: serve_ingest [--events N] [--connections N] [--runs N] [--store URL] [--out FILE]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;
use tally::server::client::Client;
use tally::server::protocol::Reply;
use tally_benches::report::{git_sha, machine, median};
use tally_benches::{EVENTS, batches, workload};

/// Batches a connection keeps unanswered: enough that the flush tick (acks come after
/// commit) never limits the rate.
const WINDOW: usize = 4096;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let total: usize = opt("--events").map(|v| v.parse().expect("--events N")).unwrap_or(20_000_000);
    let connections: usize = opt("--connections").map(|v| v.parse().expect("--connections N")).unwrap_or(2);
    let runs: usize = opt("--runs").map(|v| v.parse().expect("--runs N")).unwrap_or(3);
    let out = opt("--out");
    let dir = std::env::temp_dir().join(format!("tally-serve-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = opt("--store").unwrap_or_else(|| format!("sqlite:{}", dir.join("store.db").display()));
    let tally = find_tally();

    // Event-time density: the engine-core workload has ten events per symbol per second of
    // event time (a sparse replay of history); `--event-rate N` re-stamps the same events
    // as if N events arrived per second of event time (live data at that rate).
    let mut w = workload();
    let event_rate: Option<u64> = opt("--event-rate").map(|v| v.parse().expect("--event-rate N"));
    if let Some(rate) = event_rate {
        for (i, t) in w.times.iter_mut().enumerate() {
            *t = tally_benches::START_MS + (i as u64 * 1000 / rate) as i64;
        }
    }
    let encoded: Vec<Vec<u8>> = batches(&w).into_iter().map(|b| b.data).collect();
    let quantity_per_round: i64 = w.quantities.iter().sum();
    let per_round = EVENTS;
    let rounds = total.div_ceil(per_round);
    let app = dir.join("app.siddhi");
    std::fs::write(&app, tally_benches::APP).unwrap();

    let mut results = Vec::new();
    println!(
        "one node, binary protocol over loopback, {} events a run, {connections} connections, acknowledged after commit",
        rounds * per_round
    );
    for run in 0..runs {
        let node = dir.join(format!("node{run}.yaml"));
        std::fs::write(
            &node,
            format!("wso2.carbon:\n  id: bench{run}\ntally:\n  workers: 1\n  flush_interval: 200ms\n  max_frame_bytes: 16777216\n"),
        )
        .unwrap();
        let run_store = if store.starts_with("sqlite:") {
            format!("sqlite:{}", dir.join(format!("s{run}.db")).display())
        } else {
            store.clone()
        };
        let mut child = Command::new(&tally)
            .args([
                "serve",
                "--app",
                path(&app),
                "--config",
                path(&node),
                "--store",
                &run_store,
                "--ingest",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("tally serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        let addr = line.trim().strip_prefix("listening ingest=").unwrap().split(' ').next().unwrap().to_string();
        let pid = child.id();
        let cpu_before = loadgen::cluster::cpu_seconds(pid);
        let started = Instant::now();
        std::thread::scope(|s| {
            for c in 0..connections {
                let (addr, encoded) = (&addr, &encoded);
                s.spawn(move || drive(addr, encoded, rounds, c, connections));
            }
        });
        let wall = started.elapsed().as_secs_f64();
        let cpu = loadgen::cluster::cpu_seconds(pid) - cpu_before;
        let events = (rounds * per_round) as f64;
        println!(
            "run {run}: {:.2} M events/s wall, node CPU {cpu:.2} s, {:.2} M events per node CPU-second",
            events / wall / 1e6,
            events / cpu / 1e6
        );
        let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        let _ = child.wait();
        // Every acknowledged event is in the store, once.
        let answer = Command::new(&tally)
            .args(["query", "--app", path(&app), "--config", path(&node), "--store", &run_store, "--format", "json"])
            .arg("from TradeAggregation within 0L, 4000000000000L per 'years' select sum(total) as t")
            .output()
            .expect("tally query runs");
        let v: serde_json::Value = serde_json::from_slice(&answer.stdout).expect("a JSON answer");
        let stored = v["records"][0][0].as_i64().unwrap_or(-1);
        let expected = quantity_per_round * rounds as i64;
        assert_eq!(stored, expected, "run {run}: the store holds {stored}, the events sum to {expected}");
        println!("run {run}: verified, the store's years total is {stored}");
        results.push((events / wall, events / cpu, cpu, wall));
    }
    let mut per_cpu: Vec<f64> = results.iter().map(|r| r.1).collect();
    let mut per_wall: Vec<f64> = results.iter().map(|r| r.0).collect();
    let (m_cpu, m_wall) = (median(&mut per_cpu), median(&mut per_wall));
    let ceiling = std::fs::read_to_string("results/engine-core.json")
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
    println!("median: {:.2} M events/s wall, {:.2} M events per node CPU-second", m_wall / 1e6, m_cpu / 1e6);
    if let Some(path) = out {
        let doc = serde_json::json!({
            "bench": "serve_ingest",
            "git_sha": git_sha(),
            "machine": machine(),
            "config": {
                "workload": "TradeStream, sec ... year by symbol, 1,000 symbols, 4,096-event batches, pre-encoded (benches/src/lib.rs)",
                "events_per_event_second": event_rate.unwrap_or(10_000),
                "events_per_run": rounds * per_round, "connections": connections, "window_batches": WINDOW,
                "node": "tally serve, tally.workers 1, flush_interval 200ms", "store": if store.starts_with("sqlite:") { "sqlite (a fresh file per run)".to_string() } else { "postgres".to_string() },
                "counted": "a batch counts when its ACK (sent after its flush committed) arrives; after each run the store's years total is checked against the events' (the run fails otherwise)",
            },
            "runs": results.iter().map(|(w, c, cpu, wall)| serde_json::json!({
                "events_per_sec_wall": w.round(), "events_per_node_cpu_sec": c.round(), "node_cpu_sec": cpu, "wall_sec": wall,
            })).collect::<Vec<_>>(),
            "median_events_per_sec_wall": m_wall.round(),
            "median_events_per_node_cpu_sec": m_cpu.round(),
            "engine_core_for_comparison": ceiling,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap() + "\n").unwrap();
        println!("wrote {path}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// One connection: its share of the batches, `rounds` times, at most `WINDOW` unanswered.
fn drive(addr: &str, encoded: &[Vec<u8>], rounds: usize, me: usize, of: usize) {
    let mut c = Client::connect(addr, None).expect("connects");
    let mut outstanding = VecDeque::new();
    for _ in 0..rounds {
        for b in encoded.iter().skip(me).step_by(of) {
            let id = c.send("TradeStream", b).unwrap();
            outstanding.push_back(id);
            if outstanding.len() >= WINDOW {
                c.flush().unwrap();
                while outstanding.len() >= WINDOW / 2 {
                    expect_ack(&mut c, &mut outstanding);
                }
            }
        }
    }
    c.flush().unwrap();
    while !outstanding.is_empty() {
        expect_ack(&mut c, &mut outstanding);
    }
}

fn expect_ack(c: &mut Client, outstanding: &mut VecDeque<u64>) {
    match c.recv().unwrap() {
        Reply::Ack { batch_id, .. } => {
            let pos = outstanding.iter().position(|&i| i == batch_id).expect("an ACK of a batch we sent");
            outstanding.remove(pos);
        }
        other => panic!("the node refused a batch: {other:?}"),
    }
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

fn find_tally() -> String {
    for c in ["target/release/tally", "../target/release/tally"] {
        if std::path::Path::new(c).exists() {
            return c.to_string();
        }
    }
    "tally".to_string()
}
