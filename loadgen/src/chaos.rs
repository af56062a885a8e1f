//! Faults injected while a run publishes (`--chaos`), to show that what is acknowledged
//! is counted exactly once whatever fails (docs/delivery.md).

use crate::cluster::Cluster;
use crate::error::Result;
use crate::run::Chaos;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Injects `kind` every `every_sec` seconds until `done`; returns how many faults it
/// injected.
pub fn inject(kind: Chaos, every_sec: f64, cluster: &Mutex<Option<Cluster>>, done: &AtomicBool) -> Result<u64> {
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
        let mut guard = cluster.lock().expect("the cluster lock");
        let Some(c) = guard.as_mut() else { return Ok(injected) };
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let i = (rng % c.nodes.len() as u64) as usize;
        match kind {
            Chaos::KillNode => c.nodes[i].kill_and_restart()?,
        }
        injected += 1;
    }
    Ok(injected)
}
