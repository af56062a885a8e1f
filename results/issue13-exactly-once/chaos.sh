#!/usr/bin/env bash
# Exactly once under faults (docs/delivery.md, issue 13): 3 nodes on one PostgreSQL 15 with
# fsync on (TALLY_PG_FSYNC=on scripts/postgres.sh start; $DATABASE_URL and $TALLY_PG_DIR
# set), 1,000 keys, each run from empty tables and verified exact by the loadgen:
#  1. --chaos kill-node: a random node SIGKILLed and restarted every second, 2 M events at
#     60 K/s (so that the run spans 30 kills);
#  2. --chaos store-restart: PostgreSQL stopped, down 2 s, started again every 6 s, 3 M
#     events at 100 K/s (so that the run spans several restarts);
#  3. --chaos partition: a random node's client connections cut for 1 s of every 2 s
#     (the node runs on), 2 M events at 100 K/s;
#  4. --chaos stall: a random node stopped (SIGSTOP) for 12 s of every 24 s, past the
#     producers' 10 s read timeout (they go to another node while it holds their batches),
#     4 M events at 50 K/s.
# Binaries: $BIN (default target/release). Outputs: chaos-<kind>.{json,txt}.
# KINDS="stall partition" runs only those.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-target/release}
out=results/issue13-exactly-once
source scripts/ab_lib.sh
: "${TALLY_PG_DIR:?set TALLY_PG_DIR (scripts/postgres.sh start prints it)}"
common=(--nodes 3 --store "$DATABASE_URL" --symbols 1000)
kinds=" ${KINDS:-kill-node store-restart partition stall} "
want() { [[ "$kinds" == *" $1 "* ]]; }
want kill-node && clean && "$BIN/tally-loadgen" run "${common[@]}" --events 2000000 --rate 60000 --chaos kill-node --chaos-every 1 \
  --out "$out/chaos-kill-node.json" > "$out/chaos-kill-node.txt" 2>&1
want store-restart && clean && "$BIN/tally-loadgen" run "${common[@]}" --events 3000000 --rate 100000 --chaos store-restart --chaos-every 6 \
  --chaos-command "TALLY_PG_DIR=$TALLY_PG_DIR scripts/postgres.sh restart 2" \
  --out "$out/chaos-store-restart.json" > "$out/chaos-store-restart.txt" 2>&1
want partition && clean && "$BIN/tally-loadgen" run "${common[@]}" --events 2000000 --rate 100000 --chaos partition --chaos-every 2 \
  --out "$out/chaos-partition.json" > "$out/chaos-partition.txt" 2>&1
want stall && clean && "$BIN/tally-loadgen" run "${common[@]}" --events 4000000 --rate 50000 --chaos stall --chaos-every 24 \
  --out "$out/chaos-stall.json" > "$out/chaos-stall.txt" 2>&1
echo done
