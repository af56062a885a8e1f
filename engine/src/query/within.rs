//! `within` and `per` of a retrieval query.
//!
//! The range filters bucket starts (`AGG_TIMESTAMP`) as UTC epoch milliseconds, whatever
//! the aggregation time zone is (as Siddhi does).

use crate::error::Diagnostics;
use crate::lang::plan::AggPlan;
use crate::lang::syntax::ast::{Expr, Literal, Pos, Within};
use crate::time::granularity::Granularity;
use crate::time::timestamp::{self, Fields};

/// `[start, end)` in epoch milliseconds.
pub type Range = (i64, i64);

pub fn range(w: &Within, diags: &mut Diagnostics) -> Option<Range> {
    match w {
        Within::Range(a, b, pos) => {
            let start = bound(a, diags);
            let end = bound(b, diags);
            let (start, end) = (start?, end?);
            if start >= end {
                diags.push(
                    pos.line,
                    pos.col,
                    format!("`within {start}, {end}`: the start must be before the end (the range is [start, end))"),
                );
                return None;
            }
            Some((start, end))
        }
        Within::Pattern(e, _) => match e {
            Expr::Lit(Literal::Str(text), p) => pattern(text, *p, diags),
            Expr::Lit(Literal::Int(_) | Literal::Long(_), p) => {
                diags.push(p.line, p.col, "`within` takes two time stamps (`within START, END`) or one pattern string such as \"2017-06-** **:**:**\", not a single number");
                None
            }
            other => {
                let p = other.pos();
                diags.push(
                    p.line,
                    p.col,
                    "`within` takes time stamps (epoch ms or \"yyyy-MM-dd HH:mm:ss\") or a pattern string",
                );
                None
            }
        },
    }
}

fn bound(e: &Expr, diags: &mut Diagnostics) -> Option<i64> {
    match e {
        Expr::Lit(Literal::Int(v), _) => Some(*v as i64),
        Expr::Lit(Literal::Long(v), _) => Some(*v),
        Expr::Lit(Literal::Str(s), p) => {
            match timestamp::parse_fields(s, false).ok().and_then(|f| timestamp::to_epoch_ms(&f)) {
                Some(ms) => Some(ms),
                None => {
                    diags.push(p.line, p.col, format!("`{s}` is not a time stamp: write epoch milliseconds (e.g. 1496289950000L) or \"yyyy-MM-dd HH:mm:ss\" with an optional \" +05:30\""));
                    None
                }
            }
        }
        other => {
            let p = other.pos();
            diags.push(p.line, p.col, "a `within` bound is a number of epoch milliseconds or a time stamp string");
            None
        }
    }
}

/// A whole time stamp (that second) or one with `**` from the right.
fn pattern(text: &str, pos: Pos, diags: &mut Diagnostics) -> Option<Range> {
    let fields = match timestamp::parse_fields(text, true) {
        Ok(f) => f,
        Err(m) => {
            diags.push(
                pos.line,
                pos.col,
                format!("`within` pattern: {m}; wildcards `**` replace whole fields, e.g. \"2017-06-** **:**:**\""),
            );
            return None;
        }
    };
    let parts = [fields.month, fields.day, fields.hour, fields.minute, fields.second];
    // Once a field is a wildcard, every field to its right must be one too.
    let first_wild = parts.iter().position(Option::is_none).unwrap_or(parts.len());
    if parts[first_wild..].iter().any(Option::is_some) {
        diags.push(
            pos.line,
            pos.col,
            format!("`within \"{text}\"` mixes wildcards and values: `**` must replace every field from the right, e.g. \"yyyy-MM-dd HH:**:**\""),
        );
        return None;
    }
    let start = timestamp::to_epoch_ms(&fields)?;
    let end = match first_wild {
        0 => shift_month(&fields, 12),
        1 => shift_month(&fields, 1),
        2 => Some(start + 86_400_000),
        3 => Some(start + 3_600_000),
        4 => Some(start + 60_000),
        _ => Some(start + 1000),
    };
    match end {
        Some(end) => Some((start, end)),
        None => {
            diags.push(pos.line, pos.col, format!("`{text}` is out of the supported range"));
            None
        }
    }
}

fn shift_month(f: &Fields, months: u32) -> Option<i64> {
    let m0 = f.month.unwrap_or(1) - 1 + months;
    let next = Fields {
        year: f.year + (m0 / 12) as i32,
        month: Some(m0 % 12 + 1),
        day: Some(1),
        hour: Some(0),
        minute: Some(0),
        second: Some(0),
        offset_secs: f.offset_secs,
    };
    timestamp::to_epoch_ms(&next)
}

/// The `per` duration, which must be one the aggregation has.
pub fn per(e: &Expr, agg: &AggPlan, diags: &mut Diagnostics) -> Option<Granularity> {
    let Expr::Lit(Literal::Str(text), p) = e else {
        let p = e.pos();
        diags.push(p.line, p.col, "`per` takes a string naming a duration, e.g. per \"hours\"");
        return None;
    };
    let Some(d) = Granularity::parse_per(text) else {
        diags.push(
            p.line,
            p.col,
            format!(
                "`per \"{text}\"`: not a duration; use sec, min, hour (or h), day, month or year (singular or plural)"
            ),
        );
        return None;
    };
    if !agg.has_duration(d) {
        let has: Vec<String> = agg.durations.iter().map(|d| d.to_string()).collect();
        diags.push(
            p.line,
            p.col,
            format!("aggregation `{}` has no {d} duration (it has {})", agg.name, has.join(", ")),
        );
        return None;
    }
    Some(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::syntax::parse_query;

    fn within(text: &str) -> Result<Range, String> {
        let mut d = Diagnostics::default();
        let q = parse_query(&format!("from A within {text} per 'sec'"), &mut d).ok_or_else(|| d.to_string())?;
        range(q.within.as_ref().unwrap(), &mut d).ok_or_else(|| d.to_string())
    }

    #[test]
    fn every_form() {
        let s = 1_496_289_950_000;
        assert_eq!(within("1496289950000L, 1496289951000L"), Ok((s, s + 1000)));
        assert_eq!(within("1496289950000, 1496289951000"), Ok((s, s + 1000)));
        assert_eq!(within("\"2017-06-01 04:05:50\", \"2017-06-01 04:05:51\""), Ok((s, s + 1000)));
        assert_eq!(within("\"2017-06-01 09:35:50 +05:30\", 1496289951000L"), Ok((s, s + 1000)));
        assert_eq!(within("\"2017-06-01 04:05:50\""), Ok((s, s + 1000)));
        assert_eq!(within("\"2017-06-01 04:05:**\""), Ok((s - 50_000, s + 10_000)));
        assert_eq!(within("\"2017-06-01 04:**:**\""), Ok((s - 350_000, s + 3_250_000)));
        let day = 1_496_275_200_000;
        assert_eq!(within("\"2017-06-01 **:**:**\""), Ok((day, day + 86_400_000)));
        assert_eq!(within("'2017-06-** **:**:**'"), Ok((day, 1_498_867_200_000)));
        assert_eq!(within("\"2017-12-** **:**:**\""), Ok((1_512_086_400_000, 1_514_764_800_000)));
        assert_eq!(within("\"2017-**-** **:**:**\""), Ok((1_483_228_800_000, 1_514_764_800_000)));
        assert_eq!(within("\"2020-02-** **:**:** +08:00\""), Ok((1_580_486_400_000, 1_582_992_000_000)));
    }

    #[test]
    fn every_error() {
        for (text, needle) in [
            ("\"2017-06-** 12:**:**\"", "mixes wildcards"),
            ("\"2017-**-01 **:**:**\"", "mixes wildcards"),
            ("1496289950000L", "not a single number"),
            ("\"2017-06-01 04:05:50.123\"", "not a time stamp"),
            ("\"2017-06-01\"", "not a time stamp"),
            ("\"June 2017\", 5", "not a time stamp"),
            ("5, 5", "start must be before the end"),
            ("10L, 5L", "start must be before the end"),
            ("\"2017-13-** **:**:**\"", "month out of range"),
        ] {
            let e = within(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
