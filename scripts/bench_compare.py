#!/usr/bin/env python3
"""Measures two revisions side by side: this checkout (HEAD) and --base REV, so that a
change that should not move performance (a refactor) can show it did not.

The machine is shared and noisy, so the two are measured in interleaved rounds (base,
head, base, head, …), each round's ratio head/base is taken, and medians are reported.
Three figures, each for both revisions:

  engine-core   the criterion per-event bench (benches/benches/ingest.rs,
                `decode_and_update`): events per second on one core;
  instructions  callgrind's instructions per event on the same path (the `per_event`
                example): repeatable whatever else the machine does;
  loadgen       `tally-loadgen run`, 1 node on PostgreSQL (fsync on), live density
                (--span-days 0.00005 --late-per-mille 0), 20 M events, window 256,
                verified bucket by bucket: events per second end to end, rows written
                per event, and the median ACK latency.

The base revision is checked out in a temporary git worktree and built in its own target
directory; PostgreSQL is $DATABASE_URL, else a throwaway cluster (scripts/postgres.sh,
fsync on) stopped at the end.

Usage: python3 scripts/bench_compare.py --base REV [--rounds 5] [--events 20000000]
                                        [--out results/compare-BASE-HEAD.json]
"""

import argparse
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_engine_core import EVENTS_PER_ITER, machine  # noqa: E402


def sh(*args, cwd=ROOT, env=None):
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout.strip()


def run(args, cwd, env=None):
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        raise SystemExit(f"failed ({done.returncode}): {' '.join(args)} in {cwd}")
    return done


class Tree:
    """One revision's checkout and its own target directory."""

    def __init__(self, name, path, target):
        self.name, self.path, self.target = name, path, target
        self.env = {**os.environ, "CARGO_TARGET_DIR": target}

    def build(self):
        # The binary's package is `tally` before the cli crate existed, `tally-cli` after.
        cli = "tally-cli" if os.path.isdir(os.path.join(self.path, "cli")) else "tally"
        run(["cargo", "build", "--release", "-p", cli, "-p", "loadgen"], self.path, self.env)
        run(["cargo", "build", "--release", "-p", "tally-benches", "--example", "per_event", "--bench", "ingest"],
            self.path, self.env)

    def engine_core(self):
        run(["cargo", "bench", "-p", "tally-benches", "--bench", "ingest", "--",
             "--warm-up-time", "2", "--noplot", "decode_and_update"], self.path, self.env)
        path = os.path.join(self.target, "criterion", "ingest", "decode_and_update", "new", "estimates.json")
        with open(path) as f:
            return EVENTS_PER_ITER / (json.load(f)["median"]["point_estimate"] / 1e9)

    def instructions(self):
        exe = os.path.join(self.target, "release", "examples", "per_event")
        counts = {}
        for iters in (1, 3):
            out = run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", exe], self.path,
                      {**self.env, "ITERS": str(iters)}).stderr
            counts[iters] = int(re.search(r"refs:\s+([0-9,]+)", out).group(1).replace(",", ""))
        return (counts[3] - counts[1]) / (2 * EVENTS_PER_ITER)

    def loadgen(self, url, events, out):
        lg = os.path.join(self.target, "release", "tally-loadgen")
        run([lg, "run", "--nodes", "1", "--events", str(events), "--span-days", "0.00005", "--late-per-mille", "0",
             "--window", "256", "--store", url, "--out", out], self.path, self.env)
        with open(out) as f:
            r = json.load(f)
        if not r.get("verified"):
            raise SystemExit(f"{self.name}: the loadgen run did not verify")
        return r["events_per_sec"], r["rows_flushed_per_sec"] / r["events_per_sec"], r["ack_latency_ms"]["p50"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--events", type=int, default=20_000_000)
    ap.add_argument("--out")
    args = ap.parse_args()
    base_sha = sh("git", "rev-parse", "--short", args.base)
    head_sha = sh("git", "rev-parse", "--short", "HEAD")
    out_path = args.out or os.path.join(ROOT, "results", f"compare-{base_sha}-{head_sha}.json")
    work = tempfile.mkdtemp(prefix="tally-compare-")
    base_dir = os.path.join(work, "base")
    sh("git", "worktree", "add", "--detach", base_dir, args.base)
    pg_env = None
    try:
        trees = [Tree("base", base_dir, os.path.join(work, "base-target")),
                 Tree("head", ROOT, os.path.join(ROOT, "target"))]
        for t in trees:
            print(f"building {t.name} …", file=sys.stderr)
            t.build()
        url = os.environ.get("DATABASE_URL")
        if not url:
            started = sh(os.path.join(ROOT, "scripts", "postgres.sh"), "start",
                         env={**os.environ, "TALLY_PG_FSYNC": "on"})
            pg_env = dict(re.findall(r"export (\w+)=(\S+)", started))
            url = pg_env["DATABASE_URL"]
        rounds = []
        for r in range(args.rounds):
            row = {"round": r + 1}
            for t in trees:
                eps, rows_per_event, p50 = t.loadgen(url, args.events, os.path.join(work, f"{t.name}-{r}.json"))
                row[t.name] = {
                    "engine_core_events_per_sec": t.engine_core(),
                    "loadgen_events_per_sec": eps,
                    "loadgen_rows_per_event": rows_per_event,
                    "loadgen_ack_p50_ms": p50,
                }
            for k in ("engine_core_events_per_sec", "loadgen_events_per_sec", "loadgen_rows_per_event"):
                row[f"{k}_ratio"] = row["head"][k] / row["base"][k]
            rounds.append(row)
            print(f"round {r + 1}: engine-core {row['base']['engine_core_events_per_sec'] / 1e6:.1f} → "
                  f"{row['head']['engine_core_events_per_sec'] / 1e6:.1f} M/s ({row['engine_core_events_per_sec_ratio']:.3f}); "
                  f"loadgen {row['base']['loadgen_events_per_sec'] / 1e6:.2f} → "
                  f"{row['head']['loadgen_events_per_sec'] / 1e6:.2f} M/s ({row['loadgen_events_per_sec_ratio']:.3f}); "
                  f"rows/event {row['base']['loadgen_rows_per_event']:.5f} → {row['head']['loadgen_rows_per_event']:.5f}",
                  file=sys.stderr)
        instructions = {t.name: t.instructions() if shutil.which("valgrind") else None for t in trees}
        med = lambda f: statistics.median(f(r) for r in rounds)  # noqa: E731
        result = {
            "bench": "base against head, interleaved rounds (scripts/bench_compare.py)",
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "base_sha": base_sha,
            "head_sha": head_sha,
            "git_dirty": bool(sh("git", "status", "--porcelain")),
            "machine": machine(),
            "config": {
                "engine_core": "benches/benches/ingest.rs decode_and_update: 1 M events of TradeStream, 1,000 "
                               "symbols, avg + sum every sec ... year, one core, from empty maps",
                "loadgen": f"tally-loadgen run --nodes 1 --events {args.events} --span-days 0.00005 "
                           "--late-per-mille 0 --window 256, PostgreSQL fsync on, verified",
                "rounds": args.rounds,
            },
            "rounds": rounds,
            "median": {
                "engine_core_events_per_sec": {n: med(lambda r: r[n]["engine_core_events_per_sec"]) for n in ("base", "head")},
                "engine_core_ratio": med(lambda r: r["engine_core_events_per_sec_ratio"]),
                "loadgen_events_per_sec": {n: med(lambda r: r[n]["loadgen_events_per_sec"]) for n in ("base", "head")},
                "loadgen_ratio": med(lambda r: r["loadgen_events_per_sec_ratio"]),
                "loadgen_rows_per_event": {n: med(lambda r: r[n]["loadgen_rows_per_event"]) for n in ("base", "head")},
                "loadgen_rows_per_event_ratio": med(lambda r: r["loadgen_rows_per_event_ratio"]),
                "loadgen_ack_p50_ms": {n: med(lambda r: r[n]["loadgen_ack_p50_ms"]) for n in ("base", "head")},
            },
            "instructions_per_event_callgrind": instructions,
        }
        with open(out_path, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
        m = result["median"]
        print(f"medians over {args.rounds} rounds: engine-core ratio {m['engine_core_ratio']:.3f}, "
              f"loadgen ratio {m['loadgen_ratio']:.3f}; instructions/event {instructions}; "
              f"written to {os.path.relpath(out_path, ROOT)}")
    finally:
        if pg_env:
            subprocess.run([os.path.join(ROOT, "scripts", "postgres.sh"), "stop"], env={**os.environ, **pg_env})
        subprocess.run(["git", "worktree", "remove", "--force", base_dir], cwd=ROOT)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
