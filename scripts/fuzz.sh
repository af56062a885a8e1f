#!/usr/bin/env bash
# Fuzz every target for a bounded time (docs/fuzzing.md).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     default: 60 s, every target
#   FUZZ_JOBS=2 scripts/fuzz.sh 600                       two targets at a time
#
# Builds fuzz/ with libFuzzer (libfuzzer-sys) and coverage instrumentation on the stable
# toolchain: the flags cargo-fuzz passes, without its need for nightly (which it needs only
# for -Zsanitizer=address; Rust's own checks catch what a sanitizer would in safe code, and
# debug assertions and overflow checks are on). Each target starts from its committed seeds
# (fuzz/seeds/TARGET) and a working corpus it keeps between runs (fuzz/corpus/TARGET, not
# committed). A crash is copied to fuzz/artifacts/TARGET and the script exits 1: copy the
# input into fuzz/regressions/TARGET, so that `cargo test` replays it, and fix it.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(app query frames json)
jobs=${FUZZ_JOBS:-1}
rss_mb=${FUZZ_RSS_MB:-2048}

host=$(rustc -vV | sed -n 's/^host: //p')
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
echo "fuzz: building ${targets[*]} for $host (release, instrumented)" >&2
cargo build --release --target "$host" --target-dir ../target/fuzz $(printf -- '--bin %s ' "${targets[@]}")
bin=../target/fuzz/$host/release

logs=$(mktemp -d)
run() {
  local t=$1
  mkdir -p "corpus/$t" "artifacts/$t"
  # -max_len: large enough for the seeds with big strings and deep nesting.
  "$bin/$t" -max_total_time="$seconds" -rss_limit_mb="$rss_mb" -max_len=262144 \
    -artifact_prefix="artifacts/$t/" -print_final_stats=1 "corpus/$t" "seeds/$t" \
    >"$logs/$t.log" 2>&1
}

failed=()
pids=()
names=()
for t in "${targets[@]}"; do
  [ -x "$bin/$t" ] || { echo "fuzz: no target '$t' (app, query, frames, json)" >&2; exit 2; }
  run "$t" &
  pids+=($!)
  names+=("$t")
  if [ ${#pids[@]} -ge "$jobs" ]; then
    wait "${pids[0]}" || failed+=("${names[0]}")
    pids=("${pids[@]:1}")
    names=("${names[@]:1}")
  fi
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || failed+=("${names[$i]}")
done

printf '%-8s %8s %12s %10s %8s %s\n' target seconds executions exec/s corpus result
for t in "${targets[@]}"; do
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logs/$t.log" | tail -1)
  corpus=$(ls "corpus/$t" | wc -l)
  result=clean
  if [[ " ${failed[*]} " == *" $t "* ]]; then result="FINDING: $(ls -t "artifacts/$t" | head -1) (log: $logs/$t.log)"; fi
  printf '%-8s %8s %12s %10s %8s %s\n' "$t" "$seconds" "${execs:-?}" "${rate:-?}" "$corpus" "$result"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: findings in ${failed[*]}: the inputs are in fuzz/artifacts; see the logs above" >&2
  exit 1
fi
rm -rf "$logs"
