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
}
