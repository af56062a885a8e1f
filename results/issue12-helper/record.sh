#!/usr/bin/env bash
# PostgreSQL's second connection for the new rows of large flushes (store/postgres/helper,
# on the branch issue12-second-connection, NOT on main), side by side with the revision
# before it (47564da), alternating, on the many-key shapes of issue 12 (the only ones
# whose flushes reached its threshold, 50,000 new rows in a table, in the build measured).
# Needs: $DATABASE_URL (PostgreSQL 15, fsync on: TALLY_PG_FSYNC=on scripts/postgres.sh start),
# the base built into $OLD (git worktree add /tmp/old 47564da;
# CARGO_TARGET_DIR=/tmp/oldtarget cargo build --release --workspace --bins), and this
# branch's build (threshold 50,000) in target/release. Each run starts from empty Loadgen tables (dropped,
# VACUUM FULL, CHECKPOINT). Outputs: <shape>-<old|new>-<round>.{json,txt} here.
set -euo pipefail
cd "$(dirname "$0")/../.."
OLD=${OLD:-/tmp/oldtarget/release}
out=results/issue12-helper
source scripts/ab_lib.sh
base=(--nodes 1 --late-per-mille 0 --window 256 --store "$DATABASE_URL")
[ -n "${SKIP_M1:-}" ] || ab 3 m1 "${base[@]}" --events 10000000 --symbols 1000000 --span-days 0.00005
ab 2 k100 "${base[@]}" --events 20000000 --span-days 0.00005 --symbols 100000
ab 1 m1-20m "${base[@]}" --events 20000000 --symbols 1000000 --span-days 0.00005
