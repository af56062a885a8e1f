//! Roll-up: from the finest bucket into every declared duration.
//!
//! Each coarser bucket is the union of the finer buckets that start inside it (the bucket
//! property tests show they nest), so a duration is built by merging the partials of the
//! one below it: seconds into minutes, minutes into hours, and so on. The work is per
//! partial, not per event.

use crate::aggregate::partial::Partial;
use crate::ingest::key::KeyBytes;
use crate::lang::plan::{AggPlan, CellKind};
use crate::time::bucket::Bucketer;
use foldhash::fast::FixedState;
use hashbrown::HashMap;

/// Partials of one duration by (group key, bucket start).
pub type BucketMap = HashMap<(KeyBytes, i64), Partial, FixedState>;

/// Merges `entries` into `map`.
pub fn merge_entries(map: &mut BucketMap, entries: Vec<(KeyBytes, i64, Partial)>, kinds: &[CellKind]) {
    map.reserve(entries.len());
    for (key, bucket, p) in entries {
        match map.entry((key, bucket)) {
            hashbrown::hash_map::Entry::Occupied(mut e) => e.get_mut().merge_owned(p, kinds),
            hashbrown::hash_map::Entry::Vacant(e) => {
                e.insert(p);
            }
        }
    }
}

/// Merges every partial of `from` into `into`.
pub fn merge_maps(into: &mut BucketMap, from: BucketMap, kinds: &[CellKind]) {
    if into.is_empty() {
        *into = from;
        return;
    }
    merge_entries(into, from.into_iter().map(|((k, b), p)| (k, b, p)).collect(), kinds);
}

/// Rolls the finest duration's partials up into every duration of `agg`; the result has
/// one map per duration, in `agg.durations` order (the first is `finest` itself). Duration
/// `k` takes only the finest partials of buckets that start before `marks[k]`
/// (`node::marks`: the newer ones reach it later, when its mark moves; `i64::MAX` takes
/// all). Each mark is a bucket boundary of the duration below it, so a finer bucket is
/// wholly before a mark or wholly after it.
pub fn roll_up_before(agg: &AggPlan, kinds: &[CellKind], finest: BucketMap, marks: &[i64]) -> Vec<BucketMap> {
    let mut out: Vec<BucketMap> = Vec::with_capacity(agg.durations.len());
    out.push(finest);
    for (k, &d) in agg.durations.iter().enumerate().skip(1) {
        let mut bucketer = Bucketer::new(agg.zone.clone(), d);
        // From the duration below when its mark is not lower (it then holds every partial
        // this one takes, and fewer of them); else from the finest.
        let from = if marks[k] <= marks[k - 1] { &out[k - 1] } else { &out[0] };
        let mut next = BucketMap::default();
        for ((key, bucket), p) in from {
            if *bucket >= marks[k] {
                continue;
            }
            roll_into(&mut next, key, bucketer.start(*bucket), p, kinds);
        }
        out.push(next);
    }
    out
}

/// Takes the partials of buckets that start before `before` out of `map` (all of them
/// for `i64::MAX`, none for `i64::MIN`).
pub fn take_before(map: &mut BucketMap, before: i64) -> BucketMap {
    if before == i64::MAX {
        return std::mem::take(map);
    }
    let mut out = BucketMap::default();
    if before != i64::MIN {
        out.extend(map.extract_if(|(_, b), _| *b < before));
    }
    out
}

/// Merges a clone of `p` into `map` at (`key`, `bucket`).
pub fn roll_into(map: &mut BucketMap, key: &KeyBytes, bucket: i64, p: &Partial, kinds: &[CellKind]) {
    match map.entry((key.clone(), bucket)) {
        hashbrown::hash_map::Entry::Occupied(mut e) => e.get_mut().merge(p, kinds),
        hashbrown::hash_map::Entry::Vacant(e) => {
            e.insert(p.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::partial::{CellValue, Num};
    use crate::config::NodeConfig;
    use crate::lang::plan::check;
    use crate::time::granularity::Granularity;
    use crate::time::timestamp::parse;

    #[test]
    fn seconds_roll_into_every_duration_in_the_zone() {
        let cfg = NodeConfig::parse("siddhi: {properties: {aggTimeZone: Asia/Singapore}}", "n").unwrap();
        let app = check(
            "define stream S (symbol string, q long, ts long);
             define aggregation A from S select symbol, sum(q) as t group by symbol aggregate by ts every sec, hour, day, month, year;",
            "a",
            &cfg,
        )
        .unwrap();
        let agg = &app.aggregations[0];
        let kinds: Vec<CellKind> = agg.cells.iter().map(|c| c.kind).collect();
        let key: KeyBytes = KeyBytes::new(b"\x01k");
        let mut finest = BucketMap::default();
        // 2020-02-29 15:59:59Z is 23:59:59 in Singapore; 16:00:00Z is the next local day.
        for (t, q) in [
            ("2020-02-29 15:59:59", 1),
            ("2020-02-29 16:00:00", 10),
            ("2020-02-29 16:30:00", 100),
            ("2020-12-31 16:00:00", 1000),
        ] {
            let mut p = Partial::empty(agg);
            p.cells[0] = CellValue::Num(Num::Int(q));
            p.cells[1] = CellValue::Num(Num::Int(1));
            merge_entries(&mut finest, vec![(key.clone(), parse(t).unwrap(), p)], &kinds);
        }
        let rolled = roll_up_before(agg, &kinds, finest, &[i64::MAX; 5]);
        assert_eq!(
            agg.durations,
            vec![Granularity::Seconds, Granularity::Hours, Granularity::Days, Granularity::Months, Granularity::Years]
        );
        let totals = |m: &BucketMap| {
            let mut v: Vec<(i64, Num)> = m.iter().map(|((_, b), p)| (*b, p.num(0))).collect();
            v.sort_by_key(|x| x.0);
            v
        };
        assert_eq!(
            totals(&rolled[1]),
            vec![
                (parse("2020-02-29 15:00:00").unwrap(), Num::Int(1)),
                (parse("2020-02-29 16:00:00").unwrap(), Num::Int(110)),
                (parse("2020-12-31 16:00:00").unwrap(), Num::Int(1000)),
            ]
        );
        assert_eq!(
            totals(&rolled[2]),
            vec![
                (parse("2020-02-28 16:00:00").unwrap(), Num::Int(1)),
                (parse("2020-02-29 16:00:00").unwrap(), Num::Int(110)),
                (parse("2020-12-31 16:00:00").unwrap(), Num::Int(1000)),
            ]
        );
        assert_eq!(
            totals(&rolled[3]),
            vec![
                (parse("2020-01-31 16:00:00").unwrap(), Num::Int(1)),
                (parse("2020-02-29 16:00:00").unwrap(), Num::Int(110)),
                (parse("2020-12-31 16:00:00").unwrap(), Num::Int(1000)),
            ]
        );
        assert_eq!(
            totals(&rolled[4]),
            vec![
                (parse("2019-12-31 16:00:00").unwrap(), Num::Int(111)),
                (parse("2020-12-31 16:00:00").unwrap(), Num::Int(1000)),
            ]
        );
    }
}
