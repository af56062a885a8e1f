//! A flush's rows of one table, kept as the partials they are written from.
//!
//! The flush thread used to turn every partial into a `Vec<Value>` row (the key decoded,
//! strings copied, the shard id copied per row), sort those, and drop them after the
//! commit; on the sparse stream that was ~40% of the node's CPU. Here the partials are
//! only sorted, and the store reads each row's fields from them in place
//! ([`Rows::visit`]): the binary COPY of a large flush allocates nothing per row.

use crate::aggregate::partial::{CellValue, Num, Partial};
use crate::ingest::key::{self, KeyBytes};
use crate::lang::plan::CellKind;
use crate::lang::types::{AttrType, Value};
use crate::store::rows::{Field, Rows};
use crate::store::schema::{Role, TableSchema, set_to_json};
use rayon::prelude::*;
use std::sync::Arc;

/// Partials of one table, in its primary key's order.
#[derive(Debug)]
pub(crate) struct PartialRows {
    /// The shard column's value (partitioned tables).
    shard: Option<Arc<str>>,
    key_types: Arc<[AttrType]>,
    entries: Vec<(KeyBytes, i64, Partial)>,
}

impl PartialRows {
    /// Sorts `entries` in the primary key's order: by bucket, then group-by values (the
    /// shard is the same in every row), and merges the entries of one (key, bucket) into
    /// one row (`kinds`: the cells' kinds). For speed: an index
    /// takes keys in order about twice as fast as scattered ones (measured: 300 K rows by
    /// COPY into a PostgreSQL table like these, 0.37 s sorted against 0.71 s hashed). Call
    /// it inside the flush's thread pool: the sort is parallel.
    pub(crate) fn sorted(
        shard: Option<Arc<str>>,
        key_types: Arc<[AttrType]>,
        mut entries: Vec<(KeyBytes, i64, Partial)>,
        kinds: &[CellKind],
    ) -> PartialRows {
        let types = &*key_types;
        // Sorted as small (bucket, packed first value, index) triples, the keys compared
        // only for ties, then moved into place: sorting the entries themselves, and
        // unpacking the keys at every comparison, was 6% of the node's CPU samples with
        // 100 K keys; this is under 1%.
        let mut order: Vec<(i64, u128, usize)> =
            entries.par_iter().enumerate().map(|(i, (k, b, _))| (*b, key::sort_prefix(k, types), i)).collect();
        order.par_sort_unstable_by(|x, y| {
            (x.0, x.1).cmp(&(y.0, y.1)).then_with(|| key::cmp(&entries[x.2].0, &entries[y.2].0, types))
        });
        // In place, cycle by cycle: a second vector of entries is a fresh allocation of
        // tens of MB a flush, and the kernel zeroing its pages was a sixth of the node's
        // CPU samples on the sparse stream.
        let mut from: Vec<usize> = order.into_iter().map(|(_, _, i)| i).collect();
        permute(&mut entries, &mut from);
        // Equal keys are neighbours now: merged in one pass, in place.
        entries.dedup_by(|later, kept| {
            let same = later.1 == kept.1 && later.0 == kept.0;
            if same {
                let p = std::mem::replace(&mut later.2, Partial { cells: Vec::new(), latest: None });
                kept.2.merge_owned(p, kinds);
            }
            same
        });
        PartialRows { shard, key_types, entries }
    }
}

impl PartialRows {
    /// The entries back (to reuse their memory once the rows are written).
    pub(crate) fn into_entries(self) -> Vec<(KeyBytes, i64, Partial)> {
        self.entries
    }
}

/// Reorders `v` so that `v[j]` becomes the old `v[from[j]]` (`from` is a permutation; it
/// is left as the identity).
fn permute<T>(v: &mut [T], from: &mut [usize]) {
    for i in 0..v.len() {
        let mut j = i;
        loop {
            let k = from[j];
            from[j] = j;
            if k == i {
                break;
            }
            v.swap(j, k);
            j = k;
        }
    }
}

impl Rows for PartialRows {
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn bucket(&self, i: usize) -> i64 {
        self.entries[i].1
    }

    /// The group-by columns follow each other in key order (`TableSchema::new`), so the
    /// whole key is handed over at the first of them.
    fn visit(&self, t: &TableSchema, i: usize, f: &mut dyn FnMut(Field<'_>)) {
        let (k, bucket, p) = &self.entries[i];
        for c in &t.columns {
            match c.role {
                Role::Timestamp => f(Field::Long(*bucket)),
                Role::Shard => f(self.shard.as_deref().map_or(Field::Null, Field::Str)),
                Role::Key(0) => key::visit(k, &self.key_types, f),
                Role::Key(_) => {}
                Role::Latest(j) => f(p.latest.as_ref().and_then(|l| l.values.get(j)).map_or(Field::Null, Field::from)),
                Role::LastEventTimestamp => f(p.latest.as_ref().map_or(Field::Null, |l| Field::Long(l.ts))),
                Role::Cell(j, _) => match &p.cells[j] {
                    CellValue::Num(Num::Null) => f(Field::Null),
                    CellValue::Num(Num::Int(v)) if c.ty == AttrType::Double => f(Field::Double(*v as f64)),
                    CellValue::Num(Num::Int(v)) => f(Field::Long(*v)),
                    CellValue::Num(Num::Float(v)) => f(Field::Double(*v)),
                    CellValue::Set(s) => f(Field::Str(&set_to_json(s))),
                },
            }
        }
    }

    fn row(&self, t: &TableSchema, i: usize) -> Vec<Value> {
        let (k, bucket, p) = &self.entries[i];
        t.to_row(self.shard.as_deref(), &key::decode(k, &self.key_types), *bucket, p)
    }

    fn key_has_null(&self, t: &TableSchema, i: usize) -> bool {
        // Read in place: SQLite asks this of every row.
        (t.partitioned && self.shard.is_none()) || key::has_null(&self.entries[i].0, &self.key_types)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeConfig;
    use crate::lang::plan::check;
    use crate::store::schema::TableSchema;
    use crate::time::granularity::Granularity;

    const APP: &str = "
        define stream S (sym string, n int, price double, ok bool);
        @PartitionById
        define aggregation A
        from S
        select sym, n, sum(price) as total, count() as trades, max(price) as hi, ok
        group by sym, n
        aggregate every sec ... min;
    ";

    #[test]
    fn permute_moves_each_element_to_its_place() {
        use proptest::prelude::*;
        proptest!(|(mut from in Just((0..50usize).collect::<Vec<_>>()).prop_shuffle())| {
            let old: Vec<usize> = (100..150).collect();
            let mut v = old.clone();
            let want: Vec<usize> = from.iter().map(|&i| old[i]).collect();
            permute(&mut v, &mut from);
            prop_assert_eq!(v, want);
        });
    }

    /// A (key, bucket) handed over more than once (a key's closed second from the journal
    /// and from fresh partials) becomes one row holding every part.
    #[test]
    fn repeated_keys_merge_into_one_row() {
        let cfg = NodeConfig::parse("wso2.carbon: {id: node-1}", "n").unwrap();
        let app = check(APP, "a", &cfg).unwrap();
        let agg = &app.aggregations[0];
        let kinds: Vec<CellKind> = agg.cells.iter().map(|c| c.kind).collect();
        let types: Arc<[AttrType]> = vec![AttrType::String, AttrType::Int].into();
        let mut buf = Vec::new();
        let mut entries = Vec::new();
        // (sym, bucket, total): "a" at 1000 three times, "b" at 1000 once, "a" at 2000 twice.
        for (sym, bucket, total) in [
            ("a", 1000, 1.0),
            ("b", 1000, 2.0),
            ("a", 2000, 4.0),
            ("a", 1000, 8.0),
            ("a", 2000, 16.0),
            ("a", 1000, 32.0),
        ] {
            key::encode_values(&mut buf, &[Value::Str(sym.into()), Value::Int(7)]);
            let mut p = Partial::empty(agg);
            p.cells[0] = CellValue::Num(Num::Float(total));
            p.cells[1] = CellValue::Num(Num::Int(1));
            entries.push((KeyBytes::from(&buf[..]), bucket, p));
        }
        let rows = PartialRows::sorted(None, types, entries, &kinds);
        let got: Vec<(i64, Num, Num)> = rows.entries.iter().map(|(_, b, p)| (*b, p.num(0), p.num(1))).collect();
        assert_eq!(
            got,
            vec![
                (1000, Num::Float(41.0), Num::Int(3)),
                (1000, Num::Float(2.0), Num::Int(1)),
                (2000, Num::Float(20.0), Num::Int(2)),
            ]
        );
    }

    /// Visiting a row hands over exactly what `TableSchema::to_row` builds, and rows come
    /// out in the order `TableSchema::key_cmp` gives their built forms.
    #[test]
    fn rows_visit_as_built_and_sort_as_the_primary_key() {
        let cfg = NodeConfig::parse("wso2.carbon: {id: node-1}", "n").unwrap();
        let app = check(APP, "a", &cfg).unwrap();
        let agg = &app.aggregations[0];
        let t = TableSchema::new(&app, agg, Granularity::Seconds);
        let types: Arc<[AttrType]> = vec![AttrType::String, AttrType::Int].into();
        let mut entries = Vec::new();
        let mut buf = Vec::new();
        for (i, (sym, n)) in [
            (Value::Str("b".into()), Value::Int(2)),
            (Value::Null, Value::Int(1)),
            (Value::Str("a".into()), Value::Null),
        ]
        .into_iter()
        .enumerate()
        {
            for bucket in [2000, 1000] {
                key::encode_values(&mut buf, &[sym.clone(), n.clone()]);
                let mut p = Partial::empty(agg);
                p.cells[0] = CellValue::Num(Num::Float(1.5 * i as f64));
                entries.push((KeyBytes::from(&buf[..]), bucket, p));
            }
        }
        let kinds: Vec<CellKind> = agg.cells.iter().map(|c| c.kind).collect();
        let rows = PartialRows::sorted(Some("node-1".into()), types, entries, &kinds);
        assert_eq!(rows.len(), 6);
        let built: Vec<Vec<Value>> = (0..rows.len()).map(|i| rows.row(&t, i)).collect();
        for w in built.windows(2) {
            assert_eq!(t.key_cmp(&w[0], &w[1]), std::cmp::Ordering::Less, "{:?} before {:?}", w[0], w[1]);
        }
        assert_eq!(
            built[0][..4],
            [Value::Long(1000), Value::Str("node-1".into()), Value::Str("a".into()), Value::Null]
        );
        for (i, row) in built.iter().enumerate() {
            let mut seen = Vec::new();
            rows.visit(&t, i, &mut |f| seen.push(format!("{f:?}")));
            let want: Vec<String> = row.iter().map(|v| format!("{:?}", Field::from(v))).collect();
            assert_eq!(seen, want);
            assert_eq!(rows.key_has_null(&t, i), row[..t.key_len].iter().any(Value::is_null));
            assert_eq!(rows.bucket(i), row[0].as_i64().unwrap());
        }
    }
}
