//! The bookkeeping tables' SQL (registry, producers, roll-up marks, journal) on MySQL and
//! MariaDB.
//!
//! The shared statements ([`crate::store::registry::statements`] and the others) are
//! written with `"` identifiers and `?n` parameters. The MySQL session runs with
//! `ANSI_QUOTES`, so the identifiers stand; `?n` becomes the named `:pn`. What MySQL has
//! no form for is written here instead: `CREATE TABLE` (a key cannot be `TEXT`, so the
//! keyed text columns are `VARCHAR(254)` as in SI's tables) and `ON CONFLICT … DO UPDATE`
//! (`ON DUPLICATE KEY UPDATE`).

use crate::store::mark::statements as marks;
use crate::store::producer::statements as producers;
use crate::store::registry::statements as registry;
use std::borrow::Cow;

const REGISTRY_CREATE: &str = "CREATE TABLE IF NOT EXISTS \"TALLY_SHARD_REGISTRY\" (\
    \"NODE_ID\" VARCHAR(254) NOT NULL PRIMARY KEY, \"SHARD_ID\" VARCHAR(254), \"INSTANCE\" VARCHAR(254) NOT NULL, \
    \"HOST\" VARCHAR(254) NOT NULL, \"PID\" BIGINT NOT NULL, \"STARTED_MS\" BIGINT NOT NULL, \
    \"HEARTBEAT_MS\" BIGINT NOT NULL, \"RELEASED\" BIGINT NOT NULL DEFAULT 0, \"FLUSH_SEQ\" BIGINT NOT NULL DEFAULT 0)";

const REGISTRY_CLAIM: &str = "INSERT INTO \"TALLY_SHARD_REGISTRY\" (\"NODE_ID\", \"SHARD_ID\", \"INSTANCE\", \"HOST\", \
    \"PID\", \"STARTED_MS\", \"HEARTBEAT_MS\") VALUES (:p1, :p2, :p3, :p4, :p5, :p6, :p6) ON DUPLICATE KEY UPDATE \
    \"SHARD_ID\" = coalesce(VALUES(\"SHARD_ID\"), \"SHARD_ID\"), \"INSTANCE\" = VALUES(\"INSTANCE\"), \
    \"HOST\" = VALUES(\"HOST\"), \"PID\" = VALUES(\"PID\"), \"STARTED_MS\" = VALUES(\"STARTED_MS\"), \
    \"HEARTBEAT_MS\" = VALUES(\"HEARTBEAT_MS\"), \"RELEASED\" = 0";

const MARKS_CREATE: &str = "CREATE TABLE IF NOT EXISTS \"TALLY_ROLLUP_MARK\" (\"AGGREGATION\" VARCHAR(254) NOT NULL, \
    \"SHARD_ID\" VARCHAR(254) NOT NULL, \"DURATION\" VARCHAR(16) NOT NULL, \"MARK\" BIGINT NOT NULL, \
    PRIMARY KEY (\"AGGREGATION\", \"SHARD_ID\", \"DURATION\"))";

const MARKS_UPSERT: &str = "INSERT INTO \"TALLY_ROLLUP_MARK\" (\"AGGREGATION\", \"SHARD_ID\", \"DURATION\", \"MARK\") \
    VALUES (:p1, :p2, :p3, :p4) ON DUPLICATE KEY UPDATE \"MARK\" = VALUES(\"MARK\")";

const PRODUCERS_CREATE: &str = "CREATE TABLE IF NOT EXISTS \"TALLY_PRODUCERS\" (\
    \"PRODUCER\" VARCHAR(254) NOT NULL PRIMARY KEY, \"HOLDER\" VARCHAR(254), \"NODE_ID\" VARCHAR(254), \
    \"MAX_SEQ\" BIGINT NOT NULL DEFAULT 0, \"UPDATED_MS\" BIGINT NOT NULL)";

const PRODUCERS_TAKE: &str = "INSERT INTO \"TALLY_PRODUCERS\" (\"PRODUCER\", \"HOLDER\", \"NODE_ID\", \"MAX_SEQ\", \
    \"UPDATED_MS\") VALUES (:p1, :p2, :p3, 0, :p4) ON DUPLICATE KEY UPDATE \"HOLDER\" = :p2, \"NODE_ID\" = :p3, \
    \"UPDATED_MS\" = :p4";

/// Makes a missing producer's row and locks it, new or old, exclusively: two nodes taking
/// one producer at once queue on that row. ?1 producer, ?2 now.
///
/// Not `INSERT IGNORE`: on an existing row it takes a *shared* lock, and the `FOR UPDATE`
/// after it must then upgrade. Two holders of the shared lock, or one and a release
/// (`UPDATE`) queued behind it, deadlock (ERROR 1213), which the CI run met as a refused
/// HELLO. `ON DUPLICATE KEY UPDATE` locks the duplicate exclusively at once; the no-op
/// assignment changes nothing.
pub(super) const PRODUCERS_ENSURE: &str = "INSERT INTO \"TALLY_PRODUCERS\" (\"PRODUCER\", \"HOLDER\", \
    \"NODE_ID\", \"MAX_SEQ\", \"UPDATED_MS\") VALUES (:p1, NULL, NULL, 0, :p2) \
    ON DUPLICATE KEY UPDATE \"PRODUCER\" = \"PRODUCER\"";

/// One of the shared statements, in MySQL's form.
pub(crate) fn mysql(text: &str) -> Cow<'_, str> {
    let special = [
        (registry::CREATE, REGISTRY_CREATE),
        (registry::CLAIM, REGISTRY_CLAIM),
        (marks::CREATE, MARKS_CREATE),
        (marks::UPSERT, MARKS_UPSERT),
        (producers::CREATE, PRODUCERS_CREATE),
        (producers::TAKE, PRODUCERS_TAKE),
    ];
    if let Some((_, m)) = special.iter().find(|(shared, _)| *shared == text) {
        return Cow::Borrowed(m);
    }
    debug_assert!(!text.contains("ON CONFLICT") && !text.starts_with("CREATE"), "no MySQL form for {text}");
    Cow::Owned(text.replace('?', ":p"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::journal::statements as journal;

    #[test]
    fn shared_statements_take_named_parameters_and_keep_ansi_quotes() {
        assert_eq!(
            mysql(registry::HEARTBEAT),
            "UPDATE \"TALLY_SHARD_REGISTRY\" SET \"HEARTBEAT_MS\" = :p3 WHERE \"NODE_ID\" = :p1 AND \"INSTANCE\" = :p2"
        );
        assert!(mysql(journal::APPEND).ends_with("VALUES (:p1, :p2, :p3, :p4)"));
        assert!(mysql(registry::CLAIM).contains("ON DUPLICATE KEY UPDATE"));
        assert!(mysql(marks::CREATE).contains("VARCHAR(254)"));
        assert!(mysql(producers::TAKE).contains("\"HOLDER\" = :p2"));
    }
}
