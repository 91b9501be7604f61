#!/usr/bin/env python
"""Time `evolcoder score` against a plain `evalplus.evaluate` on the same samples and cores.

Both run in fresh subprocesses with their reference data already cached (evalplus's ground-truth
pickle, our reference-timings file), so the figure compares scoring only. Prints both times, the
ratio (target <= 1.05) and both pass@1 numbers.

  PYTHONPATH=src python scripts/bench_score.py --benchmark humaneval \
      --predictions ../shared/data/predictions/wizardcoder-15b-v1.0_humaneval_greedy.jsonl \
      --data ../shared/data/evalplus/HumanEvalPlus-v0.1.10.jsonl.gz --jobs 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EVALPLUS = """
import json, sys, time
from evalplus.evaluate import evaluate
t = time.time()
evaluate(sys.argv[1], samples=sys.argv[2], parallel=int(sys.argv[3]), i_just_wanna_run=True)
print("ELAPSED", time.time() - t)
"""
WARM_EVALPLUS = """
import sys
from evalplus.evaluate import get_groundtruth
from evalplus.data import get_human_eval_plus, get_human_eval_plus_hash, get_mbpp_plus, get_mbpp_plus_hash
from evalplus.eval._special_oracle import MBPP_OUTPUT_NOT_NONE_TASKS
if sys.argv[1] == "humaneval":
    get_groundtruth(get_human_eval_plus(), get_human_eval_plus_hash(), [])
else:
    get_groundtruth(get_mbpp_plus(), get_mbpp_plus_hash(), MBPP_OUTPUT_NOT_NONE_TASKS)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--benchmark", default="humaneval", choices=["humaneval", "mbpp"])
    ap.add_argument("--predictions", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--settings-json", default="{}")
    args = ap.parse_args()

    env = dict(os.environ)
    env["HUMANEVAL_OVERRIDE_PATH" if args.benchmark == "humaneval" else "MBPP_OVERRIDE_PATH"] = str(
        Path(args.data).resolve()
    )
    py = sys.executable
    tmp = Path(tempfile.mkdtemp(prefix="bench_score."))
    samples = tmp / "samples.jsonl"
    shutil.copy(args.predictions, samples)
    out = tmp / "ours.json"
    ours_cmd = [
        py,
        "-m",
        "evolcoder.cli",
        "score",
        "--benchmark",
        args.benchmark,
        "--predictions",
        str(samples),
        "--data",
        args.data,
        "--out",
        str(out),
        "--jobs",
        str(args.jobs),
        "--settings-json",
        args.settings_json,
    ]
    print("warming up reference data (not timed)...", flush=True)
    subprocess.run([py, "-c", WARM_EVALPLUS, args.benchmark], env=env, check=True, capture_output=True)
    subprocess.run([py, "-c", "from evolcoder.score import *"], env=env, check=True)
    # our reference timings of every task (measured once, then reused from the cache): score a
    # one-line file with reference timings for the whole dataset requested through `timings`
    warm = tmp / "warm.jsonl"
    with open(args.predictions) as fh:
        warm.write_text(fh.readline())
    subprocess.run(
        [
            py,
            "-m",
            "evolcoder.cli",
            "score",
            "--benchmark",
            args.benchmark,
            "--predictions",
            str(warm),
            "--data",
            args.data,
            "--out",
            str(tmp / "warm.json"),
            "--jobs",
            str(args.jobs),
            "--settings-json",
            args.settings_json,
        ],
        env=env,
        check=True,
        capture_output=True,
    )

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    t, c = time.time(), cpu()
    ev = subprocess.run(
        [py, "-c", EVALPLUS, args.benchmark, str(samples), str(args.jobs)], env=env, capture_output=True, text=True
    )
    t_ev, c_ev = time.time() - t, cpu() - c
    if ev.returncode != 0:
        sys.exit(f"evalplus failed: {ev.stderr[-2000:]}")
    ev_res = json.loads((tmp / "samples_eval_results.json").read_text())["eval"]
    ev_base = 100 * sum(r[0]["base_status"] == "pass" for r in ev_res.values()) / len(ev_res)
    ev_plus = 100 * sum(r[0]["base_status"] == r[0]["plus_status"] == "pass" for r in ev_res.values()) / len(ev_res)

    t, c = time.time(), cpu()
    ours = subprocess.run(ours_cmd, env=env, capture_output=True, text=True)
    t_ours, c_ours = time.time() - t, cpu() - c
    if ours.returncode != 0:
        sys.exit(f"evolcoder score failed: {ours.stderr[-2000:]}")
    res = json.loads(out.read_text())
    same = sum(
        (ev_res[t][0]["base_status"] == "pass") == (e["base"][0] == "pass")
        and (ev_res[t][0]["base_status"] == ev_res[t][0]["plus_status"] == "pass") == (e["plus"][0] == "pass")
        for t, e in res["per_task"].items()
        if t in ev_res
    )
    print(f"evalplus.evaluate : {t_ev:7.1f} s ({c_ev:6.1f} s CPU)   base {ev_base:.1f}  plus {ev_plus:.1f}")
    print(
        f"evolcoder score   : {t_ours:7.1f} s ({c_ours:6.1f} s CPU)   "
        f"base {res['base']['pass@1']:.1f}  plus {res['plus']['pass@1']:.1f}"
        f"   (retried: {len(res['retried'])})"
    )
    print(
        f"time ratio evolcoder/evalplus = {t_ours / t_ev:.3f}  (target <= 1.05); jobs = {args.jobs}; "
        f"per-task verdicts equal on {same}/{len(res['per_task'])} tasks"
    )
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
