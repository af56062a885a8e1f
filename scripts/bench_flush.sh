#!/usr/bin/env bash
# Flush throughput on PostgreSQL: binary COPY + merge (the store's path) against the same
# rows as multi-row INSERT … ON CONFLICT, at 1 K, 10 K and 100 K rows per flush.
# Uses $DATABASE_URL when set, else a throwaway cluster (scripts/postgres.sh).
# Usage: scripts/bench_flush.sh [--rounds N] [--out results/flush-copy-vs-insert.json]
set -euo pipefail
cd "$(dirname "$0")/.."
out=results/flush-copy-vs-insert.json
rounds=5
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
cargo build --release -p tally-benches --bin flush_copy_vs_insert
if [ -z "${DATABASE_URL:-}" ]; then
  # fsync on, as a production server runs (the tests' throwaway clusters turn it off).
  eval "$(TALLY_PG_FSYNC=on scripts/postgres.sh start)"
  trap 'scripts/postgres.sh stop' EXIT
fi
target/release/flush_copy_vs_insert --rounds "$rounds" --out "$out"
