#!/usr/bin/env python
"""The workflow's own cost of a no-op dry run: ``snakemake -n`` on a finished run next to
``snakemake --version`` (the floor: Python, Snakemake's imports), and the difference. Target: <= 1 s.

Each command runs ``--repeat`` times; the median wall time and the median CPU time (user + system of
the child, the figure to read on a loaded machine) are printed. The first dry run after a code edit
hashes the stages' source again (rules/common.smk, evolcoder.codehash); later ones read the stat-keyed
cache in .snakemake/evolcoder-codehash.json, so the first run is reported on its own.

    python scripts/bench_dryrun.py [--directory .] [--repeat 5] [-- extra snakemake args]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path


def timed(cmd: list[str], cwd: Path) -> tuple[float, float, str]:
    """(wall s, CPU s of the child, its output)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        sys.exit(f"bench_dryrun: {' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return wall, cpu, proc.stdout + proc.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--directory", default=str(Path(__file__).resolve().parents[1]), help="a finished run")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("extra", nargs="*", help="extra snakemake arguments (after --)")
    args = ap.parse_args()
    cwd = Path(args.directory)
    snakemake = str(Path(sys.executable).with_name("snakemake"))
    if not os.path.exists(snakemake):
        snakemake = "snakemake"

    first = timed([snakemake, "-n", *args.extra], cwd)
    jobs = re.search(r"^total\s+(\d+)", first[2], re.M)
    if jobs and int(jobs.group(1)) > 0:
        print(f"note: the dry run plans {jobs.group(1)} jobs: not a finished run, the figures include planning them")
    version = [timed([snakemake, "--version"], cwd) for _ in range(args.repeat)]
    dry = [timed([snakemake, "-n", *args.extra], cwd) for _ in range(args.repeat)]

    def med(runs, i):
        return statistics.median(r[i] for r in runs)

    print(f"load average {os.getloadavg()[0]:.1f}; medians of {args.repeat} runs in {cwd}")
    print(f"{'':<30} {'wall s':>8} {'cpu s':>8}")
    print(f"{'snakemake --version':<30} {med(version, 0):>8.2f} {med(version, 1):>8.2f}")
    print(f"{'snakemake -n (first)':<30} {first[0]:>8.2f} {first[1]:>8.2f}")
    print(f"{'snakemake -n':<30} {med(dry, 0):>8.2f} {med(dry, 1):>8.2f}")
    d_wall, d_cpu = med(dry, 0) - med(version, 0), med(dry, 1) - med(version, 1)
    ok = "ok" if d_cpu <= 1.0 else "ABOVE 1 s"
    print(f"{'difference (the workflow)':<30} {d_wall:>8.2f} {d_cpu:>8.2f}  {ok}")


if __name__ == "__main__":
    main()
