#!/usr/bin/env bash
# HTTP ingest as SI clients use it: one `tally serve` node, JSON posted over keep-alive
# HTTP/1.1 by closed-loop clients (one request in flight each), every request answered
# after the flush that holds it committed, every bucket of every duration verified.
# 1,000 symbols (and 20 for the -20keys runs), live event time. Shapes
# (results/http-<shape>-<store>.json):
#   1client      one client, one event per request
#   64clients    64 clients, one event per request
#   16x100       16 clients, arrays of 100 events
#   64clients-20keys, 16x100-20keys   the same with 20 symbols
# plus the binary protocol at low load (lowload-binary-<store>.json): one connection,
# one batch of 10 events at a time.
# On the embedded SQLite store and on PostgreSQL (a throwaway cluster with fsync on, or
# $DATABASE_URL). Usage: scripts/bench_http.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p tally-cli -p loadgen
if [ -z "${DATABASE_URL:-}" ]; then
  eval "$(TALLY_PG_FSYNC=on scripts/postgres.sh start)"
  trap 'scripts/postgres.sh stop' EXIT
fi
lg=target/release/tally-loadgen
common="--nodes 1 --symbols 1000 --span-days 0.0001 --late-per-mille 0"
for store in sqlite postgres; do
  flag=""
  [ "$store" = postgres ] && flag="--store $DATABASE_URL"
  $lg run $common $flag --protocol http --clients 1 --events-per-request 1 --events 20000 \
    --out "results/http-1client-$store.json"
  $lg run $common $flag --protocol http --clients 64 --events-per-request 1 --events 200000 \
    --out "results/http-64clients-$store.json"
  $lg run $common $flag --protocol http --clients 16 --events-per-request 100 --events 4000000 \
    --out "results/http-16x100-$store.json"
  few="--nodes 1 --symbols 20 --span-days 0.0001 --late-per-mille 0"
  $lg run $few $flag --protocol http --clients 64 --events-per-request 1 --events 200000 \
    --out "results/http-64clients-20keys-$store.json"
  $lg run $few $flag --protocol http --clients 16 --events-per-request 100 --events 4000000 \
    --out "results/http-16x100-20keys-$store.json"
  $lg run $common $flag --batch-events 10 --window 1 --connections-per-node 1 --events 20000 \
    --out "results/lowload-binary-$store.json"
done
