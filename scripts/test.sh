#!/usr/bin/env bash
# The README's second command, and what CI runs (.ci/run): the whole suite.
#   1. formatting and lints (cargo fmt --check, clippy -D warnings);
#   2. every unit and integration test of the workspace (cargo test, release build);
#   3. the benches compile (cargo bench --no-run), so they do not rot;
#   4. the conformance suite ../shared/conformance/run.py against target/release/tally, on
#      the embedded SQLite store, on PostgreSQL and on MariaDB.
# PostgreSQL: $DATABASE_URL when set, else a throwaway cluster (scripts/postgres.sh) that
# is stopped at the end. MySQL/MariaDB: $MYSQL_URL when set, else a throwaway MariaDB
# (scripts/mariadb.sh, which installs mariadb-server with apt-get when it is missing),
# stopped at the end. It fails when any step fails, and also when a step ran no test.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
shared=${SHARED:-$root/../shared}
log=$(mktemp -d)
started_pg=""
started_my=""
cleanup() {
  [ -n "$started_pg" ] && scripts/postgres.sh stop || true
  [ -n "$started_my" ] && scripts/mariadb.sh stop || true
  rm -rf "$log"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }

if ! command -v cargo >/dev/null; then
  echo "error: cargo is not installed; install Rust from https://rustup.rs" >&2
  exit 2
fi

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --release -- -D warnings

step "PostgreSQL"
if [ -z "${DATABASE_URL:-}" ]; then
  eval "$(scripts/postgres.sh start)"
  started_pg=yes
fi
export DATABASE_URL
echo "using ${DATABASE_URL%%@*}@… (${started_pg:+throwaway}${started_pg:-given})"

step "MariaDB"
if [ -z "${MYSQL_URL:-}" ]; then
  eval "$(TALLY_MYSQL_FSYNC=off scripts/mariadb.sh start)"
  started_my=yes
fi
export MYSQL_URL
echo "using ${MYSQL_URL%%@*}@… (${started_my:+throwaway}${started_my:-given})"

step "unit and integration tests"
cargo test --workspace --release 2>&1 | tee "$log/cargo-test.txt"
read -r passed failed < <(awk '/^test result:/ { p += $4; f += $6 } END { print p + 0, f + 0 }' "$log/cargo-test.txt")
if [ "$passed" -eq 0 ]; then
  echo "error: cargo test ran no test" >&2
  exit 1
fi

step "benches compile"
cargo bench --workspace --no-run

conformance() { # STORE
  local store=$1 out="$log/conformance-$1.txt"
  STORE=$store TALLY="$root/target/release/tally" python3 "$shared/conformance/run.py" 2>&1 | tee "$out"
  local summary
  summary=$(tail -n 1 "$out")
  local p f
  p=$(sed -E 's/^([0-9]+) passed.*/\1/' <<<"$summary")
  f=$(sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/' <<<"$summary")
  if [ "$p" -eq 0 ]; then
    echo "error: the conformance suite ran no case on $store" >&2
    exit 1
  fi
  conf_passed=$((conf_passed + p))
  conf_failed=$((conf_failed + f))
}

conf_passed=0
conf_failed=0
if [ -f "$shared/conformance/run.py" ]; then
  step "conformance suite on SQLite"
  conformance sqlite
  step "conformance suite on PostgreSQL"
  conformance postgres
  step "conformance suite on MariaDB"
  conformance mysql
elif [ "${CI:-}" = "true" ]; then
  echo "error: $shared/conformance/run.py is missing; CI must run it" >&2
  exit 1
else
  echo "skipped: $shared/conformance/run.py not found (set SHARED=path/to/shared)"
fi

step "summary"
echo "cargo test: $passed passed, $failed failed; conformance: $conf_passed passed, $conf_failed failed"
echo "$((passed + conf_passed)) passed, $((failed + conf_failed)) failed"
[ "$failed" -eq 0 ] && [ "$conf_failed" -eq 0 ]
