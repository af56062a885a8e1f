#!/usr/bin/env bash
# The README's first command: builds tally and tally-loadgen, then runs the demo — three
# nodes ingesting one deterministic workload round robin into one embedded SQLite store,
# and a check that every duration's merged totals equal the generated events'.
# Extra arguments go to `tally-loadgen demo` (e.g. --nodes 2 --events 1000000 --keep).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p tally-cli -p loadgen
exec target/release/tally-loadgen demo "$@"
