#!/usr/bin/env bash
# Issue 14, beyond the Done-when list: the MySQL store under a database restart, and SI-style
# HTTP clients on it beside PostgreSQL. Throwaway servers with their durable settings.
#  1. --chaos store-restart: 3 nodes on one MariaDB, 1,000 keys, 3 M events at 100 K/s,
#     MariaDB stopped, down 2 s, started again every 6 s; verified exact.
#  2. HTTP, 1 node, 1,000 keys: 1 client posting one event per request (20,000 events), and
#     64 clients posting one event each (200,000 events), on PostgreSQL then MariaDB.
# Usage: results/issue14-mysql/faults-and-http.sh   (from the repository root)
set -euo pipefail
out=results/issue14-mysql
cargo build --release -p tally-cli -p loadgen
lg=target/release/tally-loadgen
eval "$(scripts/mariadb.sh start)"
eval "$(TALLY_PG_FSYNC=on scripts/postgres.sh start)"
trap 'scripts/mariadb.sh stop; scripts/postgres.sh stop' EXIT
$lg run --nodes 3 --store "$MYSQL_URL" --symbols 1000 --events 3000000 --rate 100000 --chaos store-restart \
  --chaos-every 6 --chaos-command "TALLY_MYSQL_DIR=$TALLY_MYSQL_DIR scripts/mariadb.sh restart 2" \
  --out "$out/chaos-store-restart-mysql.json" > "$out/chaos-store-restart-mysql.txt" 2>&1 ||
  echo "the store-restart run failed: $out/chaos-store-restart-mysql.txt" >&2
common="--nodes 1 --symbols 1000 --span-days 0.0001 --late-per-mille 0"
for store in postgres mysql; do
  url=$DATABASE_URL
  [ "$store" = mysql ] && url=$MYSQL_URL
  $lg run $common --store "$url" --protocol http --clients 1 --events-per-request 1 --events 20000 \
    --out "$out/http-1client-$store.json" > "$out/http-1client-$store.txt" 2>&1
  $lg run $common --store "$url" --protocol http --clients 64 --events-per-request 1 --events 200000 \
    --out "$out/http-64clients-$store.json" > "$out/http-64clients-$store.txt" 2>&1
done
