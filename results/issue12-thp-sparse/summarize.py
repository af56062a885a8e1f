#!/usr/bin/env python3
"""Prints the side-by-side table of this directory's runs (old = 08af344, new = THP off)."""
import os, subprocess, sys
here = os.path.dirname(os.path.abspath(__file__))
sys.exit(subprocess.call([sys.executable, os.path.join(here, "../../scripts/ab_summary.py"), here, "sparse-pg", "sparse-sqlite", "dense", "k100", "http", "m1"]))
