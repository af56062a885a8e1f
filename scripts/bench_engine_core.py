#!/usr/bin/env python3
"""Runs the engine-core criterion bench (benches/benches/ingest.rs) several times and
records, side by side per run, the per-event path (decode + map update) and the bare
hash-map update ceiling measured by the same bench, in events per second per core.

The machine is shared and noisy, so each run measures both in one process, the ratio is
taken per run, and the medians are reported.

Usage: python3 scripts/bench_engine_core.py [--runs N] [--out results/engine-core.json]
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHES = ["decode_and_update", "decode_only", "decode_and_intern_key", "bare_hashmap_update"]
EVENTS_PER_ITER = 1_000_000


def sh(*args):
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return {"cores": os.cpu_count(), "cpu_model": model, "memory_bytes": mem,
            "os": platform.platform(), "rustc": sh("rustc", "--version")}


def run_once():
    subprocess.run(["cargo", "bench", "-p", "tally-benches", "--bench", "ingest", "--",
                    "--warm-up-time", "2", "--noplot"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = {}
    for name in BENCHES:
        path = os.path.join(ROOT, "target", "criterion", "ingest", name, "new", "estimates.json")
        with open(path) as f:
            median_ns = json.load(f)["median"]["point_estimate"]
        out[name] = EVENTS_PER_ITER / (median_ns / 1e9)
    return out


def instructions_per_event():
    """Instructions one event costs on the per-event path, counted by callgrind (repeatable
    whatever the machine is doing); None when valgrind is not installed."""
    if not shutil.which("valgrind"):
        return None
    subprocess.run(["cargo", "build", "--release", "-p", "tally-benches", "--example", "per_event"],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    exe = os.path.join(ROOT, "target", "release", "examples", "per_event")
    counts = {}
    for iters in (1, 3):
        out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", exe],
                             cwd=ROOT, env={**os.environ, "ITERS": str(iters)},
                             capture_output=True, text=True, check=True).stderr
        counts[iters] = int(re.search(r"refs:\s+([0-9,]+)", out).group(1).replace(",", ""))
    return (counts[3] - counts[1]) / (2 * EVENTS_PER_ITER)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(ROOT, "results", "engine-core.json"))
    args = ap.parse_args()
    runs = []
    for i in range(args.runs):
        r = run_once()
        r["ratio"] = r["decode_and_update"] / r["bare_hashmap_update"]
        runs.append(r)
        print(f"run {i + 1}: per-event path {r['decode_and_update'] / 1e6:.1f} M/s, "
              f"ceiling {r['bare_hashmap_update'] / 1e6:.1f} M/s, ratio {r['ratio']:.2f}", file=sys.stderr)
    medians = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    result = {
        "bench": "engine-core per-event path (benches/benches/ingest.rs)",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_sha": sh("git", "rev-parse", "HEAD"),
        "git_dirty": bool(sh("git", "status", "--porcelain")),
        "machine": machine(),
        "config": {
            "app": "TradeStream (symbol string, price double, quantity long, timestamp long); "
                   "avg(price), sum(quantity) group by symbol every sec ... year",
            "events_per_iteration": EVENTS_PER_ITER, "symbols": 1000, "batch_events": 4096,
            "event_time_step_us": 100, "events_per_symbol_second": 10, "threads": 1,
            "profile": "bench (release, line tables)",
        },
        "unit": "events per second on one core",
        "runs": runs,
        "median": medians,
        "median_ratio_to_ceiling": statistics.median(r["ratio"] for r in runs),
        "instructions_per_event_callgrind": instructions_per_event(),
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    m = result["median"]
    print(f"median over {len(runs)} runs: per-event path {m['decode_and_update'] / 1e6:.1f} M events/s/core; "
          f"ceiling {m['bare_hashmap_update'] / 1e6:.1f} M/s; ratio {result['median_ratio_to_ceiling']:.2f}; "
          f"decode alone {m['decode_only'] / 1e6:.1f} M/s; decode + key {m['decode_and_intern_key'] / 1e6:.1f} M/s")
    if result["instructions_per_event_callgrind"]:
        print(f"callgrind: {result['instructions_per_event_callgrind']:.0f} instructions per event")
    print(f"written to {os.path.relpath(args.out, ROOT)}")


if __name__ == "__main__":
    main()
