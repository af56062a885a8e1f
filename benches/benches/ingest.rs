//! The per-event path: decode an encoded event and update its group's partial, for the
//! seed's TradeStream aggregated every sec ... year by symbol (1,000 symbols, ten events
//! per symbol per second), against the ceiling: a bare hash-map update keyed by
//! (symbol id, second) over the same event sequence, with no decoding and no interning.
//!
//! `scripts/bench_engine_core.py` runs this and records the figures in results/; the
//! workload is in `src/lib.rs`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally::aggregate::accumulator::{Program, State};
use tally::aggregate::intern::Interner;
use tally::aggregate::message::Batch;
use tally::aggregate::worker::Worker;
use tally::ingest::wire::BatchView;
use tally_benches::{EVENTS, TYPES, batches, plan, workload, workload_of};

/// The time `iters` passes of `batches` take through `worker`, each from an empty state
/// (as after a flush). The flush's swap is outside the timing; the spare keeps its memory.
fn from_empty(worker: &mut Worker, batches: &[Batch], iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        for batch in batches {
            worker.process(batch);
        }
        total += start.elapsed();
        let mut old = worker.swap(vec![State::default()]);
        black_box(old[0].len());
        old.iter_mut().for_each(State::clear);
        worker.swap(old);
    }
    total
}

/// Decode + accumulate, exactly as a worker does, from empty maps (as after a flush).
fn per_event_path(c: &mut Criterion) {
    let plan = plan();
    let programs: Vec<Arc<Program>> =
        plan.aggregations.iter().map(|a| Arc::new(Program::new(a, &plan.streams[a.stream]))).collect();
    let w = workload();
    let batches = batches(&w);
    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Elements(EVENTS as u64));
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    let mut worker = Worker::new(0, plan.clone(), &programs);
    g.bench_function("decode_and_update", |b| b.iter_custom(|iters| from_empty(&mut worker, &batches, iters)));

    // The same with 100,000 keys, ten events per key per second (event time 1 µs apart):
    // each flush's state holds every key, more than the cache does.
    let many = tally_benches::batches(&workload_of(100_000, 1));
    g.bench_function("decode_and_update_100k_keys", |b| b.iter_custom(|iters| from_empty(&mut worker, &many, iters)));
    drop(many);

    // The parts of the path, for the breakdown in results/: reading the events alone, and
    // reading them plus interning the group key.
    g.bench_function("decode_only", |b| {
        b.iter(|| {
            let mut acc = 0u64;
            for batch in &batches {
                let view = BatchView::parse(&batch.data, &TYPES).expect("valid");
                for i in 0..view.len() {
                    let row = view.event(i);
                    acc = acc.wrapping_add(row.word(1) ^ row.word(2) ^ row.word(3) ^ row.str_bytes(0).len() as u64);
                }
            }
            black_box(acc)
        })
    });
    let mut keys = Interner::default();
    g.bench_function("decode_and_intern_key", |b| {
        b.iter(|| {
            let mut acc = 0u64;
            for batch in &batches {
                let view = BatchView::parse(&batch.data, &TYPES).expect("valid");
                for i in 0..view.len() {
                    let row = view.event(i);
                    let id = keys.intern(row.str_bytes(0));
                    acc = acc.wrapping_add(id as u64 ^ row.word(1) ^ row.word(2) ^ row.word(3));
                }
            }
            black_box(acc)
        })
    });

    // The ceiling: the bare map update the architecture budgets (~30 M/s/core).
    #[derive(Default, Clone, Copy)]
    struct Bare {
        sum_price: f64,
        count_price: i64,
        sum_quantity: i64,
    }
    let mut map: hashbrown::HashMap<(u32, i64), Bare, foldhash::fast::FixedState> = Default::default();
    g.bench_function("bare_hashmap_update", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                map.clear();
                let start = Instant::now();
                for i in 0..EVENTS {
                    let second = w.times[i].div_euclid(1000) * 1000;
                    let p = map.entry((w.symbols[i], second)).or_default();
                    p.sum_price += w.prices[i];
                    p.count_price += 1;
                    p.sum_quantity += w.quantities[i];
                }
                total += start.elapsed();
                black_box(map.len());
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, per_event_path);
criterion_main!(benches);
