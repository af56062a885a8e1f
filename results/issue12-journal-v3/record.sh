#!/usr/bin/env bash
# Journal records in format version 3 (store/journal.rs: varints, buckets as differences;
# the loadgen's partials 72 -> 35 bytes), side by side with the revision before it
# (d862eb3, whose engine is 47564da's: that is the build used), alternating, on the 1 M-key
# shape of issue 12 (where the journal's INSERTs were ~30% of PostgreSQL's busy time), and
# on the 100 K-key, dense and sparse shapes, which also journal every open second.
# Needs: $DATABASE_URL (PostgreSQL 15, fsync on: TALLY_PG_FSYNC=on scripts/postgres.sh start),
# the base built into $OLD (git worktree add /tmp/old 47564da;
# CARGO_TARGET_DIR=/tmp/oldtarget cargo build --release --workspace --bins), and this
# revision built in target/release (measured before its commit: it reports d862eb3-dirty).
# Each run starts from empty Loadgen tables (dropped, VACUUM FULL, CHECKPOINT).
# Outputs: <shape>-<old|new>-<round>.{json,txt} here.
set -euo pipefail
cd "$(dirname "$0")/../.."
OLD=${OLD:-/tmp/oldtarget/release}
out=results/issue12-journal-v3
source scripts/ab_lib.sh
base=(--nodes 1 --late-per-mille 0 --window 256 --store "$DATABASE_URL")
ab 3 m1 "${base[@]}" --events 10000000 --symbols 1000000 --span-days 0.00005
ab 2 k100 "${base[@]}" --events 20000000 --span-days 0.00005 --symbols 100000
ab 1 dense "${base[@]}" --events 20000000 --span-days 0.00005
ab 1 sparse-pg "${base[@]}" --events 10000000 --span-days 0.1157 --symbols 1000
# Issue 12's own command for 1 M keys (20 M events), one round each (run after the above).
[ -n "${SKIP_M1_20M:-}" ] || ab 1 m1-20m "${base[@]}" --events 20000000 --symbols 1000000 --span-days 0.00005
# Added at the stop's review: SI-style HTTP clients (one event per request), and the sparse
# stream on the embedded SQLite default (run after the above, by the same `ab` loop).
[ -n "${SKIP_HTTP:-}" ] || ab 3 http --nodes 1 --late-per-mille 0 --store "$DATABASE_URL" --protocol http --clients 64 --events-per-request 1 --events 200000 --span-days 0.0001 --symbols 1000
[ -n "${SKIP_SQLITE:-}" ] || ab 1 sparse-sqlite --nodes 1 --late-per-mille 0 --window 256 --events 10000000 --span-days 0.1157 --symbols 1000
