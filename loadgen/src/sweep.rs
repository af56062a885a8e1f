//! A sweep: the same workload at each node count, in interleaved rounds; medians, the
//! scaling two ways, the results JSON and a chart.

use crate::error::{Error, Result};
use crate::report::{self, RunReport};
use crate::run::{Load, prepare, run};

/// One (key count, node count) of a sweep: medians over its rounds.
struct Point {
    symbols: u32,
    nodes: usize,
    events_per_sec: f64,
    p99_ms: f64,
    per_node_cpu_sec: Option<f64>,
    rows_per_event: f64,
    journal_rows_per_event: f64,
    /// This point's median events/s over the first node count's (same key count).
    ratio_of_medians: f64,
    /// The median over rounds of this point's events/s over the first node count's in the
    /// same round.
    median_of_rounds: f64,
}

/// Runs `load` at each node count of `counts`, `repeat` rounds interleaved, for each key
/// count of `symbols_axis` (just `load.symbols` when empty); writes the JSON and a chart
/// per key count.
pub fn sweep(counts: &[usize], symbols_axis: &[u32], load: &Load, repeat: usize, out: &std::path::Path) -> Result<()> {
    if counts.is_empty() || repeat == 0 {
        return Err(Error::Usage("--nodes needs at least one node count and --repeat at least 1".into()));
    }
    let axis: Vec<u32> = if symbols_axis.is_empty() { vec![load.symbols] } else { symbols_axis.to_vec() };
    let mut points: Vec<Point> = Vec::new();
    // runs[k][i]: every round's run at axis[k], counts[i], in round order.
    let mut runs: Vec<Vec<Vec<RunReport>>> = Vec::new();
    println!("{:>9} | {:>5} | {:>5} | {:>14} | {:>9} | verified", "keys", "round", "nodes", "events/s", "p99 ms");
    for &symbols in &axis {
        // One workload per key count, prepared once and dropped before the next.
        let load = Load { symbols, ..load.clone() };
        let work = prepare(&load)?;
        let mut series: Vec<Vec<RunReport>> = counts.iter().map(|_| Vec::new()).collect();
        for round in 1..=repeat {
            for (i, &n) in counts.iter().enumerate() {
                let r = run(n, &load, &work, &[], false)?;
                println!(
                    "{symbols:>9} | {round:>5} | {n:>5} | {:>14.0} | {:>9.1} | {}",
                    r.events_per_sec,
                    r.ack_latency_ms.1,
                    if r.verified { "yes" } else { "NO" }
                );
                series[i].push(r);
            }
        }
        points.extend(summarize(symbols, counts, &series));
        runs.push(series);
    }
    println!(
        "\nmedian of {repeat} round(s); scaling as the ratio of the medians and as the median of each round's ratio:"
    );
    println!(
        "{:>9} | {:>5} | {:>14} | {:>9} | {:>9} | {:>9} | {:>18} | {:>9}",
        "keys", "nodes", "events/s", "p99 ms", "scaling", "by round", "events/node CPU-s", "rows/ev"
    );
    for p in &points {
        println!(
            "{:>9} | {:>5} | {:>14.0} | {:>9.1} | {:>8.2}x | {:>8.2}x | {:>18} | {:>9.5}",
            p.symbols,
            p.nodes,
            p.events_per_sec,
            p.p99_ms,
            p.ratio_of_medians,
            p.median_of_rounds,
            p.per_node_cpu_sec.map(|c| format!("{c:.0}")).unwrap_or_else(|| "-".into()),
            p.rows_per_event,
        );
    }
    let round3 = |x: f64| (x * 1000.0).round() / 1000.0;
    let summary: Vec<serde_json::Value> = points
        .iter()
        .map(|p| {
            serde_json::json!({
                "symbols": p.symbols,
                "nodes": p.nodes,
                "events_per_sec_median": p.events_per_sec.round(),
                "ack_latency_p99_ms_median": p.p99_ms,
                "events_per_node_cpu_sec_median": p.per_node_cpu_sec.map(f64::round),
                "rows_per_event_median": p.rows_per_event,
                "journal_rows_per_event_median": p.journal_rows_per_event,
                "scaling_ratio_of_medians": round3(p.ratio_of_medians),
                "scaling_median_of_rounds": round3(p.median_of_rounds),
            })
        })
        .collect();
    let all_verified = runs.iter().flatten().flatten().all(|r| r.verified);
    let mut every_run = Vec::new();
    for (k, series) in runs.iter().enumerate() {
        for round in 0..repeat {
            for rs in series {
                let mut j = rs[round].json();
                j["round"] = serde_json::json!(round + 1);
                j["symbols"] = serde_json::json!(axis[k]);
                every_run.push(j);
            }
        }
    }
    report::write_json(
        out,
        report::document(serde_json::json!({
            "rounds": repeat,
            "symbols_axis": axis,
            "median": summary,
            "sweep": every_run,
            "verified": all_verified,
        })),
    )?;
    for &symbols in &axis {
        // The first key count's chart keeps the plain name (as before the key axis).
        let svg = if symbols == axis[0] {
            out.with_extension("svg")
        } else {
            out.with_extension(format!("symbols-{symbols}.svg"))
        };
        let series: Vec<(usize, f64, f64)> =
            points.iter().filter(|p| p.symbols == symbols).map(|p| (p.nodes, p.events_per_sec, p.p99_ms)).collect();
        report::chart(&svg, &series)?;
        println!("wrote {}", svg.display());
    }
    println!("wrote {}", out.display());
    if !all_verified {
        return Err(Error::Mismatch("verification failed at some point (see the table and the JSON)".into()));
    }
    Ok(())
}

/// The points of one key count: each node count's medians, figure by figure (not one
/// run's figures), and its scaling two ways: the ratio of the medians, and the median of
/// the ratios measured side by side within each round.
fn summarize(symbols: u32, counts: &[usize], runs: &[Vec<RunReport>]) -> Vec<Point> {
    let median_of = |rs: &[RunReport], f: &dyn Fn(&RunReport) -> Option<f64>| -> Option<f64> {
        let mut v: Vec<f64> = rs.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| report::median(&mut v))
    };
    let base = median_of(&runs[0], &|r| Some(r.events_per_sec)).unwrap_or(1.0);
    counts
        .iter()
        .zip(runs)
        .map(|(&nodes, rs)| {
            let events_per_sec = median_of(rs, &|r| Some(r.events_per_sec)).unwrap_or(0.0);
            let mut side_by_side: Vec<f64> =
                rs.iter().zip(&runs[0]).map(|(r, first)| r.events_per_sec / first.events_per_sec).collect();
            Point {
                symbols,
                nodes,
                events_per_sec,
                p99_ms: median_of(rs, &|r| Some(r.ack_latency_ms.1)).unwrap_or(0.0),
                per_node_cpu_sec: median_of(rs, &|r| r.events_per_node_cpu_sec()),
                rows_per_event: median_of(rs, &|r| Some(r.rows_per_event)).unwrap_or(0.0),
                journal_rows_per_event: median_of(rs, &|r| Some(r.journal_rows_per_event)).unwrap_or(0.0),
                ratio_of_medians: events_per_sec / base,
                median_of_rounds: report::median(&mut side_by_side),
            }
        })
        .collect()
}
