#!/usr/bin/env python3
"""Prints the side-by-side table of this directory's runs (old = 47564da's engine, new = journal format 3)."""
import os, subprocess, sys
here = os.path.dirname(os.path.abspath(__file__))
sys.exit(subprocess.call([sys.executable, os.path.join(here, "../../scripts/ab_summary.py"), here,
                          "m1", "m1-20m", "k100", "dense", "sparse-pg", "sparse-sqlite", "http"]))
