//! Running a compiled query: scan, merge shards, filter, project or group, order, page.

use super::{AggregateCall, CompiledQuery, RowAgg};
use crate::aggregate::partial::{Partial, SetValue};
use crate::error::{Error, Result};
use crate::ingest::key;
use crate::lang::expr::Scalar;
use crate::lang::plan::{AggPlan, AppPlan, CellKind};
use crate::lang::types::{AttrType, Value};
use crate::store::schema::{Role, StoredRow, TableSchema};
use crate::store::{Mark, Reader, journal};
use hashbrown::{HashMap, HashSet};
use std::cmp::Ordering;

/// Rows of a query answer.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    pub columns: Vec<String>,
    /// The type of each column (`None` when a column is a bare null).
    pub types: Vec<Option<AttrType>>,
    pub records: Vec<Vec<Value>>,
}

/// How often a query reads again because a roll-up committed while it read.
const READ_ATTEMPTS: usize = 8;

/// Runs `q` against `store`.
///
/// Partitioned aggregations are rolled up lazily (docs/rollup.md): a shard's duration `k`
/// holds exactly the events before its mark `at[k]`, and its journal the events at or
/// after the finest mark `at[0]`. For a query per duration `i`, each shard's events come
/// from exactly one place: those before `at[i]` from `i` itself; the newer ones from the
/// finer duration `j` that holds them, that is, its rows from `max(at[j+1..=i])` on, or
/// from the journal, from `max(at[0..=i])` on, re-bucketed to `i`. The marks are read
/// before and after; a roll-up that committed in between (marks differ) means reading
/// again.
pub fn run(plan: &AppPlan, q: &CompiledQuery, store: &mut dyn Reader) -> Result<QueryResult> {
    let agg = &plan.aggregations[q.aggregation];
    let table = TableSchema::new(plan, agg, q.duration);
    let equal: Vec<(usize, Value)> =
        q.pushdown.iter().filter_map(|(name, v)| table.column(name).map(|c| (c, v.clone()))).collect();
    let level = agg.durations.iter().position(|d| *d == q.duration).unwrap_or(0);
    for _ in 0..READ_ATTEMPTS {
        let marks = if table.partitioned { store.marks(&agg.name)? } else { Vec::new() };
        let mut rows: Vec<StoredRow> =
            store.scan(&table, q.range.0, q.range.1, &equal)?.into_iter().map(|r| table.from_row(agg, r)).collect();
        if !marks.is_empty() {
            let at = marks_by_shard(agg, &marks);
            rows.extend(finer_rows(plan, agg, q, level, &at, store)?);
            rows.extend(journal_rows(plan, agg, q, level, &at, store)?);
            if store.marks(&agg.name)? != marks {
                continue;
            }
        }
        return Ok(answer(agg, q, merge_shards(agg, rows)));
    }
    Err(Error::Store {
        backend: "query",
        code: None,
        message: format!(
            "aggregation `{}` was rolled up {READ_ATTEMPTS} times while the query read it; try again",
            agg.name
        ),
        retryable: true,
    })
}

/// Per shard, each duration's mark; a duration without one holds every event (and a shard
/// without a finest mark has no journal).
fn marks_by_shard<'a>(agg: &AggPlan, marks: &'a [Mark]) -> HashMap<&'a str, Vec<i64>> {
    let mut at: HashMap<&str, Vec<i64>> = HashMap::new();
    for m in marks {
        if let Some(k) = agg.durations.iter().position(|d| *d == m.duration) {
            at.entry(m.shard.as_str()).or_insert_with(|| vec![i64::MAX; agg.durations.len()])[k] = m.at;
        }
    }
    at
}

/// The rows of durations finer than `level` that hold events its own rows do not yet
/// hold (per shard, by its marks), re-bucketed to `level`.
fn finer_rows(
    plan: &AppPlan,
    agg: &AggPlan,
    q: &CompiledQuery,
    level: usize,
    at: &HashMap<&str, Vec<i64>>,
    store: &mut dyn Reader,
) -> Result<Vec<StoredRow>> {
    let zone = &agg.zone;
    // A finer row counts when its bucket of `level` starts in the query's range.
    let (lo, hi) = (zone.bucket_ceil(q.duration, q.range.0), zone.bucket_ceil(q.duration, q.range.1));
    let mut out = Vec::new();
    for j in 0..level {
        // Shard → where duration j starts to serve it.
        let from: HashMap<&str, i64> = at
            .iter()
            .map(|(s, a)| (*s, a[j + 1..=level].iter().copied().max().unwrap_or(i64::MAX)))
            .filter(|(_, f)| *f != i64::MAX)
            .collect();
        let Some(least) = from.values().copied().min() else { continue };
        let start = lo.max(least);
        if start >= hi {
            continue;
        }
        let finer = TableSchema::new(plan, agg, agg.durations[j]);
        let equal: Vec<(usize, Value)> =
            q.pushdown.iter().filter_map(|(name, v)| finer.column(name).map(|c| (c, v.clone()))).collect();
        for row in store.scan(&finer, start, hi, &equal)? {
            let mut r = finer.from_row(agg, row);
            let serves = r.shard.as_deref().and_then(|s| from.get(s)).is_some_and(|f| r.bucket >= *f);
            if serves {
                r.bucket = zone.bucket_start(q.duration, r.bucket);
                out.push(r);
            }
        }
    }
    Ok(out)
}

/// The journal's partials that no duration up to `level` holds yet (per shard, those from
/// `max(at[0..=level])` on; a record may still hold older ones, which the finest duration
/// holds), re-bucketed to `level`.
fn journal_rows(
    plan: &AppPlan,
    agg: &AggPlan,
    q: &CompiledQuery,
    level: usize,
    at: &HashMap<&str, Vec<i64>>,
    store: &mut dyn Reader,
) -> Result<Vec<StoredRow>> {
    let from: HashMap<&str, i64> = at
        .iter()
        .filter(|(_, a)| a[0] != i64::MAX)
        .map(|(s, a)| (*s, a[..=level].iter().copied().max().unwrap_or(i64::MAX)))
        .collect();
    if from.is_empty() {
        return Ok(Vec::new());
    }
    let zone = &agg.zone;
    let (lo, hi) = (zone.bucket_ceil(q.duration, q.range.0), zone.bucket_ceil(q.duration, q.range.1));
    let finest = TableSchema::new(plan, agg, agg.durations[0]);
    let equal: Vec<(usize, Value)> =
        q.pushdown.iter().filter_map(|(name, v)| finest.column(name).map(|c| (c, v.clone()))).collect();
    let since = from.values().copied().min().unwrap_or(i64::MAX).max(lo);
    let kinds: Vec<CellKind> = agg.cells.iter().map(|c| c.kind).collect();
    let mut key_types = vec![AttrType::String; agg.group_by.len()];
    for c in &finest.columns {
        if let Role::Key(i) = c.role {
            key_types[i] = c.ty;
        }
    }
    let mut out = Vec::new();
    for (shard, record) in store.journal(&agg.name, since)? {
        let Some(&start) = from.get(shard.as_str()) else { continue };
        for e in journal::decode(&record, &kinds, &key_types)? {
            if e.bucket < start.max(lo) || e.bucket >= hi {
                continue;
            }
            let key = key::decode(&e.key, &key_types);
            if !equal.is_empty() {
                // As the store compares them: the row's column equal to the value.
                let row = finest.to_row(None, &key, e.bucket, &e.partial);
                let matches = equal.iter().all(|(c, v)| {
                    let ty = finest.columns[*c].ty;
                    !row[*c].is_null() && row[*c].clone().cast(ty) == v.clone().cast(ty)
                });
                if !matches {
                    continue;
                }
            }
            out.push(StoredRow {
                bucket: zone.bucket_start(q.duration, e.bucket),
                shard: Some(shard.clone()),
                key,
                partial: e.partial,
            });
        }
    }
    Ok(out)
}

/// Merges the stored rows of every shard into one partial per (bucket, group), sorted by
/// bucket then group. Latest values go by time stamp; a tie between shards goes to the
/// shard whose id sorts last, so every node answers alike.
fn merge_shards(agg: &AggPlan, mut stored: Vec<StoredRow>) -> Vec<(i64, Vec<Value>, Partial)> {
    let kinds: Vec<CellKind> = agg.cells.iter().map(|c| c.kind).collect();
    stored.sort_by(|a, b| a.shard.cmp(&b.shard));
    let mut rank = 0u64;
    let mut last_shard: Option<Option<String>> = None;
    let mut merged: HashMap<(i64, Vec<u8>), (Vec<Value>, Partial)> = HashMap::new();
    let mut scratch = Vec::new();
    for mut r in stored {
        if last_shard.as_ref() != Some(&r.shard) {
            rank += 1;
            last_shard = Some(r.shard.clone());
        }
        if let Some(l) = &mut r.partial.latest {
            l.seq = rank;
        }
        key::encode_values(&mut scratch, &r.key);
        match merged.entry((r.bucket, scratch.clone())) {
            hashbrown::hash_map::Entry::Occupied(mut e) => e.get_mut().1.merge_owned(r.partial, &kinds),
            hashbrown::hash_map::Entry::Vacant(e) => {
                e.insert((r.key, r.partial));
            }
        }
    }
    let mut out: Vec<(i64, Vec<Value>, Partial)> = merged.into_iter().map(|((b, _), (k, p))| (b, k, p)).collect();
    out.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| cmp_values(&a.1, &b.1)));
    out
}

fn cmp_values(a: &[Value], b: &[Value]) -> Ordering {
    a.iter().zip(b).map(|(x, y)| x.sort_cmp(y)).find(|o| *o != Ordering::Equal).unwrap_or(Ordering::Equal)
}

/// The query's answer from merged partials.
pub fn answer(agg: &AggPlan, q: &CompiledQuery, merged: Vec<(i64, Vec<Value>, Partial)>) -> QueryResult {
    let n_out = agg.outputs.len();
    let mut rows: Vec<Vec<Value>> = merged
        .into_iter()
        .map(|(bucket, key, p)| {
            let mut row = Vec::with_capacity(q.base.len());
            row.push(Value::Long(bucket));
            row.extend((0..n_out).map(|i| p.output(agg, i, &key)));
            row.extend(q.hidden_keys.iter().map(|&k| key[k].clone()));
            row
        })
        .collect();
    if let Some(on) = &q.on {
        rows.retain(|r| on.holds(r));
    }
    let types: Vec<Option<AttrType>> = q.select.iter().map(|(_, _, t)| *t).collect();
    let project = |ext: &Vec<Value>| -> Vec<Value> {
        q.select.iter().map(|(_, c, t)| t.map(|t| c.eval(ext).to_value(t)).unwrap_or(Value::Null)).collect()
    };
    // Each result: (outputs, outputs ++ extended row) — the second for having / order by.
    let mut results: Vec<(Vec<Value>, Vec<Value>)> = Vec::new();
    if !q.grouped {
        for r in rows {
            let out = project(&r);
            let mut combined = out.clone();
            combined.extend(r);
            results.push((out, combined));
        }
    } else {
        let mut groups: Vec<Vec<Vec<Value>>> = Vec::new();
        let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut scratch = Vec::new();
        for r in rows {
            let key_values: Vec<Value> = q.group_by.iter().map(|g| scalar_value(g.eval(&r))).collect();
            key::encode_values(&mut scratch, &key_values);
            let g = *index.entry(scratch.clone()).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[g].push(r);
        }
        for members in groups {
            let Some(last) = members.last() else { continue };
            let mut ext = last.clone();
            ext.extend(q.aggregates.iter().map(|a| aggregate(a, &members)));
            let out = project(&ext);
            let mut combined = out.clone();
            combined.extend(ext);
            if let Some(h) = &q.having
                && !h.holds(&combined)
            {
                continue;
            }
            results.push((out, combined));
        }
    }
    if !q.grouped
        && let Some(h) = &q.having
    {
        results.retain(|(_, c)| h.holds(c));
    }
    if !q.order_by.is_empty() {
        let mut keyed: Vec<(Vec<Value>, Vec<Value>)> = results
            .into_iter()
            .map(|(out, combined)| {
                let keys = q.order_by.iter().map(|(c, _)| scalar_value(c.eval(&combined))).collect();
                (keys, out)
            })
            .collect();
        keyed.sort_by(|(a, _), (b, _)| {
            for ((x, y), (_, desc)) in a.iter().zip(b).zip(&q.order_by) {
                let o = x.sort_cmp(y);
                let o = if *desc { o.reverse() } else { o };
                if o != Ordering::Equal {
                    return o;
                }
            }
            Ordering::Equal
        });
        results = keyed.into_iter().map(|(_, out)| (out, Vec::new())).collect();
    }
    let records: Vec<Vec<Value>> =
        results.into_iter().map(|(out, _)| out).skip(q.offset).take(q.limit.unwrap_or(usize::MAX)).collect();
    QueryResult { columns: q.select.iter().map(|(n, _, _)| n.clone()).collect(), types, records }
}

fn scalar_value(s: Scalar<'_>) -> Value {
    match s {
        Scalar::Null => Value::Null,
        Scalar::Int(i) => Value::Long(i),
        Scalar::Float(f) => Value::Double(f),
        Scalar::Bool(b) => Value::Bool(b),
        Scalar::Str(b) => Value::Str(String::from_utf8_lossy(b).into_owned()),
    }
}

fn aggregate(a: &AggregateCall, rows: &[Vec<Value>]) -> Value {
    let values = || rows.iter().map(|r| a.arg.as_ref().map(|c| scalar_value(c.eval(r))).unwrap_or(Value::Null));
    match a.func {
        RowAgg::Count => match &a.arg {
            None => Value::Long(rows.len() as i64),
            Some(_) => Value::Long(values().filter(|v| !v.is_null()).count() as i64),
        },
        RowAgg::Sum => {
            let vs: Vec<Value> = values().filter(|v| !v.is_null()).collect();
            if vs.is_empty() {
                Value::Null
            } else if a.ty == AttrType::Long {
                Value::Long(vs.iter().filter_map(Value::as_i64).fold(0i64, i64::wrapping_add))
            } else {
                Value::Double(vs.iter().filter_map(Value::as_f64).sum())
            }
        }
        RowAgg::Avg => {
            let vs: Vec<f64> = values().filter_map(|v| v.as_f64()).collect();
            if vs.is_empty() { Value::Null } else { Value::Double(vs.iter().sum::<f64>() / vs.len() as f64) }
        }
        RowAgg::Min | RowAgg::Max => {
            let best = values().filter(|v| !v.is_null()).reduce(|x, y| {
                let o = x.sort_cmp(&y);
                let keep_x = if a.func == RowAgg::Min { o != Ordering::Greater } else { o != Ordering::Less };
                if keep_x { x } else { y }
            });
            best.map(|v| v.cast(a.ty)).unwrap_or(Value::Null)
        }
        RowAgg::DistinctCount => {
            let set: HashSet<SetValue> = values().filter_map(|v| SetValue::from_value(&v)).collect();
            Value::Long(set.len() as i64)
        }
    }
}
