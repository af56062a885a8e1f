#!/usr/bin/env bash
# Transparent huge pages off in `tally` (cli/src/main.rs tune_allocator), side by side with
# the revision before it (08af344), alternating, on the shapes of issue 12.
# Needs: $DATABASE_URL (PostgreSQL 15, fsync on: TALLY_PG_FSYNC=on scripts/postgres.sh start),
# the base built into $OLD (git worktree add /tmp/old 08af344;
# CARGO_TARGET_DIR=/tmp/oldtarget cargo build --release --workspace --bins), and this
# revision built in target/release. Each run starts from empty Loadgen tables (dropped,
# VACUUM FULL, CHECKPOINT). Outputs: <shape>-<old|new>-<round>.{json,txt} here.
set -euo pipefail
cd "$(dirname "$0")/../.."
OLD=${OLD:-/tmp/oldtarget/release}
out=results/issue12-thp-sparse
source scripts/ab_lib.sh
base=(--nodes 1 --late-per-mille 0)
ab 2 sparse-pg "${base[@]}" --window 256 --store "$DATABASE_URL" --events 10000000 --span-days 0.1157 --symbols 1000
ab 2 sparse-sqlite "${base[@]}" --window 256 --events 10000000 --span-days 0.1157 --symbols 1000
ab 2 dense "${base[@]}" --window 256 --store "$DATABASE_URL" --events 20000000 --span-days 0.00005
ab 2 k100 "${base[@]}" --window 256 --store "$DATABASE_URL" --events 20000000 --span-days 0.00005 --symbols 100000
ab 4 http "${base[@]}" --store "$DATABASE_URL" --protocol http --clients 64 --events-per-request 1 --events 200000 --span-days 0.0001 --symbols 1000
ab 1 m1 "${base[@]}" --window 256 --store "$DATABASE_URL" --events 10000000 --symbols 1000000 --span-days 0.00005
