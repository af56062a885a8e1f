//! The nodes a run drives: `tally serve` processes it starts (each with its own node id and
//! shard id, one shared store), or running nodes it attaches to.

use crate::error::{Error, IoContext, Result};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// One node the run started.
#[derive(Debug)]
pub struct Node {
    pub id: String,
    pub config: PathBuf,
    pub ingest: String,
    pub http: String,
    child: Child,
    /// How it was started, to start it again after a kill (`--chaos kill-node`).
    launch: Launch,
}

/// What starts one node: `tally serve` with its files, on given addresses.
#[derive(Debug, Clone)]
struct Launch {
    tally: PathBuf,
    app: PathBuf,
    store: String,
    cpus: Option<String>,
    log: PathBuf,
}

impl Launch {
    /// Starts the node and waits until it listens; returns it with its addresses.
    fn start(&self, id: &str, config: &Path, ingest: &str, http: &str) -> Result<(Child, String, String)> {
        let mut cmd = match &self.cpus {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.args(["-c", cpus]).arg(&self.tally);
                c
            }
            None => Command::new(&self.tally),
        };
        // The node's stderr goes to a file, not a pipe: nothing reads a pipe while the
        // run goes on, and a node that logs more than the pipe holds would block in
        // its next write (its flush thread, say) and look slow. Appended: a restarted node
        // keeps what it logged before.
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .doing(|| format!("cannot create {}", self.log.display()))?;
        let mut child = cmd
            .args(["serve", "--app"])
            .arg(&self.app)
            .arg("--config")
            .arg(config)
            .args(["--store", &self.store, "--ingest", ingest, "--http", http])
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .doing(|| format!("cannot start {} for {id}", self.tally.display()))?;
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("piped"))
            .read_line(&mut line)
            .doing(|| format!("cannot read what node {id} printed"))?;
        let Some((ingest, http)) = line.trim().strip_prefix("listening ingest=").and_then(|r| r.split_once(" http="))
        else {
            // It printed no address: it ended (stdout closed), or printed something else
            // and may still run. Stop it either way, so that waiting cannot hang and its
            // log is complete.
            let _ = child.kill();
            let _ = child.wait();
            let err = std::fs::read_to_string(&self.log).unwrap_or_default();
            return Err(Error::Node(format!("node {id} did not start: {}", err.trim())));
        };
        Ok((child, ingest.to_string(), http.to_string()))
    }
}

impl Node {
    /// SIGKILL (no last flush, no acks), then the same node (id, files, addresses) again.
    pub fn kill_and_restart(&mut self) -> Result<()> {
        let _ = self.child.kill();
        // Reaped at once: a zombie would still look alive to the shard registry.
        let _ = self.child.wait();
        let (child, _, _) = self.launch.start(&self.id, &self.config, &self.ingest, &self.http)?;
        self.child = child;
        Ok(())
    }
}

impl Node {
    /// SIGSTOP (`stop == true`) or SIGCONT: the node stops reading, writing, flushing and
    /// renewing its lease, without its connections ending (`--chaos stall`).
    pub fn pause(&self, stop: bool) -> Result<()> {
        let sig = if stop { "-STOP" } else { "-CONT" };
        let status = Command::new("kill").args([sig, &self.child.id().to_string()]).status();
        if !status.as_ref().is_ok_and(|s| s.success()) {
            return Err(Error::Node(format!("kill {sig} of node {} failed: {status:?}", self.id)));
        }
        Ok(())
    }
}

/// The nodes of a run.
#[derive(Debug)]
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub app: PathBuf,
    /// The aggregation's name in the app (its tables are `<name>_SECONDS` …).
    pub aggregation: String,
    pub store: String,
    /// CPU cgroups made for the nodes (removed at stop).
    cgroups: Vec<PathBuf>,
}

/// How to start the nodes.
#[derive(Debug, Clone)]
pub struct Spawn<'a> {
    pub tally: &'a Path,
    pub work: &'a Path,
    pub nodes: usize,
    pub store: &'a str,
    pub flush_interval: &'a str,
    pub workers: Option<usize>,
    /// Run each node under `taskset -c CPUS` (the CPU list of node i is `cpus[i % len]`).
    pub cpus: &'a [String],
    /// Hold each node to this share of one CPU with a CPU cgroup quota (cgroup v2
    /// `cpu.max`, or v1 `cpu.cfs_quota_us`), so that the node count and not the machine is
    /// what a sweep varies. Needs write access to the cgroup file system (root).
    pub cpu_quota: Option<f64>,
}

impl Cluster {
    /// Starts `nodes` nodes `node-1` … (node id = shard id) of [`crate::app`] on one store,
    /// each on free ports, and waits until each listens.
    pub fn spawn(s: &Spawn<'_>) -> Result<Cluster> {
        let app = s.work.join("app.siddhi");
        let aggregation = crate::run_aggregation();
        std::fs::write(&app, crate::app(&aggregation)).doing(|| format!("cannot write {}", app.display()))?;
        let mut nodes = Vec::new();
        let mut cgroups = Vec::new();
        for n in 0..s.nodes {
            let id = format!("node-{}", n + 1);
            let config = s.work.join(format!("{id}.yaml"));
            let workers = s.workers.map(|w| format!("  workers: {w}\n")).unwrap_or_default();
            std::fs::write(
                &config,
                format!(
                    "wso2.carbon:\n  id: {id}\nsiddhi:\n  properties:\n    partitionById: true\n    shardId: {id}\ntally:\n  flush_interval: {}\n{workers}",
                    s.flush_interval
                ),
            )
            .doing(|| format!("cannot write {}", config.display()))?;
            let launch = Launch {
                tally: s.tally.to_path_buf(),
                app: app.clone(),
                store: s.store.to_string(),
                cpus: s.cpus.get(n % s.cpus.len().max(1)).cloned(),
                log: s.work.join(format!("{id}.log")),
            };
            let (child, ingest, http) = launch.start(&id, &config, "127.0.0.1:0", "127.0.0.1:0")?;
            if let Some(share) = s.cpu_quota {
                cgroups.push(limit_cpu(child.id(), &id, share)?);
            }
            nodes.push(Node { id, config, ingest, http, child, launch });
        }
        Ok(Cluster { nodes, app, aggregation, store: s.store.to_string(), cgroups })
    }

    /// Rows each node has flushed so far (`tally_flush_rows_total` of its `/metrics`).
    pub fn flushed_rows(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| metric(&n.http, "tally_flush_rows_total").unwrap_or(0)).collect()
    }

    /// The series of every node whose name starts with `prefix`, summed over the nodes:
    /// `(name with labels, total)`, in the first node's order.
    pub fn summed(&self, prefix: &str) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> = Vec::new();
        for n in &self.nodes {
            for (name, v) in scrape(&n.http).unwrap_or_default() {
                if !name.starts_with(prefix) {
                    continue;
                }
                match out.iter_mut().find(|(k, _)| *k == name) {
                    Some((_, t)) => *t += v,
                    None => out.push((name, v)),
                }
            }
        }
        out
    }

    /// Finest partials each node has appended to its journal (`tally_journal_rows_total`).
    pub fn journal_rows(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| metric(&n.http, "tally_journal_rows_total").unwrap_or(0)).collect()
    }

    /// Flushes each node committed so far (its metrics).
    pub fn flushes(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| metric(&n.http, "tally_flushes_total").unwrap_or(0)).collect()
    }

    /// CPU seconds each node has used so far (user + system).
    pub fn cpu_seconds(&self) -> Vec<f64> {
        self.nodes.iter().map(|n| cpu_seconds(n.child.id())).collect()
    }

    /// Peak resident memory of each node so far (VmHWM), in bytes.
    pub fn peak_rss(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| peak_rss(n.child.id())).collect()
    }

    /// SIGTERM to every node, and their exits: each must stop cleanly (exit 0).
    pub fn stop(self) -> Result<()> {
        for n in &self.nodes {
            let _ = Command::new("kill").args(["-TERM", &n.child.id().to_string()]).status();
        }
        let mut failed = None;
        for n in self.nodes {
            let out = n.child.wait_with_output().doing(|| format!("cannot wait for node {} to stop", n.id))?;
            if !out.status.success() && failed.is_none() {
                failed = Some(format!(
                    "node {} did not stop cleanly ({}): {}",
                    n.id,
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        for g in &self.cgroups {
            let _ = std::fs::remove_dir(g);
        }
        match failed {
            Some(m) => Err(Error::Node(m)),
            None => Ok(()),
        }
    }
}

/// Puts process `pid` in a new CPU cgroup limited to `share` of one CPU; returns its path.
fn limit_cpu(pid: u32, id: &str, share: f64) -> Result<PathBuf> {
    // A short period (10 ms) spreads a small share evenly, rather than letting a node run
    // flat out and then stall for most of 100 ms (which would show up as ACK latency).
    let period: u64 = 10_000;
    let quota = ((share * period as f64) as u64).max(1_000);
    let name = format!("tally-loadgen-{}-{id}", std::process::id());
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let dir = if v2 { Path::new("/sys/fs/cgroup").join(&name) } else { Path::new("/sys/fs/cgroup/cpu").join(&name) };
    let context = || {
        format!(
            "cannot hold {id} to {share} CPU with a cgroup at {} (it needs root and a cgroup file system with the cpu controller; or use --cpus with taskset)",
            dir.display()
        )
    };
    std::fs::create_dir_all(&dir).doing(context)?;
    if v2 {
        std::fs::write(dir.join("cpu.max"), format!("{quota} {period}")).doing(context)?;
    } else {
        std::fs::write(dir.join("cpu.cfs_period_us"), period.to_string()).doing(context)?;
        std::fs::write(dir.join("cpu.cfs_quota_us"), quota.to_string()).doing(context)?;
    }
    std::fs::write(dir.join("cgroup.procs"), pid.to_string()).doing(context)?;
    Ok(dir)
}

/// User + system CPU seconds a process has used (10 ms ticks; 0 when unknown).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of stat (utime, stime), counted after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

/// VmHWM of a process, in bytes (0 when unknown).
pub fn peak_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// One counter of a node's `GET /metrics`.
pub fn metric(http: &str, name: &str) -> Option<u64> {
    scrape(http)?.into_iter().find(|(n, _)| n == name).map(|(_, v)| v as u64)
}

/// Every series of a node's `/metrics`: `(name with its labels, value)`.
pub fn scrape(http: &str) -> Option<Vec<(String, f64)>> {
    use std::io::Write;
    let mut c = std::net::TcpStream::connect(http).ok()?;
    write!(c, "GET /metrics HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    c.read_to_string(&mut text).ok()?;
    Some(
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (name, v) = l.rsplit_once(' ')?;
                Some((name.to_string(), v.trim().parse::<f64>().ok()?))
            })
            .collect(),
    )
}
