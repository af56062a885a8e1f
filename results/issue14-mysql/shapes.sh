#!/usr/bin/env bash
# Issue 14: the shapes not measured by record.sh, on MySQL/MariaDB beside PostgreSQL:
#   1,000,000 keys at live density (10 M events over 4.3 s of event time), and
#   sparse event time (1,000 keys, ~one event per key and second: 10 M events over 0.1157 days).
# 1 node, binary protocol, window 256, verified; the stores alternate for ROUNDS rounds on
# throwaway servers with their durable settings, as record.sh does.
# Usage: results/issue14-mysql/shapes.sh [ROUNDS]   (from the repository root)
set -euo pipefail
rounds=${1:-2}
out=results/issue14-mysql
cargo build --release -p tally-cli -p loadgen
eval "$(TALLY_PG_FSYNC=on scripts/postgres.sh start)"
eval "$(scripts/mariadb.sh start)"
trap 'scripts/postgres.sh stop; scripts/mariadb.sh stop' EXIT
lg=target/release/tally-loadgen
for r in $(seq 1 "$rounds"); do
  for store in postgres mysql; do
    url=$DATABASE_URL; [ $store = mysql ] && url=$MYSQL_URL
    $lg run --nodes 1 --events 10000000 --symbols 1000000 --span-days 0.00005 --late-per-mille 0 --window 256 \
      --store "$url" --out "$out/keys-1m-$store-r$r.json"
  done
  for store in postgres mysql; do
    url=$DATABASE_URL; [ $store = mysql ] && url=$MYSQL_URL
    $lg run --nodes 1 --events 10000000 --symbols 1000 --span-days 0.1157 --late-per-mille 0 --window 256 \
      --store "$url" --out "$out/sparse-$store-r$r.json"
  done
done
