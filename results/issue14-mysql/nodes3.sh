#!/usr/bin/env bash
# Issue 14: three nodes writing one store at once, MySQL/MariaDB beside PostgreSQL:
#   100,000 keys at live density (10 M events over 2 s of event time, no late events), and
#   1,000 keys over a day of event time with 1% of events up to an hour late (the loadgen's
#   default shape: late events merge into rows that exist).
# 3 spawned nodes on the 2 cores, 2 connections each, binary protocol, verified; the stores
# alternate for ROUNDS rounds on throwaway servers with their durable settings.
# Usage: results/issue14-mysql/nodes3.sh [ROUNDS]   (from the repository root)
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
    $lg run --nodes 3 --events 10000000 --symbols 100000 --span-days 0.000025 --late-per-mille 0 \
      --store "$url" --out "$out/nodes3-100k-$store-r$r.json"
  done
  for store in postgres mysql; do
    url=$DATABASE_URL; [ $store = mysql ] && url=$MYSQL_URL
    $lg run --nodes 3 --events 10000000 --symbols 1000 --store "$url" --out "$out/nodes3-day-$store-r$r.json"
  done
done
