#!/usr/bin/env python
"""DS-1000 scoring: workers that pre-import the heavy libraries vs a cold import per problem.

Scores the reference solutions of the first N problems of every library twice in DS-1000's pinned
environment: with the default pre-imports (numpy, pandas, scipy, sklearn, matplotlib, seaborn,
torch, tensorflow once per worker; each problem's sandboxed child is forked with them loaded), and
with none (each child imports what its problem needs). Prints both times, the ratio and whether
the per-problem verdicts agree.

  export EVOLCODER_DS1000_PYTHON=$(bash scripts/setup_ds1000.sh)
  python scripts/bench_ds1000.py --data ../shared/data/ds1000/ds1000.jsonl.gz --per-library 10 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import defaultdict

from evolcoder.benchmarks import get_benchmark
from evolcoder.score import score_file


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument(
        "--python",
        default=os.environ.get("EVOLCODER_DS1000_PYTHON"),
        help="DS-1000 interpreter (default $EVOLCODER_DS1000_PYTHON)",
    )
    ap.add_argument("--per-library", type=int, default=10)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    if not args.python:
        ap.error("no DS-1000 interpreter: pass --python or set EVOLCODER_DS1000_PYTHON")

    picked: dict[str, list[dict]] = defaultdict(list)
    for t in get_benchmark("ds1000").load_tasks(args.data):
        if len(picked[t["library"]]) < args.per_library:
            picked[t["library"]].append(t)
    tasks = [t for ts in picked.values() for t in ts]
    with tempfile.TemporaryDirectory() as tmp:
        pred = os.path.join(tmp, "ref.jsonl")
        with open(pred, "w") as fh:
            for t in tasks:
                fh.write(json.dumps({"task_id": t["task_id"], "solution": t["reference_code"]}) + "\n")
        runs = {}
        for label, preimport in (("pre-imported", None), ("cold", [])):
            settings = {"jobs": args.jobs, "options": {"python": args.python}}
            if preimport is not None:
                settings["options"]["preimport"] = preimport
            t0 = time.time()
            res = score_file("ds1000", pred, args.data, settings)
            runs[label] = (time.time() - t0, res)
            print(
                f"{label:>13}: {runs[label][0]:6.1f} s  pass@1 {res['base']['pass@1']:.1f}  "
                f"({len(tasks)} problems, {args.jobs} workers, preimported: "
                f"{', '.join(res['execution_env'].get('preimported') or []) or 'none'})",
                flush=True,
            )
    (warm, a), (cold, b) = runs["pre-imported"], runs["cold"]
    same = {k: v["base"] for k, v in a["per_task"].items()} == {k: v["base"] for k, v in b["per_task"].items()}
    print(f"cold / pre-imported = {cold / warm:.2f}x; verdicts identical: {same}")


if __name__ == "__main__":
    main()
