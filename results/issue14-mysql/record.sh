#!/usr/bin/env bash
# Issue 14: tally-loadgen on MySQL/MariaDB beside PostgreSQL, 1 node, live event-time
# density (5 M events per event-second), 20 M events, binary protocol, 1,000 symbols,
# verified; the two stores alternate for ROUNDS rounds on throwaway servers with their
# durable settings (PostgreSQL fsync on; MariaDB innodb_flush_log_at_trx_commit=1).
# Usage: results/issue14-mysql/record.sh [ROUNDS] [SYMBOLS]   (from the repository root)
# SYMBOLS (default 1000) other than 1000 names the files run-1node-STORE-SYMBOLSkeys-rN.
set -euo pipefail
rounds=${1:-3}
symbols=${2:-1000}
tag=""
[ "$symbols" != 1000 ] && tag="-$((symbols / 1000))kkeys"
out=results/issue14-mysql
cargo build --release -p tally-cli -p loadgen
eval "$(TALLY_PG_FSYNC=on scripts/postgres.sh start)"
eval "$(scripts/mariadb.sh start)"
trap 'scripts/postgres.sh stop; scripts/mariadb.sh stop' EXIT
lg=target/release/tally-loadgen
live="--span-days 0.00005 --late-per-mille 0"
for r in $(seq 1 "$rounds"); do
  $lg run --nodes 1 --events 20000000 --symbols "$symbols" $live --window 256 --store "$DATABASE_URL" --out "$out/run-1node-postgres$tag-r$r.json"
  $lg run --nodes 1 --events 20000000 --symbols "$symbols" $live --window 256 --store "$MYSQL_URL" --out "$out/run-1node-mysql$tag-r$r.json"
done
