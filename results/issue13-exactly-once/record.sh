#!/usr/bin/env bash
# Exactly-once delivery (docs/delivery.md), recorded with PostgreSQL 15 (fsync on:
# TALLY_PG_FSYNC=on scripts/postgres.sh start; $DATABASE_URL set); the chaos runs are
# chaos.sh's. Throughput with batch ids on: 1 node, protocol version 1 (v1) against
# version 2 (--exactly-once, v2), alternating, same build, same store, each run from empty
# tables; 100 K keys and 1,000 keys (dense), 20 M events, 4 rounds ($ROUNDS: which).
# Binaries: $BIN (default target/release; copy them away so that a build cannot replace
# them mid-run). Outputs: <shape>-<v1|v2>-<round>.{json,txt}.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-target/release}
out=results/issue13-exactly-once
source scripts/ab_lib.sh
export TALLY=$BIN/tally
base=(--nodes 1 --late-per-mille 0 --window 256 --store "$DATABASE_URL" --events 20000000 --span-days 0.00005)
for i in ${ROUNDS:-1 2 3 4}; do
  for shape in k100 dense; do
    if [ $shape = k100 ]; then keys=(--symbols 100000); else keys=(--symbols 1000); fi
    for v in v1 v2; do
      if [ $v = v2 ]; then eo=(--exactly-once); else eo=(); fi
      clean
      "$BIN/tally-loadgen" run "${base[@]}" "${keys[@]}" "${eo[@]}" --out "$out/$shape-$v-$i.json" > "$out/$shape-$v-$i.txt" 2>&1
    done
  done
done
echo done
