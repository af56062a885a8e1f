//! Runs the per-event path of the engine-core bench (`benches/ingest.rs`) under a
//! profiler: `ITERS=3 valgrind --tool=callgrind target/release/examples/per_event`, and the
//! same with `ITERS=1`; the difference over 2,000,000 is the instructions an event costs,
//! a figure that does not depend on how busy the machine is.

use std::hint::black_box;
use std::sync::Arc;
use tally::aggregate::accumulator::{Program, State};
use tally::aggregate::worker::Worker;
use tally_benches::{batches, plan, workload};

fn main() {
    let plan = plan();
    let programs: Vec<Arc<Program>> =
        plan.aggregations.iter().map(|a| Arc::new(Program::new(a, &plan.streams[a.stream]))).collect();
    let batches = batches(&workload());
    let mut worker = Worker::new(0, plan.clone(), &programs);
    let iters: usize = std::env::var("ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    for _ in 0..iters {
        for batch in &batches {
            worker.process(batch);
        }
        let mut old = worker.swap(vec![State::default()]);
        black_box(old[0].len());
        old.iter_mut().for_each(State::clear);
        worker.swap(old);
    }
}
