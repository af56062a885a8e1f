#!/usr/bin/env bash
# Staged closes (node/staged.rs on the branch issue12-staged-closes, NOT on main: a close of
# the finest mark of 200,000 rows or more written over two flushes), side by side with the
# revision before it (d862eb3, whose engine is 47564da's: that is the build used), alternating, on the 1 M-key shapes of issue 12: the only ones whose closes
# reach the threshold (a second of 10^5 keys is ~100 K rows; dense and sparse streams far
# fewer).
# Needs: $DATABASE_URL (PostgreSQL 15, fsync on: TALLY_PG_FSYNC=on scripts/postgres.sh start),
# the base built into $OLD (git worktree add /tmp/old 47564da;
# CARGO_TARGET_DIR=/tmp/oldtarget cargo build --release --workspace --bins), and this
# branch built in target/release (it reports d862eb3-dirty: measured before its commit). Each run starts from empty Loadgen tables (dropped,
# VACUUM FULL, CHECKPOINT). Outputs: <shape>-<old|new>-<round>.{json,txt} here.
set -euo pipefail
cd "$(dirname "$0")/../.."
OLD=${OLD:-/tmp/oldtarget/release}
out=results/issue12-staged
source scripts/ab_lib.sh
base=(--nodes 1 --late-per-mille 0 --window 256 --store "$DATABASE_URL")
[ -n "${SKIP_M1:-}" ] || ab 3 m1 "${base[@]}" --events 10000000 --symbols 1000000 --span-days 0.00005
