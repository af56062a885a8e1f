//! The annotations of an aggregation: `@store`, `@PartitionById`, `@purge`, `@info`.

use crate::config::NodeConfig;
use crate::error::Diagnostics;
use crate::lang::syntax::ast::{self, Annotation, AnnotationElement};
use crate::time::granularity::Granularity;

/// The store an aggregation names with `@store(type='rdbms', ...)`, resolved through the
/// node's data sources.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreSpec {
    pub url: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Where it came from, for messages: `@store` or `datasource 'TEST_DB'`.
    pub origin: String,
}

/// Retention (`@purge`), SEMANTICS.md §7. Applied by the stores' purger; checked here.
#[derive(Debug, Clone, PartialEq)]
pub struct Purge {
    pub enabled: bool,
    pub interval_ms: i64,
    /// Per duration: how long rows are kept (`None`: for ever).
    pub retention: Vec<(Granularity, Option<i64>)>,
}

pub(super) struct Checked {
    pub partitioned: bool,
    pub shard_id: Option<String>,
    pub store: Option<StoreSpec>,
    pub purge: Purge,
}

const SECOND: i64 = 1000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// Average Gregorian month and year, for comparing retention periods.
const MONTH: i64 = 2_629_746_000;
const YEAR: i64 = 31_556_952_000;

/// Siddhi's default retention per duration (`None`: keep all).
fn default_retention(d: Granularity) -> Option<i64> {
    match d {
        Granularity::Seconds => Some(120 * SECOND),
        Granularity::Minutes => Some(24 * HOUR),
        Granularity::Hours => Some(30 * DAY),
        Granularity::Days => Some(YEAR),
        Granularity::Months | Granularity::Years => None,
    }
}

/// Siddhi's minimum retention per duration, and how it is written.
fn minimum_retention(d: Granularity) -> (i64, &'static str) {
    match d {
        Granularity::Seconds => (120 * SECOND, "120 sec"),
        Granularity::Minutes => (120 * MINUTE, "120 min"),
        Granularity::Hours => (25 * HOUR, "25 hours"),
        Granularity::Days => (32 * DAY, "32 days"),
        Granularity::Months => (13 * MONTH, "13 months"),
        Granularity::Years => (YEAR, "1 year"),
    }
}

/// `'120 sec'`, `'24 hours'`, `'1 year'`, `'500 ms'`: every unit Siddhi takes (`sec`,
/// `second(s)`, `min`, `minute(s)`, `h`, `hour(s)`, `day(s)`, `month(s)`, `year(s)`, and
/// milliseconds and weeks), in any letter case.
pub fn parse_time(text: &str) -> Option<i64> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit()))?;
    let n: i64 = t[..split].parse().ok()?;
    let unit = t[split..].trim().to_ascii_lowercase();
    let ms = match unit.as_str() {
        "ms" | "millisec" | "millisecond" | "milliseconds" => 1,
        "sec" | "secs" | "second" | "seconds" => SECOND,
        "min" | "mins" | "minute" | "minutes" => MINUTE,
        "h" | "hour" | "hours" => HOUR,
        "day" | "days" => DAY,
        "week" | "weeks" => 7 * DAY,
        "month" | "months" => MONTH,
        "year" | "years" => YEAR,
        _ => return None,
    };
    n.checked_mul(ms)
}

pub(super) fn check(
    a: &ast::AggregationDef,
    config: &NodeConfig,
    durations: &[Granularity],
    diags: &mut Diagnostics,
    warnings: &mut Diagnostics,
) -> Checked {
    let mut partition_annotation: Option<bool> = None;
    let mut store = None;
    let mut purge = Purge {
        enabled: true,
        interval_ms: 15 * MINUTE,
        retention: durations.iter().map(|d| (*d, default_retention(*d))).collect(),
    };
    for ann in &a.annotations {
        let lower = ann.name.to_ascii_lowercase();
        match lower.as_str() {
            "partitionbyid" => {
                partition_annotation = Some(match ann.get("enable") {
                    None => true,
                    Some((v, pos)) => match bool_value(v) {
                        Some(b) => b,
                        None => {
                            diags.push(pos.line, pos.col, format!("@PartitionById(enable='{v}'): write 'true' or 'false'"));
                            true
                        }
                    },
                });
            }
            "store" => store = store_spec(ann, config, diags),
            "purge" => purge_spec(ann, &mut purge, diags),
            "info" => {}
            "primarykey" | "index" => diags.push(
                ann.pos.line,
                ann.pos.col,
                format!("@{} is not allowed on an aggregation: its tables' keys are fixed (AGG_TIMESTAMP, SHARD_ID, the group-by attributes)", ann.name),
            ),
            _ => warnings.push(ann.pos.line, ann.pos.col, format!("@{} on aggregation `{}` is not known to Tally and is ignored", ann.name, a.name.text)),
        }
    }
    // The annotation decides when present, in either direction; otherwise the node's
    // `partitionById` property does. (Siddhi cannot switch the global setting off per
    // aggregation; the SI docs say it can, and here it can.)
    let partitioned = partition_annotation.unwrap_or(config.partition_by_id);
    let shard_id = if partitioned {
        let id = config.effective_shard_id().map(str::to_string);
        if id.is_none() {
            diags.push(
                a.name.pos.line,
                a.name.pos.col,
                format!(
                    "aggregation `{}` is partitioned by shard id, but the node has none: set siddhi.properties.shardId (or wso2.carbon.id) in {}",
                    a.name.text, config.source_name
                ),
            );
        }
        id
    } else {
        None
    };
    Checked { partitioned, shard_id, store, purge }
}

/// `true` or `false`, in any letter case.
pub(super) fn bool_value(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

fn store_spec(ann: &Annotation, config: &NodeConfig, diags: &mut Diagnostics) -> Option<StoreSpec> {
    match ann.get("type") {
        Some((t, _)) if t.eq_ignore_ascii_case("rdbms") => {}
        Some((t, pos)) => {
            diags.push(
                pos.line,
                pos.col,
                format!("@store(type='{t}') is not supported: Tally stores aggregations in an RDBMS (type='rdbms')"),
            );
            return None;
        }
        None => {
            diags.push(ann.pos.line, ann.pos.col, "@store needs type='rdbms'");
            return None;
        }
    }
    if let Some((name, pos)) = ann.get("datasource") {
        return match config.datasource(name) {
            Some(ds) => Some(StoreSpec {
                url: ds.jdbc_url.clone(),
                username: ds.username.clone(),
                password: ds.password.clone(),
                origin: format!("datasource '{name}'"),
            }),
            None => {
                diags.push(
                    pos.line,
                    pos.col,
                    format!(
                        "@store(datasource='{name}'): {} has no such entry under wso2.datasources.dataSources",
                        config.source_name
                    ),
                );
                None
            }
        };
    }
    match ann.get("jdbc.url") {
        Some((url, _)) => Some(StoreSpec {
            url: url.to_string(),
            username: ann.get("username").map(|v| v.0.to_string()),
            password: ann.get("password").map(|v| v.0.to_string()),
            origin: "@store".into(),
        }),
        None => {
            diags.push(ann.pos.line, ann.pos.col, "@store(type='rdbms') needs jdbc.url='...' or datasource='...'");
            None
        }
    }
}

fn purge_spec(ann: &Annotation, purge: &mut Purge, diags: &mut Diagnostics) {
    if let Some((v, pos)) = ann.get("enable") {
        match bool_value(v) {
            Some(b) => purge.enabled = b,
            None => diags.push(pos.line, pos.col, format!("@purge(enable='{v}'): write 'true' or 'false'")),
        }
    }
    if let Some((v, pos)) = ann.get("interval") {
        match parse_time(v) {
            Some(ms) if ms > 0 => purge.interval_ms = ms,
            _ => diags.push(
                pos.line,
                pos.col,
                format!("@purge(interval='{v}'): write a time such as '15 min' or '1 hour'"),
            ),
        }
    }
    let Some(periods) = ann.nested("retentionPeriod") else {
        return;
    };
    for e in &periods.elements {
        let AnnotationElement::Pair { key: Some(key), value, pos } = e else {
            diags.push(
                periods.pos.line,
                periods.pos.col,
                "@retentionPeriod takes duration='time' pairs, e.g. sec='120 sec'",
            );
            continue;
        };
        let Some(d) = Granularity::parse_per(key) else {
            diags.push(
                pos.line,
                pos.col,
                format!("@retentionPeriod: `{key}` is not a duration (sec, min, hour, day, month, year)"),
            );
            continue;
        };
        let Some(slot) = purge.retention.iter_mut().find(|(rd, _)| *rd == d) else {
            diags.push(
                pos.line,
                pos.col,
                format!("@retentionPeriod sets `{key}`, but the aggregation has no {d} duration"),
            );
            continue;
        };
        if value.eq_ignore_ascii_case("all") {
            slot.1 = None;
            continue;
        }
        match parse_time(value) {
            Some(ms) => {
                let (min, written) = minimum_retention(d);
                if ms < min {
                    diags.push(
                        pos.line,
                        pos.col,
                        format!("@retentionPeriod {key}='{value}' is below the minimum for {d}, {written}"),
                    );
                } else {
                    slot.1 = Some(ms);
                }
            }
            None => diags.push(
                pos.line,
                pos.col,
                format!("@retentionPeriod {key}='{value}': write a time such as '120 sec' or '24 hours', or 'all'"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn time_values() {
        assert_eq!(parse_time("120 sec"), Some(120_000));
        assert_eq!(parse_time("24 hours"), Some(86_400_000));
        assert_eq!(parse_time("15min"), Some(900_000));
        assert_eq!(parse_time("2 H"), Some(7_200_000));
        assert_eq!(parse_time("1 Second"), Some(1_000));
        assert_eq!(parse_time("3 MONTHS"), parse_time("3 month"));
        assert_eq!(parse_time("1 fortnight"), None);
        assert_eq!(parse_time("sec"), None);
    }
}
