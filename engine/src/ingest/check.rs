//! The checks an event must pass before it is routed: what its aggregations need of it.
//! Values already have the stream's attribute types (the JSON conversion and the batch
//! decoder see to that); this is about the time stamp.

use crate::error::BadEvent;
use crate::lang::expr::{Row, Scalar};
use crate::lang::plan::{AppPlan, TimeSource};
use crate::lang::types::AttrType;
use crate::time::timestamp::{self, MAX_MS, MIN_MS};

/// Checks what the aggregations need of an event: a usable time stamp, and group-by values
/// a store can key on (no NaN). Refuses it otherwise, naming the attribute and quoting the
/// value.
pub fn check_event<R: Row + ?Sized>(plan: &AppPlan, stream: usize, row: &R) -> Result<(), BadEvent> {
    let s = &plan.streams[stream];
    for &ai in &s.aggregations {
        let agg = &plan.aggregations[ai];
        for &g in &agg.group_by {
            if agg.narrow_keys {
                narrow_key(plan, stream, ai, g, row.get(g))?;
            }
            if matches!(s.attributes[g].ty, AttrType::Float | AttrType::Double)
                && let Scalar::Float(f) = row.get(g)
                && f.is_nan()
            {
                return Err(BadEvent::new(format!(
                    "the group-by attribute `{}` is NaN, which no store can key a row on; aggregation `{}` groups by it",
                    s.attributes[g].name, agg.name
                )));
            }
        }
        let (i, value) = match agg.time {
            TimeSource::Arrival => continue,
            TimeSource::Millis(i) | TimeSource::Text(i) => (i, row.get(i)),
        };
        let name = &s.attributes[i].name;
        match value {
            Scalar::Int(ms) if (MIN_MS..=MAX_MS).contains(&ms) => {}
            Scalar::Int(ms) => {
                return Err(BadEvent::new(format!(
                    "the time stamp `{name}` is {ms}, outside the supported range (years -9998 to 9998 in epoch milliseconds)"
                )));
            }
            Scalar::Str(b) => {
                let text = String::from_utf8_lossy(b);
                if timestamp::parse(&text).is_none() {
                    return Err(BadEvent::new(format!(
                        "the time stamp `{name}` is \"{text}\", which is not of the form yyyy-MM-dd HH:mm:ss or yyyy-MM-dd HH:mm:ss ±HH:mm (or is out of range)"
                    )));
                }
            }
            _ => {
                return Err(BadEvent::new(format!(
                    "the time stamp `{name}` is null; aggregation `{}` needs it",
                    agg.name
                )));
            }
        }
    }
    Ok(())
}

/// What a MySQL/MariaDB store can key a row on (SI's tables there: the group-by columns are
/// part of the primary key, so NOT NULL, and strings are `VARCHAR(254)`).
fn narrow_key(plan: &AppPlan, stream: usize, ai: usize, g: usize, value: Scalar<'_>) -> Result<(), BadEvent> {
    let s = &plan.streams[stream];
    let agg = &plan.aggregations[ai];
    let max = crate::store::mysql::infile::MAX_CHARS;
    match value {
        Scalar::Null => Err(BadEvent::new(format!(
            "the group-by attribute `{}` is null, and aggregation `{}` is kept in MySQL/MariaDB, whose key columns \
             cannot hold null (SI's tables key on the group-by columns); send a value, or use PostgreSQL or SQLite, \
             where null is a group of its own",
            s.attributes[g].name, agg.name
        ))),
        Scalar::Str(b) if b.len() > max && String::from_utf8_lossy(b).chars().count() > max => {
            Err(BadEvent::new(format!(
                "the group-by attribute `{}` is {} characters long, and aggregation `{}` is kept in MySQL/MariaDB, \
                 whose group-by columns are VARCHAR({max}) as SI makes them",
                s.attributes[g].name,
                String::from_utf8_lossy(b).chars().count(),
                agg.name
            )))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeConfig;
    use crate::lang::plan::check;
    use crate::lang::types::Value;

    #[test]
    fn a_nan_group_key_is_refused_naming_the_attribute() {
        let plan = check(
            "define stream S (k double, q long, ts long);
             define aggregation A from S select k, sum(q) as t group by k aggregate by ts every sec;",
            "a",
            &NodeConfig::default(),
        )
        .unwrap();
        let e = check_event(&plan, 0, &[Value::Double(f64::NAN), Value::Long(1), Value::Long(1)][..]).unwrap_err();
        assert!(e.message.contains("group-by attribute `k` is NaN"), "{e}");
        check_event(&plan, 0, &[Value::Double(-0.0), Value::Long(1), Value::Long(1)][..]).unwrap();
        check_event(&plan, 0, &[Value::Null, Value::Long(1), Value::Long(1)][..]).unwrap();
    }

    #[test]
    fn a_mysql_store_refuses_null_and_overlong_group_by_values_on_arrival() {
        let mut plan = check(
            "define stream S (k string, q long, ts long);
             define aggregation A from S select k, sum(q) as t group by k aggregate by ts every sec;",
            "a",
            &NodeConfig::default(),
        )
        .unwrap();
        let event = |k: Value| vec![k, Value::Long(1), Value::Long(1)];
        check_event(&plan, 0, &event(Value::Null)[..]).unwrap();
        plan.aggregations[0].narrow_keys = true;
        let e = check_event(&plan, 0, &event(Value::Null)[..]).unwrap_err();
        assert!(
            e.message.starts_with("the group-by attribute `k` is null, and aggregation `A` is kept in MySQL"),
            "{e}"
        );
        check_event(&plan, 0, &event(Value::Str("é".repeat(254)))[..]).unwrap();
        let e = check_event(&plan, 0, &event(Value::Str("é".repeat(255)))[..]).unwrap_err();
        assert!(e.message.contains("`k` is 255 characters long"), "{e}");
    }
}
