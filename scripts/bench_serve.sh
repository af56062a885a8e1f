#!/usr/bin/env bash
# One node's end-to-end ingest over loopback (binary protocol, acknowledged after commit),
# in events per node CPU-second, for two event-time densities of the engine-core workload:
#   live   — 5,000,000 events per second of event time (events stamped as they arrive);
#   sparse — 10 events per symbol per second of event time (a replay of history: a
#            seconds row written for every 10 events, so the store's writes dominate).
# Usage: scripts/bench_serve.sh [--runs N] [--events N]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=3
events=20000000
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --events) events="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
cargo build --release -p tally-cli -p tally-benches
target/release/serve_ingest --runs "$runs" --events "$events" --event-rate 5000000 --out results/serve-ingest-live.json
target/release/serve_ingest --runs "$runs" --events "$events" --out results/serve-ingest-sparse.json
