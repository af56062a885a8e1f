#!/usr/bin/env bash
# The cluster figures of results/: tally-loadgen on PostgreSQL (a throwaway cluster with
# fsync on, or $DATABASE_URL), live event-time density (5 M events per event-second):
#   run-1node-postgres.json   1 node, 20 M events, with the raw COPY + GROUP BY baseline;
#   sweep-postgres.json/.svg  1, 2, 4 nodes, each held to the same CPU share (cgroup quota),
#                             120 M events a point (so that a 4-node point still runs ~20 s),
#                             one connection per node (a node held to 0.1 CPU needs no more,
#                             and fewer threads share the 2 cores), a window deep enough to
#                             keep a held node busy through a flush (saturation:
#                             throughput), 5 interleaved rounds, medians;
#   memory-{1M,50M}.json      1 node, 1 M and 50 M events at the same rate (4 M/s): peak RSS;
#   sweep-keys-postgres.json  the key axis: 1,000 / 100,000 / 1,000,000 group-by keys at 1
#                             and 2 nodes, 10 M events a point, unthrottled, one round.
# Usage: scripts/bench_cluster.sh [--quota 0.1] [--rounds 5]
set -euo pipefail
cd "$(dirname "$0")/.."
quota=0.1
rounds=5
while [ $# -gt 0 ]; do
  case "$1" in
    --quota) quota="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
cargo build --release -p tally-cli -p loadgen
if [ -z "${DATABASE_URL:-}" ]; then
  eval "$(TALLY_PG_FSYNC=on scripts/postgres.sh start)"
  trap 'scripts/postgres.sh stop' EXIT
fi
lg=target/release/tally-loadgen
live="--span-days 0.00005 --late-per-mille 0"
$lg run --nodes 1 --events 20000000 $live --window 256 --store "$DATABASE_URL" --baseline --out results/run-1node-postgres.json
$lg sweep --nodes 1,2,4 --repeat "$rounds" --events 120000000 $live --connections-per-node 1 --window 256 --store "$DATABASE_URL" --workers 1 --cpu-quota "$quota" --out results/sweep-postgres.json
$lg run --nodes 1 --events 1000000 $live --window 256 --rate 4000000 --store "$DATABASE_URL" --out results/memory-1M.json
$lg run --nodes 1 --events 50000000 $live --window 256 --rate 4000000 --store "$DATABASE_URL" --out results/memory-50M.json
$lg sweep --nodes 1,2 --symbols-axis 1000,100000,1000000 --repeat 1 --events 10000000 $live --window 256 --store "$DATABASE_URL" --out results/sweep-keys-postgres.json
