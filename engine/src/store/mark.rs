//! Roll-up marks: how far each coarse duration of a shard has been rolled up from the
//! duration below it (docs/rollup.md).
//!
//! A partitioned aggregation's flush writes its finest duration for every event, but a
//! coarser duration only for events older than that duration's mark; newer events reach it
//! later, when the node rolls the finer rows up and moves the mark in the same transaction.
//! One row per (aggregation, shard, duration) in `TALLY_ROLLUP_MARK`, in the same database
//! as the tables. A query reads the marks first and takes each event from exactly one
//! duration (`query::exec`).

use crate::time::granularity::Granularity;

/// The marks table.
pub const TABLE: &str = "TALLY_ROLLUP_MARK";

/// A duration of one shard of one aggregation holds exactly the events before `at`
/// (epoch ms): those written to it directly, being late, and those rolled up into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub aggregation: String,
    pub shard: String,
    pub duration: Granularity,
    pub at: i64,
}

/// SQL of the marks table, with `?n` parameters (`store::registry::for_dialect` rewrites
/// them for PostgreSQL).
pub mod statements {
    pub const CREATE: &str = "CREATE TABLE IF NOT EXISTS \"TALLY_ROLLUP_MARK\" (\"AGGREGATION\" TEXT NOT NULL, \
        \"SHARD_ID\" TEXT NOT NULL, \"DURATION\" TEXT NOT NULL, \"MARK\" BIGINT NOT NULL, \
        PRIMARY KEY (\"AGGREGATION\", \"SHARD_ID\", \"DURATION\"))";
    /// ?1 aggregation.
    pub const SELECT: &str = "SELECT \"SHARD_ID\", \"DURATION\", \"MARK\" FROM \"TALLY_ROLLUP_MARK\" \
        WHERE \"AGGREGATION\" = ?1 ORDER BY \"SHARD_ID\", \"DURATION\"";
    /// ?1 aggregation, ?2 shard, ?3 duration, ?4 mark.
    pub const UPSERT: &str = "INSERT INTO \"TALLY_ROLLUP_MARK\" (\"AGGREGATION\", \"SHARD_ID\", \"DURATION\", \"MARK\") \
        VALUES (?1, ?2, ?3, ?4) ON CONFLICT (\"AGGREGATION\", \"SHARD_ID\", \"DURATION\") \
        DO UPDATE SET \"MARK\" = excluded.\"MARK\"";
}

/// A mark as read back: `None` when the duration name is not one of ours (a row written
/// by something else; ignored).
pub fn read(aggregation: &str, shard: String, duration: &str, at: i64) -> Option<Mark> {
    let duration = Granularity::ALL.into_iter().find(|g| g.table_suffix() == duration)?;
    Some(Mark { aggregation: aggregation.to_string(), shard, duration, at })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::registry::for_dialect;
    use crate::store::sql::Dialect;

    #[test]
    fn statements_take_each_dialects_parameters() {
        assert!(for_dialect(Dialect::Postgres, statements::UPSERT).contains("VALUES ($1, $2, $3, $4)"));
        assert!(for_dialect(Dialect::Sqlite, statements::SELECT).contains("= ?1 ORDER BY"));
        assert_eq!(
            read("A", "s1".into(), "HOURS", 7),
            Some(Mark { aggregation: "A".into(), shard: "s1".into(), duration: Granularity::Hours, at: 7 })
        );
        assert_eq!(read("A", "s1".into(), "WEEKS", 7), None);
    }
}
