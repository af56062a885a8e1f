#!/usr/bin/env bash
# Flush throughput on MySQL/MariaDB: LOAD DATA LOCAL INFILE + merge (the store's path)
# against the same rows as multi-row INSERT … ON DUPLICATE KEY UPDATE, at 1 K, 10 K and
# 100 K rows per flush, new and existing buckets (benches/src/bin/flush_mysql.rs).
# Uses $MYSQL_URL when set, else a throwaway MariaDB (scripts/mariadb.sh) with its durable
# settings (innodb_flush_log_at_trx_commit=1).
# Usage: scripts/bench_flush_mysql.sh [--rounds N] [--out results/flush-mysql.json]
set -euo pipefail
cd "$(dirname "$0")/.."
out=results/flush-mysql.json
rounds=5
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
cargo build --release -p tally-benches --bin flush_mysql
if [ -z "${MYSQL_URL:-}" ]; then
  eval "$(TALLY_MYSQL_FSYNC=on scripts/mariadb.sh start)"
  trap 'scripts/mariadb.sh stop' EXIT
fi
target/release/flush_mysql --rounds "$rounds" --out "$out"
