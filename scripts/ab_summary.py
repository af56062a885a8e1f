#!/usr/bin/env python3
"""Prints the side-by-side table of an A/B results directory (runs named
<shape>-<old|new>-<round>.json by an `ab` loop, see scripts/ab_lib.sh):
events/s per round, node CPU, p99 ACK latency, peak RSS, whether every run verified,
and the ratio of the medians per shape.

Usage: ab_summary.py DIR SHAPE..."""
import glob, json, statistics, sys


def join(values, spec):
    return " / ".join(format(v, spec) for v in values)


def main(here, shapes):
    print(f"{'shape':14} {'build':5} {'events/s per round':28} {'node CPU s':18} {'p99 ms':16} {'peak RSS MiB':14} verified")
    for shape in shapes:
        med = {}
        for v in ("old", "new"):
            runs = [json.load(open(f)) for f in sorted(glob.glob(f"{here}/{shape}-{v}-*.json"))]
            if not runs:
                continue
            eps = [r["events_per_sec"] for r in runs]
            med[v] = statistics.median(eps)
            print(f"{shape:14} {v:5} {' / '.join(f'{e/1e3:,.0f} K' for e in eps):28} "
                  f"{join([sum(r['node_cpu_sec']) for r in runs], '.1f'):18} "
                  f"{join([r['ack_latency_ms']['p99'] for r in runs], ',.0f'):16} "
                  f"{join([max(r['peak_rss_bytes']) / 2**20 for r in runs], ',.0f'):14} "
                  f"{all(r['verified'] for r in runs)}")
        if len(med) == 2:
            print(f"{shape:14} new/old median {med['new']/med['old']:.2f}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
