use super::*;
use crate::aggregate::partial::Partial;
use crate::config::NodeConfig;
use crate::ingest::wire::{BatchBuilder, BatchView};
use crate::lang::plan::check;
use crate::lang::types::Value;

/// The partials of `events` (one batch), taken event by event with `add` and, checked
/// to be the same to the last slot, in rounds with `add_batch`.
fn run(app: &str, events: &[Vec<Value>]) -> (crate::lang::plan::AppPlan, Vec<(Vec<Value>, i64, Partial)>) {
    let plan = check(app, "t", &NodeConfig::default()).unwrap();
    let (program, state) = both_ways(&plan, events);
    assert!(state.events <= events.len() as u64);
    let mut out = Vec::new();
    state.append_partials(&program, &mut out);
    let mut decoded: Vec<(Vec<Value>, i64, Partial)> =
        out.into_iter().map(|(k, b, p)| (key::decode(&k, program.key_types()), b, p)).collect();
    decoded.sort_by(|a, b| (a.1, format!("{:?}", a.0)).cmp(&(b.1, format!("{:?}", b.0))));
    (plan, decoded)
}

/// Takes `events` event by event and by batch; asserts both give the same state (the
/// same partials in the same slots, the same event count) and returns it.
fn both_ways(plan: &crate::lang::plan::AppPlan, events: &[Vec<Value>]) -> (Arc<Program>, State) {
    let s = &plan.streams[0];
    let types = &s.types;
    let program = Arc::new(Program::new(&plan.aggregations[0], s));
    let mut builder = BatchBuilder::new(types);
    for e in events {
        builder.push_values(e);
    }
    let buf = builder.finish();
    let view = BatchView::parse(&buf, types).unwrap();
    let mut one = Accumulator::new(&plan.aggregations[0], program.clone());
    for i in 0..view.len() {
        one.add(&view.event(i), 42_000, 7 + i as u64);
    }
    let mut batched = Accumulator::new(&plan.aggregations[0], program.clone());
    batched.add_batch(&view, 42_000, 7);
    let (one, batched) = (one.swap(State::default()), batched.swap(State::default()));
    let partials = |st: &State| {
        let mut out = Vec::new();
        st.append_partials(&program, &mut out);
        out
    };
    assert_eq!(one.events, batched.events);
    // Compared as values (sets compare as sets); no input here makes a NaN.
    assert_eq!(partials(&one), partials(&batched), "add_batch differs from add");
    (program, batched)
}

fn ev(sym: &str, price: Option<f32>, qty: i32, ts: i64) -> Vec<Value> {
    vec![Value::Str(sym.into()), price.map(Value::Float).unwrap_or(Value::Null), Value::Int(qty), Value::Long(ts)]
}

#[test]
fn sums_counts_min_max_latest_per_group_and_second() {
    let (plan, out) = run(
        "define stream S (symbol string, price float, quantity int, timestamp long);
         define aggregation A from S select symbol, avg(price) as avgPrice, sum(quantity) as q, min(price) as lo,
           max(price) as hi, count() as n, (price * quantity) as last, distinctCount(quantity) as dq
         group by symbol aggregate by timestamp every sec...min;",
        &[
            ev("WSO2", Some(50.0), 6, 1_496_289_950_000),
            ev("WSO2", Some(70.0), 10, 1_496_289_950_000),
            ev("IBM", Some(100.0), 26, 1_496_289_950_500),
            ev("WSO2", None, 6, 1_496_289_950_999),
            ev("WSO2", Some(1.0), 1, 1_496_289_951_000),
        ],
    );
    let a = &plan.aggregations[0];
    assert_eq!(out.len(), 3);
    let (key, bucket, p) = &out[1];
    assert_eq!((key.as_slice(), *bucket), (&[Value::Str("WSO2".into())][..], 1_496_289_950_000));
    let outputs: Vec<Value> = (0..a.outputs.len()).map(|i| p.output(a, i, key)).collect();
    assert_eq!(
        outputs,
        vec![
            Value::Str("WSO2".into()),
            Value::Double(60.0),
            Value::Long(22),
            Value::Float(50.0),
            Value::Float(70.0),
            Value::Long(3),
            Value::Null, // the latest event (…950999) has a null price, so null * 6 is null
            Value::Long(2),
        ]
    );
    let (_, _, ibm) = &out[0];
    assert_eq!(ibm.output(a, 6, &[]), Value::Float(2600.0));
    assert_eq!(out[2].1, 1_496_289_951_000);
}

#[test]
fn later_arrival_wins_equal_time_stamps_and_late_events_do_not_override() {
    let (plan, out) = run(
        "define stream S (symbol string, price float, quantity int, timestamp long);
         define aggregation A from S select symbol, sum(price) as t aggregate by timestamp every sec;",
        &[
            ev("A", Some(1.0), 1, 1000),
            ev("B", Some(1.0), 1, 1100),
            ev("C", Some(1.0), 1, 1050),
            ev("D", Some(1.0), 1, 1100),
        ],
    );
    let a = &plan.aggregations[0];
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].2.output(a, 0, &[]), Value::Str("D".into()));
    assert_eq!(out[0].2.output(a, 1, &[]), Value::Double(4.0));
}

#[test]
fn all_null_inputs_give_null_sum_and_avg_but_count_counts() {
    let (plan, out) = run(
        "define stream S (symbol string, price float, quantity int, timestamp long);
         define aggregation A from S select sum(price) as s, avg(price) as a, min(price) as m, count() as n
         aggregate by timestamp every sec;",
        &[ev("A", None, 1, 1000), ev("A", None, 1, 1001)],
    );
    let a = &plan.aggregations[0];
    let p = &out[0].2;
    let got: Vec<Value> = (0..4).map(|i| p.output(a, i, &[])).collect();
    assert_eq!(got, vec![Value::Null, Value::Null, Value::Null, Value::Long(2)]);
}

#[test]
fn filter_and_arrival_time() {
    let (plan, out) = run(
        "define stream S (symbol string, price float, quantity int, timestamp long);
         define aggregation A from S[quantity > 5] select sum(quantity) as q aggregate every sec;",
        &[ev("A", None, 1, 0), ev("A", None, 6, 0), ev("A", None, 7, 0)],
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1, 42_000, "arrival time given by the worker");
    assert_eq!(out[0].2.output(&plan.aggregations[0], 0, &[]), Value::Long(13));
}

#[test]
fn negative_zero_and_zero_are_one_float_group() {
    for ty in ["double", "float"] {
        let app = format!(
            "define stream S (k {ty}, q long, ts long);
             define aggregation A from S select k, sum(q) as t group by k aggregate by ts every sec;"
        );
        let v = |k: f64, q: i64| {
            let k = if ty == "double" { Value::Double(k) } else { Value::Float(k as f32) };
            vec![k, Value::Long(q), Value::Long(1_000)]
        };
        let (_, out) = run(&app, &[v(-0.0, 1), v(0.0, 2), v(1.5, 4)]);
        assert_eq!(out.len(), 2, "{ty}: {out:?}");
        assert_eq!(out[0].0[0].as_f64(), Some(0.0), "{ty}");
        assert!(out[0].0[0].as_f64().unwrap().is_sign_positive(), "{ty}: the stored key is +0.0");
        assert_eq!(out[0].2.num(0), crate::aggregate::partial::Num::Int(3), "{ty}");
    }
}

proptest::proptest! {
    /// In rounds or one by one, the same partials: keys that pack and keys too long to,
    /// nulls, late and out-of-order events, a filter, many keys (so the table grows
    /// within a batch) and few.
    #[test]
    fn a_batch_in_rounds_is_the_same_as_event_by_event(
        events in proptest::collection::vec(
            (0u32..3000, proptest::option::of(-5.0f32..5.0), -3i32..10, 0i64..4_000, 0u8..20),
            0..700,
        ),
        spread in proptest::prop_oneof![proptest::strategy::Just(3u32), proptest::strategy::Just(3000u32)],
    ) {
        let events: Vec<Vec<Value>> = events
            .into_iter()
            .map(|(k, price, q, ts, shape)| {
                let k = k % spread;
                let sym = match shape {
                    0 => Value::Null,
                    1 => Value::Str(format!("a-key-longer-than-fifteen-bytes-{k}")),
                    _ => Value::Str(format!("S{k}")),
                };
                vec![sym, price.map(Value::Float).unwrap_or(Value::Null), Value::Int(q), Value::Long(ts)]
            })
            .collect();
        for app in [
            "define stream S (symbol string, price float, quantity int, timestamp long);
             define aggregation A from S[quantity > 0] select symbol, avg(price) as a, sum(quantity) as q,
               max(price) as hi, (price * quantity) as last, distinctCount(quantity) as dq
             group by symbol aggregate by timestamp every sec...min;",
            "define stream S (symbol string, price float, quantity int, timestamp long);
             define aggregation A from S select quantity, count() as n group by quantity aggregate by timestamp every sec;",
            "define stream S (symbol string, price float, quantity int, timestamp long);
             define aggregation A from S select symbol, quantity, sum(price) as t group by symbol, quantity
             aggregate by timestamp every sec;",
            "define stream S (symbol string, price float, quantity int, timestamp long);
             define aggregation A from S select count() as n aggregate by timestamp every sec;",
        ] {
            let plan = check(app, "t", &NodeConfig::default()).unwrap();
            both_ways(&plan, &events);
        }
    }
}
