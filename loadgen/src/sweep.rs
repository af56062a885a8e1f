//! A sweep: the same workload at each node count, in interleaved rounds; medians, the
//! scaling two ways, the results JSON and a chart.

use crate::error::{Error, Result};
use crate::report::{self, RunReport};
use crate::run::{Load, prepare, run};

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

pub fn sweep(counts: &[usize], load: &Load, repeat: usize, out: &std::path::Path) -> Result<()> {
    if counts.is_empty() || repeat == 0 {
        return Err(Error::Usage("--nodes needs at least one node count and --repeat at least 1".into()));
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
    report::write_json(
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
        return Err(Error::Mismatch("verification failed at some node count (see the table and the JSON)".into()));
    }
    Ok(())
}
