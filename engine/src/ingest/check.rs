//! The checks an event must pass before it is routed: what its aggregations need of it.
//! Values already have the stream's attribute types (the JSON conversion and the batch
//! decoder see to that); this is about the time stamp, group-by values a store can key on,
//! and what a MySQL/MariaDB store's columns can hold.

use crate::error::BadEvent;
use crate::lang::expr::{Row, Scalar};
use crate::lang::plan::{AppPlan, CellKind, TimeSource};
use crate::lang::types::AttrType;
use crate::time::timestamp::{self, MAX_MS, MIN_MS};

/// Checks what the aggregations need of an event: a usable time stamp, and group-by values
/// a store can key on (no NaN). Refuses it otherwise, naming the attribute and quoting the
/// value.
pub fn check_event<R: Row + ?Sized>(plan: &AppPlan, stream: usize, row: &R) -> Result<(), BadEvent> {
    let s = &plan.streams[stream];
    for &ai in &s.aggregations {
        let agg = &plan.aggregations[ai];
        // Only events the aggregation takes: its filter drops the others before grouping.
        let mysql = agg.mysql_columns && agg.filter.as_ref().is_none_or(|f| f.holds(row));
        if mysql {
            mysql_values(plan, stream, ai, row)?;
        }
        for &g in &agg.group_by {
            if mysql {
                mysql_key(plan, stream, ai, g, row.get(g))?;
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
fn mysql_key(plan: &AppPlan, stream: usize, ai: usize, g: usize, value: Scalar<'_>) -> Result<(), BadEvent> {
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

/// What a MySQL/MariaDB store can hold of the values an event adds to its row: a latest
/// value fits its `VARCHAR(254)` column, and no float it stores (latest, sum, min, max) is
/// NaN or infinite (MySQL's FLOAT and DOUBLE have neither). Refused here, the event alone
/// is lost to its sender, who is told why; taken, it would fail every flush of the node.
/// A sum that overflows to infinity from finite values is still refused at the flush.
fn mysql_values<R: Row + ?Sized>(plan: &AppPlan, stream: usize, ai: usize, row: &R) -> Result<(), BadEvent> {
    let s = &plan.streams[stream];
    let agg = &plan.aggregations[ai];
    let max = crate::store::mysql::infile::MAX_CHARS;
    let not_finite = |what: String, f: f64| {
        BadEvent::new(format!(
            "{what} is {f}, and aggregation `{}` is kept in MySQL/MariaDB, whose FLOAT and DOUBLE columns hold no \
             NaN or infinity; send a finite number, or use PostgreSQL or SQLite",
            agg.name
        ))
    };
    for l in &agg.latest {
        match (l.ty, l.expr.eval(row)) {
            (AttrType::String, Scalar::Str(b)) if b.len() > max && String::from_utf8_lossy(b).chars().count() > max => {
                return Err(BadEvent::new(format!(
                    "`{}` would be {} characters long, and aggregation `{}` is kept in MySQL/MariaDB, whose string \
                     columns are VARCHAR({max}) as SI makes them; send a shorter value, or use PostgreSQL or SQLite",
                    l.name,
                    String::from_utf8_lossy(b).chars().count(),
                    agg.name
                )));
            }
            (AttrType::Float | AttrType::Double, Scalar::Float(f)) if !f.is_finite() => {
                return Err(not_finite(format!("`{}`", l.name), f));
            }
            _ => {}
        }
    }
    for c in &agg.cells {
        if let (CellKind::Sum | CellKind::Min | CellKind::Max, Some(i), Some(_)) = (c.kind, c.attr, &c.column)
            && matches!(s.attributes[i].ty, AttrType::Float | AttrType::Double)
            && let Scalar::Float(f) = row.get(i)
            && !f.is_finite()
        {
            return Err(not_finite(format!("the attribute `{}`", s.attributes[i].name), f));
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
        plan.aggregations[0].mysql_columns = true;
        let e = check_event(&plan, 0, &event(Value::Null)[..]).unwrap_err();
        assert!(
            e.message.starts_with("the group-by attribute `k` is null, and aggregation `A` is kept in MySQL"),
            "{e}"
        );
        check_event(&plan, 0, &event(Value::Str("é".repeat(254)))[..]).unwrap();
        let e = check_event(&plan, 0, &event(Value::Str("é".repeat(255)))[..]).unwrap_err();
        assert!(e.message.contains("`k` is 255 characters long"), "{e}");
    }

    #[test]
    fn a_mysql_store_refuses_what_its_columns_cannot_hold_only_in_events_the_aggregation_takes() {
        let mut plan = check(
            "define stream S (k string, note string, p double, q long, ts long);
             define aggregation A from S[q > 0] select k, note, sum(p) as t, max(q) as m
             group by k aggregate by ts every sec;",
            "a",
            &NodeConfig::default(),
        )
        .unwrap();
        let event = |note: &str, p: f64, q: i64| {
            vec![Value::Str("k".into()), Value::Str(note.into()), Value::Double(p), Value::Long(q), Value::Long(1)]
        };
        let long = "x".repeat(255);
        // SQLite and PostgreSQL hold all of these.
        for e in [event(&long, 1.0, 1), event("n", f64::NAN, 1), event("n", f64::INFINITY, 1)] {
            check_event(&plan, 0, &e[..]).unwrap();
        }
        plan.aggregations[0].mysql_columns = true;
        check_event(&plan, 0, &event(&"x".repeat(254), 1.5, 1)[..]).unwrap();
        let e = check_event(&plan, 0, &event(&long, 1.0, 1)[..]).unwrap_err();
        assert!(
            e.message.starts_with("`note` would be 255 characters long, and aggregation `A` is kept in MySQL"),
            "{e}"
        );
        let e = check_event(&plan, 0, &event("n", f64::NAN, 1)[..]).unwrap_err();
        assert!(e.message.starts_with("the attribute `p` is NaN, and aggregation `A`"), "{e}");
        let e = check_event(&plan, 0, &event("n", f64::NEG_INFINITY, 1)[..]).unwrap_err();
        assert!(e.message.starts_with("the attribute `p` is -inf"), "{e}");
        // The filter drops these before the aggregation sees them: nothing to refuse.
        check_event(&plan, 0, &event(&long, f64::NAN, 0)[..]).unwrap();
    }
}
