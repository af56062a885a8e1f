//! Faults injected while a run publishes (`--chaos`), to show that what is acknowledged
//! is counted exactly once whatever fails (docs/delivery.md).

use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::proxy::Proxy;
use crate::run::Chaos;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What to inject, and how often.
#[derive(Debug, Clone)]
pub struct Plan {
    pub kind: Chaos,
    pub every_sec: f64,
    /// `--chaos store-restart`: the command that restarts the store (run by `sh -c`).
    pub command: Option<String>,
}

/// Injects `plan.kind` every `plan.every_sec` seconds until `done`: a node killed and
/// restarted, the store restarted, a node's proxy cut for half the period, or a node
/// stopped (SIGSTOP) for half the period and continued. Returns how
/// many faults it injected.
pub fn inject(plan: &Plan, cluster: &Mutex<Option<Cluster>>, proxies: &[Proxy], done: &AtomicBool) -> Result<u64> {
    let (kind, every_sec) = (plan.kind, plan.every_sec);
    let every = Duration::from_secs_f64(every_sec.max(0.05));
    // A fixed seed: the same run kills the same nodes in the same order.
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut injected = 0;
    let mut next = Instant::now() + every;
    while !done.load(Ordering::SeqCst) {
        if Instant::now() < next {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        next += every;
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        match kind {
            Chaos::KillNode => {
                let mut guard = cluster.lock().expect("the cluster lock");
                let Some(c) = guard.as_mut() else { return Ok(injected) };
                let i = (rng % c.nodes.len() as u64) as usize;
                c.nodes[i].kill_and_restart()?;
            }
            Chaos::StoreRestart => {
                let cmd = plan.command.as_deref().ok_or_else(|| {
                    Error::Usage("--chaos store-restart needs --chaos-command (what restarts the store)".into())
                })?;
                let status = std::process::Command::new("sh").args(["-c", cmd]).status();
                if !status.as_ref().is_ok_and(|s| s.success()) {
                    return Err(Error::Node(format!("`{cmd}` (--chaos-command) failed: {status:?}")));
                }
            }
            Chaos::Stall => {
                // The lock is held while the node is stopped: nothing else restarts it.
                let guard = cluster.lock().expect("the cluster lock");
                let Some(c) = guard.as_ref() else { return Ok(injected) };
                let node = &c.nodes[(rng % c.nodes.len() as u64) as usize];
                node.pause(true)?;
                let resume = Instant::now() + every / 2;
                while Instant::now() < resume && !done.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                node.pause(false)?;
            }
            Chaos::Partition => {
                let i = (rng % proxies.len().max(1) as u64) as usize;
                let Some(p) = proxies.get(i) else { return Ok(injected) };
                p.cut(true);
                let heal = Instant::now() + every / 2;
                while Instant::now() < heal && !done.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                p.cut(false);
            }
        }
        injected += 1;
    }
    Ok(injected)
}
