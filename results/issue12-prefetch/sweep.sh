#!/usr/bin/env bash
# The 1/2/4-node sweep of issue 12's Done-when, old (55fa0f6) and new alternating, with the
# flags of results/issue12-sweep-6f60fac (each node held to 0.1 CPU, 1 worker, 1 connection,
# window 256, 40 M events a point, 1,000 keys, live density). Rounds FIRST..LAST (default 1..1;
# the recording ran 1, then FIRST=2 LAST=2).
# Needs what record.sh needs. Outputs: sweep-<old|new>-<round>.{json,txt} here.
set -euo pipefail
cd "$(dirname "$0")/../.."
OLD=${OLD:-/tmp/oldtarget/release}
out=results/issue12-prefetch
source scripts/ab_lib.sh
for i in $(seq "${FIRST:-1}" "${LAST:-${FIRST:-1}}"); do
  for v in old new; do
    if [ $v = old ]; then b=$OLD/tally-loadgen; else b=target/release/tally-loadgen; fi
    clean
    "$b" sweep --nodes 1,2,4 --repeat 1 --events 40000000 --span-days 0.00005 --late-per-mille 0 \
      --connections-per-node 1 --window 256 --store "$DATABASE_URL" --workers 1 --cpu-quota 0.1 \
      --out "$out/sweep-$v-$i.json" > "$out/sweep-$v-$i.txt" 2>&1
  done
done
