//! The figures of a run: the table at the end, the results JSON, and a sweep's chart.

use crate::drive::Published;
use crate::error::{Error, IoContext, Result};
use crate::verify::Verification;
use std::path::Path;

/// What was read from the spawned nodes themselves (all empty or zero when attached).
#[derive(Debug, Default)]
pub struct NodeFigures {
    pub peak_rss_bytes: Vec<u64>,
    pub rows_flushed: u64,
    /// Finest partials the nodes appended to their journals.
    pub journal_rows: u64,
    /// Flushes the nodes committed while the events were sent.
    pub flushes: u64,
    /// CPU seconds each node used while the events were sent.
    pub cpu_sec: Vec<f64>,
    /// Rows written by duration and kind (`tally_rows_written_total{duration,kind}`,
    /// summed over the nodes): `(duration, new, merged)`.
    pub rows_by_duration: Vec<(String, u64, u64)>,
    /// The flushers' time by phase (`tally_flush_phase_seconds_total`), summed.
    pub phase_sec: Vec<(String, f64)>,
}

impl NodeFigures {
    /// Reads `rows_by_duration` and `phase_sec` from scraped series.
    pub fn breakdown(&mut self, rows: &[(String, f64)], phases: &[(String, f64)]) {
        let label = |name: &str, key: &str| -> Option<String> {
            let at = name.find(&format!("{key}=\""))? + key.len() + 2;
            Some(name[at..].split('"').next()?.to_string())
        };
        for (name, v) in rows {
            let (Some(d), Some(kind)) = (label(name, "duration"), label(name, "kind")) else { continue };
            let i = match self.rows_by_duration.iter().position(|(x, _, _)| *x == d) {
                Some(i) => i,
                None => {
                    self.rows_by_duration.push((d, 0, 0));
                    self.rows_by_duration.len() - 1
                }
            };
            if kind == "new" {
                self.rows_by_duration[i].1 += *v as u64;
            } else {
                self.rows_by_duration[i].2 += *v as u64;
            }
        }
        self.phase_sec = phases.iter().filter_map(|(name, v)| Some((label(name, "phase")?, *v))).collect();
    }
}

/// One run's figures.
#[derive(Debug)]
pub struct RunReport {
    pub nodes: usize,
    pub events: u64,
    pub events_per_sec: f64,
    pub per_node_events: Vec<u64>,
    pub resent_batches: u64,
    /// Protocol version 2: resent batches the nodes had committed (answered DUPLICATE, not
    /// counted again).
    pub duplicate_batches: u64,
    /// Protocol version 2: connections made again after one broke.
    pub reconnects: u64,
    /// `--chaos kill-node`: nodes killed with SIGKILL and restarted.
    pub kills: u64,
    /// `--chaos store-restart`: store restarts.
    pub store_restarts: u64,
    /// `--chaos partition`: cuts of a node's client connections.
    pub partitions: u64,
    /// Nodes stopped and continued (`--chaos stall`).
    pub stalls: u64,
    pub ack_latency_ms: (f64, f64, f64, f64),
    pub peak_rss_bytes: Vec<u64>,
    /// Rows the nodes flushed per second of the run (all nodes, all durations).
    pub rows_flushed_per_sec: f64,
    /// Rows written per event acknowledged (all durations): what the store pays per event.
    pub rows_per_event: f64,
    /// Journal partials appended per event acknowledged (one record a flush holds them).
    pub journal_rows_per_event: f64,
    pub flushes: u64,
    /// CPU seconds each spawned node used while the events were sent (empty when attached).
    pub node_cpu_sec: Vec<f64>,
    /// `(duration, new rows, merged rows)` written, all nodes.
    pub rows_by_duration: Vec<(String, u64, u64)>,
    /// The flushers' time by phase (rollup, encode, read, store), seconds, all nodes.
    pub phase_sec: Vec<(String, f64)>,
    pub verified: bool,
    pub mismatches: Vec<String>,
    pub rows_checked: usize,
    pub config: serde_json::Value,
}

impl RunReport {
    pub fn new(
        nodes: usize,
        p: &Published,
        v: Option<&Verification>,
        nodes_seen: &NodeFigures,
        config: serde_json::Value,
    ) -> RunReport {
        let q = |x: f64| p.latency_us.value_at_quantile(x) as f64 / 1000.0;
        RunReport {
            nodes,
            events: p.acked_events,
            events_per_sec: p.acked_events as f64 / p.elapsed.as_secs_f64(),
            per_node_events: p.per_target.clone(),
            resent_batches: p.resent,
            duplicate_batches: p.duplicates,
            reconnects: p.reconnects,
            kills: 0,
            store_restarts: 0,
            partitions: 0,
            stalls: 0,
            ack_latency_ms: (q(0.5), q(0.99), q(0.999), p.latency_us.max() as f64 / 1000.0),
            peak_rss_bytes: nodes_seen.peak_rss_bytes.clone(),
            rows_flushed_per_sec: nodes_seen.rows_flushed as f64 / p.elapsed.as_secs_f64(),
            rows_per_event: nodes_seen.rows_flushed as f64 / p.acked_events.max(1) as f64,
            journal_rows_per_event: nodes_seen.journal_rows as f64 / p.acked_events.max(1) as f64,
            flushes: nodes_seen.flushes,
            node_cpu_sec: nodes_seen.cpu_sec.clone(),
            rows_by_duration: nodes_seen.rows_by_duration.clone(),
            phase_sec: nodes_seen.phase_sec.clone(),
            verified: v.is_some_and(|v| v.mismatches.is_empty()),
            mismatches: v.map(|v| v.mismatches.clone()).unwrap_or_default(),
            rows_checked: v.map(|v| v.rows).unwrap_or(0),
            config,
        }
    }

    /// Events per CPU-second of the nodes (all events over all nodes' CPU time while they
    /// were sent): the per-core figure, whatever the machine's other load.
    pub fn events_per_node_cpu_sec(&self) -> Option<f64> {
        let cpu: f64 = self.node_cpu_sec.iter().sum();
        (cpu > 0.0).then(|| self.events as f64 / cpu)
    }

    pub fn json(&self) -> serde_json::Value {
        let (p50, p99, p999, max) = self.ack_latency_ms;
        serde_json::json!({
            "nodes": self.nodes,
            "events": self.events,
            "events_per_sec": self.events_per_sec.round(),
            "events_per_node": self.per_node_events,
            "resent_batches": self.resent_batches,
            "duplicate_batches": self.duplicate_batches,
            "reconnects": self.reconnects,
            "kills": self.kills,
            "store_restarts": self.store_restarts,
            "partitions": self.partitions,
            "stalls": self.stalls,
            "verified": self.verified,
            "rows_checked": self.rows_checked,
            "mismatches": self.mismatches,
            "ack_latency_ms": {"p50": p50, "p99": p99, "p999": p999, "max": max},
            "peak_rss_bytes": self.peak_rss_bytes,
            "rows_flushed_per_sec": self.rows_flushed_per_sec.round(),
            "rows_per_event": self.rows_per_event,
            "journal_rows_per_event": self.journal_rows_per_event,
            "flushes": self.flushes,
            "node_cpu_sec": self.node_cpu_sec,
            "rows_by_duration": self.rows_by_duration.iter().map(|(d, n, m)| serde_json::json!({
                "duration": d,
                "new": n,
                "merged": m,
                "new_per_event": *n as f64 / self.events.max(1) as f64,
                "merged_per_event": *m as f64 / self.events.max(1) as f64,
                "per_flush": (*n + *m) as f64 / self.flushes.max(1) as f64,
            })).collect::<Vec<_>>(),
            "flush_phase_sec": self.phase_sec.iter().map(|(p, s)| (p.clone(), serde_json::json!(s))).collect::<serde_json::Map<_, _>>(),
            "events_per_node_cpu_sec": self.events_per_node_cpu_sec().map(f64::round),
            "config": self.config,
        })
    }

    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        let (p50, p99, p999, max) = self.ack_latency_ms;
        let mut t = String::new();
        t.push_str(&format!("{:<28} {}\n", "nodes", self.nodes));
        t.push_str(&format!("{:<28} {}\n", "events acknowledged", self.events));
        t.push_str(&format!("{:<28} {:.0}\n", "events/s (all nodes)", self.events_per_sec));
        for (i, e) in self.per_node_events.iter().enumerate() {
            t.push_str(&format!("{:<28} {e}\n", format!("  node-{}", i + 1)));
        }
        t.push_str(&format!("{:<28} p50 {p50:.1}, p99 {p99:.1}, p99.9 {p999:.1}, max {max:.1}\n", "ack latency (ms)"));
        let rss: Vec<String> =
            self.peak_rss_bytes.iter().map(|b| format!("{:.0} MiB", *b as f64 / 1048576.0)).collect();
        if !rss.is_empty() {
            t.push_str(&format!("{:<28} {}\n", "peak RSS per node", rss.join(", ")));
        }
        t.push_str(&format!("{:<28} {:.0}\n", "rows flushed/s (all nodes)", self.rows_flushed_per_sec));
        t.push_str(&format!(
            "{:<28} {:.5} ({} flushes)\n",
            "rows written per event", self.rows_per_event, self.flushes
        ));
        t.push_str(&format!("{:<28} {:.5}\n", "journal partials per event", self.journal_rows_per_event));
        let by: Vec<String> = self
            .rows_by_duration
            .iter()
            .filter(|(_, n, m)| n + m > 0)
            .map(|(d, n, m)| format!("{d} {n} new + {m} merged"))
            .collect();
        if !by.is_empty() {
            t.push_str(&format!("{:<28} {}\n", "rows by duration", by.join(", ")));
        }
        if !self.phase_sec.is_empty() {
            let ph: Vec<String> = self.phase_sec.iter().map(|(p, s)| format!("{p} {s:.2}")).collect();
            t.push_str(&format!("{:<28} {}\n", "flusher time (s)", ph.join(", ")));
        }
        if let Some(per_cpu) = self.events_per_node_cpu_sec() {
            let cpu: Vec<String> = self.node_cpu_sec.iter().map(|c| format!("{c:.2}")).collect();
            t.push_str(&format!("{:<28} {} ({per_cpu:.0} events per node CPU-s)\n", "node CPU s", cpu.join(", ")));
        }
        t.push_str(&format!("{:<28} {}\n", "batches sent again", self.resent_batches));
        if self.reconnects > 0
            || self.duplicate_batches > 0
            || self.kills + self.store_restarts + self.partitions + self.stalls > 0
        {
            t.push_str(&format!("{:<28} {}\n", "nodes killed (SIGKILL)", self.kills));
            t.push_str(&format!("{:<28} {}\n", "store restarts", self.store_restarts));
            t.push_str(&format!("{:<28} {}\n", "partitions", self.partitions));
            t.push_str(&format!("{:<28} {}\n", "nodes stalled (SIGSTOP)", self.stalls));
            t.push_str(&format!("{:<28} {}\n", "reconnects", self.reconnects));
            t.push_str(&format!("{:<28} {}\n", "duplicates suppressed", self.duplicate_batches));
        }
        t.push_str(&format!(
            "{:<28} {}\n",
            "verified",
            if self.verified { format!("yes ({} rows, every duration)", self.rows_checked) } else { "NO".into() }
        ));
        t
    }
}

/// Writes a results document as pretty JSON, making its folder if needed.
pub fn write_json(path: &Path, doc: serde_json::Value) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).doing(|| format!("cannot create {}", parent.display()))?;
    }
    let text = serde_json::to_string_pretty(&doc).expect("a JSON value always serializes");
    std::fs::write(path, text + "\n").doing(|| format!("cannot write {}", path.display()))
}

/// The results document: the figures plus the git sha and the machine.
pub fn document(figures: serde_json::Value) -> serde_json::Value {
    let mut doc = figures;
    doc["git_sha"] = serde_json::Value::String(git_sha());
    doc["machine"] = machine();
    doc
}

pub fn git_sha() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The commit `tally --version` says the binary at `tally` was built from (cli/build.rs).
pub fn binary_sha(tally: &Path) -> Option<String> {
    let out = std::process::Command::new(tally).arg("--version").output().ok()?;
    parse_version_sha(&String::from_utf8_lossy(&out.stdout))
}

/// `tally 0.1.0 (abc1234)` -> `abc1234`.
fn parse_version_sha(version: &str) -> Option<String> {
    let inner = version.trim().rsplit_once('(')?.1.strip_suffix(')')?;
    (!inner.is_empty() && inner != "unknown").then(|| inner.to_string())
}

pub fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    serde_json::json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "os": std::env::consts::OS,
    })
}

/// The median (the mean of the middle two for an even count). Sorts `v`.
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 { v[m] } else { (v[m - 1] + v[m]) / 2.0 }
}

/// A sweep's chart: events/s and p99 ACK latency against the node count, as SVG.
pub fn chart(path: &Path, points: &[(usize, f64, f64)]) -> Result<()> {
    draw(path, points).map_err(|e| Error::Chart { path: path.to_path_buf(), message: e.to_string() })
}

fn draw(path: &Path, points: &[(usize, f64, f64)]) -> std::result::Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(450);
    let rate: Vec<(f64, f64)> = points.iter().map(|p| (p.0 as f64, p.1 / 1e6)).collect();
    let p99: Vec<(f64, f64)> = points.iter().map(|p| (p.0 as f64, p.2)).collect();
    panel(&left, "throughput (M events/s)", &rate, &BLUE)?;
    panel(&right, "p99 ACK latency (ms)", &p99, &RED)?;
    root.present()?;
    Ok(())
}

/// One chart of a figure against the node count: a line through the points, each marked.
fn panel<DB: plotters::prelude::DrawingBackend>(
    area: &plotters::prelude::DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    points: &[(f64, f64)],
    color: &plotters::prelude::RGBColor,
) -> std::result::Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    use plotters::prelude::*;
    let max_x = points.iter().map(|p| p.0).fold(1.0, f64::max);
    let max_y = points.iter().map(|p| p.1).fold(1.0, f64::max) * 1.15;
    let mut c = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..max_x + 0.5, 0.0..max_y)?;
    c.configure_mesh().x_desc("nodes").draw()?;
    c.draw_series(LineSeries::new(points.iter().copied(), color))?;
    c.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{median, parse_version_sha};

    #[test]
    fn the_binary_sha_is_read_from_its_version_line() {
        assert_eq!(parse_version_sha("tally 0.1.0 (10c4e1b)\n").as_deref(), Some("10c4e1b"));
        assert_eq!(parse_version_sha("tally 0.1.0 (10c4e1b-dirty)").as_deref(), Some("10c4e1b-dirty"));
        assert_eq!(parse_version_sha("tally 0.1.0 (unknown)"), None);
        assert_eq!(parse_version_sha("tally 0.1.0"), None);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&mut [7.0]), 7.0);
    }
}
