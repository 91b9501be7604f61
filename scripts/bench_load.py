#!/usr/bin/env python
"""Load-independence check (issue 7): score the same predictions N times while other processes keep
every core busy; the per-task verdicts must be identical on every run.

Reference timings are measured once (before the load starts, or reused from the timings cache)
and the per-test limits count CPU time, so the load neither inflates the limits nor the samples'
measured time; a sample that still times out is re-run alone before it is declared a failure.

  PYTHONPATH=src python scripts/bench_load.py --benchmark humaneval \
      --predictions ../shared/data/predictions/wizardcoder-15b-v1.0_humaneval_greedy.jsonl \
      --data ../shared/data/evalplus/HumanEvalPlus-v0.1.10.jsonl.gz --runs 5 --jobs 2 --load 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUSY = "while True: pass"


def verdicts(res: dict) -> dict:
    return {t: (tuple(e["base"]), tuple(e.get("plus", ()))) for t, e in res["per_task"].items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--benchmark", default="humaneval")
    ap.add_argument("--predictions", required=True)
    ap.add_argument("--data", default=None)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--load", type=int, default=os.cpu_count() or 2, help="busy-loop processes")
    ap.add_argument("--tasks", default=None, help="comma-separated task ids to keep (default: all)")
    ap.add_argument("--settings-json", default="{}")
    args = ap.parse_args()

    from evolcoder.score import score_file

    settings = json.loads(args.settings_json)
    settings.setdefault("jobs", args.jobs)
    pred = args.predictions
    if args.tasks:
        keep = set(args.tasks.split(","))
        tmp = Path(tempfile.mkdtemp(prefix="bench_load.")) / "subset.jsonl"
        with open(args.predictions) as fh:
            tmp.write_text("".join(l for l in fh if json.loads(l)["task_id"] in keep))
        pred = str(tmp)

    # reference timings first, without load (reused from the cache when already measured)
    base = score_file(args.benchmark, pred, args.data, dict(settings, retries=0))
    print(f"unloaded: {json.dumps({k: base[k]['pass@1'] for k in ('base', 'plus') if k in base})} "
          f"timings: {base['evaluator'].get('reference_timings', {}).get('path', '-')}", flush=True)

    load = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(args.load)]
    runs = []
    try:
        for r in range(args.runs):
            t = time.time()
            res = score_file(args.benchmark, pred, args.data, settings)
            runs.append(res)
            print(f"run {r + 1}/{args.runs} under load ({args.load} busy processes): "
                  f"{json.dumps({k: res[k]['pass@1'] for k in ('base', 'plus') if k in res})} "
                  f"retried {res['retried']} in {time.time() - t:.0f}s", flush=True)
    finally:
        for p in load:
            p.kill()
            p.wait()
    first = verdicts(runs[0])
    diffs = {i + 1: sorted(t for t in first if verdicts(r)[t] != first[t]) for i, r in enumerate(runs[1:], 1)}
    n_diff = sum(len(d) for d in diffs.values())
    unloaded = sorted(t for t in first if verdicts(base)[t] != first[t])
    print(f"per-task verdicts identical across {args.runs} loaded runs: {n_diff == 0} "
          f"(differences: {diffs if n_diff else 'none'}); vs unloaded run without retries: "
          f"{unloaded or 'identical'}")
    sys.exit(0 if n_diff == 0 else 1)


if __name__ == "__main__":
    main()
