#!/usr/bin/env bash
# Worker rounds with prefetch (aggregate/accumulator/hot.rs and `Accumulator::add_batch`):
# the group table as open addressing whose place for a key is known from its hash, and
# events taken in rounds of 16 (hash and prefetch, look up and prefetch the words, update),
# side by side with the revision before it (55fa0f6), alternating. A perf profile of the
# 100 K-key shape had 77% of the workers' samples on two cache misses per event.
# Needs: $DATABASE_URL (PostgreSQL 15, fsync on: TALLY_PG_FSYNC=on scripts/postgres.sh start),
# the base built into $OLD (git worktree add /tmp/old 55fa0f6;
# CARGO_TARGET_DIR=/tmp/oldtarget cargo build --release --workspace --bins), and this
# revision built in target/release (measured before its commit: it reports 55fa0f6-dirty).
# Each run starts from empty Loadgen tables (dropped, VACUUM FULL, CHECKPOINT).
# Outputs: <shape>-<old|new>-<round>.{json,txt} here.
set -euo pipefail
cd "$(dirname "$0")/../.."
OLD=${OLD:-/tmp/oldtarget/release}
out=results/issue12-prefetch
source scripts/ab_lib.sh
base=(--nodes 1 --late-per-mille 0 --window 256 --store "$DATABASE_URL")
[ -n "${ROUND2:-}" ] || {
ab 3 k100 "${base[@]}" --events 20000000 --span-days 0.00005 --symbols 100000
ab 2 m1 "${base[@]}" --events 10000000 --symbols 1000000 --span-days 0.00005
ab 1 dense "${base[@]}" --events 20000000 --span-days 0.00005
ab 1 sparse-pg "${base[@]}" --events 10000000 --span-days 0.1157 --symbols 1000
ab 2 http --nodes 1 --late-per-mille 0 --store "$DATABASE_URL" --protocol http --clients 64 --events-per-request 1 --events 200000 --span-days 0.0001 --symbols 1000
ab 1 sparse-sqlite --nodes 1 --late-per-mille 0 --window 256 --events 10000000 --span-days 0.1157 --symbols 1000
[ -n "${SKIP_M1_20M:-}" ] || ab 1 m1-20m "${base[@]}" --events 20000000 --symbols 1000000 --span-days 0.00005
}
# More rounds of the 20 M-event 1 M-key command, new first (run after the above, the second
# and then a third: `ROUND2=1 M1_ROUND=3 record.sh` skips to it).
for v in new old; do
  if [ $v = old ]; then b=$OLD/tally-loadgen; else b=target/release/tally-loadgen; fi
  clean
  "$b" run "${base[@]}" --events 20000000 --symbols 1000000 --span-days 0.00005 --out "$out/m1-20m-$v-${M1_ROUND:-2}.json" > "$out/m1-20m-$v-${M1_ROUND:-2}.txt" 2>&1
done
