//! The check that makes a run worth anything: every (duration, bucket, symbol) row the
//! cluster answers, merged over all shards, against what the generated events add up to —
//! quantities and trade counts exactly, average prices to 1e-9 relative.

use crate::error::{Error, IoContext, Result};
use crate::{DURATIONS, Expected, Prepared, symbol_name};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// The outcome of a verification.
#[derive(Debug, Default)]
pub struct Verification {
    /// Rows compared, over all durations.
    pub rows: usize,
    /// What differs, one line each (the first few hundred).
    pub mismatches: Vec<String>,
    /// Per duration: (total quantity, trades, rows) as the cluster answered.
    pub per_duration: Vec<(&'static str, i64, i64, usize)>,
}

const PER: [&str; 6] = ["seconds", "minutes", "hours", "days", "months", "years"];

/// Queries the store through `tally query` for every duration over the events' span.
pub fn verify(
    tally: &Path,
    app: &Path,
    aggregation: &str,
    config: &Path,
    store: &str,
    work: &Prepared,
) -> Result<Verification> {
    let expected = &work.expected;
    let (from, to) = work.workload.span();
    let mut v = Verification::default();
    let mut mismatches = 0usize;
    for (d, per) in PER.iter().enumerate() {
        // Bucket starts can precede the first event (a month starts before it).
        let q = format!(
            "from {aggregation} within {}L, {}L per '{per}' select AGG_TIMESTAMP, symbol, total, trades, avgPrice",
            from - 366 * 86_400_000,
            to + 1
        );
        let out = Command::new(tally)
            .args(["query", "--app"])
            .arg(app)
            .arg("--config")
            .arg(config)
            .args(["--store", store, "--format", "json", &q])
            .output()
            .doing(|| format!("cannot run {}", tally.display()))?;
        if !out.status.success() {
            return Err(Error::Query(format!(
                "query per {per} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| Error::Query(format!("the answer of the query per {per} is not JSON: {e}")))?;
        let mut got: BTreeMap<(i64, String), (i64, i64, f64)> = BTreeMap::new();
        for r in answer["records"].as_array().into_iter().flatten() {
            got.insert(
                (r[0].as_i64().unwrap_or(i64::MIN), r[1].as_str().unwrap_or("").to_string()),
                (r[2].as_i64().unwrap_or(-1), r[3].as_i64().unwrap_or(-1), r[4].as_f64().unwrap_or(f64::NAN)),
            );
        }
        let want: BTreeMap<(i64, String), Expected> = expected
            .range((d, i64::MIN, 0)..=(d, i64::MAX, u32::MAX))
            .map(|((_, b, s), e)| ((*b, symbol_name(*s)), *e))
            .collect();
        for (key, e) in &want {
            let avg = e.price_sum / e.trades as f64;
            match got.get(key) {
                Some(&(q, t, a)) if q == e.quantity && t == e.trades && ((a - avg) / avg).abs() <= 1e-9 => {}
                other => {
                    mismatches += 1;
                    if v.mismatches.len() < 200 {
                        v.mismatches.push(format!(
                            "per {per}, bucket {}, {}: expected (total {}, trades {}, avgPrice {avg}), got {other:?}",
                            key.0, key.1, e.quantity, e.trades
                        ));
                    }
                }
            }
        }
        for key in got.keys().filter(|k| !want.contains_key(*k)) {
            mismatches += 1;
            if v.mismatches.len() < 200 {
                v.mismatches.push(format!("per {per}, bucket {}, {}: a row no event accounts for", key.0, key.1));
            }
        }
        v.rows += want.len();
        v.per_duration.push((PER[d], got.values().map(|g| g.0).sum(), got.values().map(|g| g.1).sum(), got.len()));
        let _ = DURATIONS[d];
    }
    if mismatches > v.mismatches.len() {
        v.mismatches.push(format!("… {} more", mismatches - v.mismatches.len()));
    }
    Ok(v)
}
