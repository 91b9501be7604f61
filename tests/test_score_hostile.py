"""Hostile and reward-hacking samples fail cleanly through the whole scorer; others are unaffected."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import test_timings

DATA = Path(os.environ.get("EVOLCODER_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
HE = DATA / "evalplus" / "HumanEvalPlus-v0.1.10.jsonl.gz"
pytestmark = pytest.mark.skipif(not HE.exists(), reason="shared data not available")


def _hostile(canary: str) -> dict[str, str]:
    """task index -> a hostile program defining that task's entry point (filled in below)."""
    return {
        "always_eq": """
class AlwaysEq:
    def __eq__(self, other):
        return True
    def __ne__(self, other):
        return False
    __hash__ = object.__hash__
def {fn}(*args, **kwargs):
    return AlwaysEq()
""",
        "int_subclass_eq": """
class Liar(int):
    def __eq__(self, other):
        return True
    __hash__ = int.__hash__
def {fn}(*args, **kwargs):
    return Liar(0)
""",
        "list_subclass_eq": """
class Liar(list):
    def __eq__(self, other):
        return True
def {fn}(*args, **kwargs):
    return Liar()
""",
        "sys_exit_module": "import sys\nsys.exit(0)\ndef {fn}(*a):\n    return None\n",
        "sys_exit_call": "import sys\ndef {fn}(*a):\n    sys.exit(0)\n",
        "os_exit_call": "import os\ndef {fn}(*a):\n    os._exit(0)\n",
        "infinite_loop": "def {fn}(*a):\n    while True:\n        pass\n",
        "fork_bomb": """
import posix
def {fn}(*a):
    while True:
        try:
            posix.fork()
        except OSError:
            pass
""",
        "memory_eater": "def {fn}(*a):\n    x = []\n    while True:\n        x.append(bytearray(1 << 26))\n",
        "deletes_files": f"""
import posix
def {{fn}}(*a):
    for p in ({canary!r},):
        try:
            posix.unlink(p)
        except OSError:
            pass
    return None
""",
        "kill_everything": """
import posix, signal
def {fn}(*a):
    try:
        posix.kill(-1, signal.SIGKILL)
    except OSError:
        pass
    return None
""",
        "patch_builtins": """
import builtins
builtins.isinstance = lambda *a: True
builtins.type = lambda *a: list
class AlwaysEq:
    def __eq__(self, other):
        return True
def {fn}(*a):
    return AlwaysEq()
""",
    }


@pytest.fixture(scope="module")
def hostile_scores(tmp_path_factory):
    from evolcoder.benchmarks import get_benchmark
    from evolcoder.score import score_file

    tmp = tmp_path_factory.mktemp("hostile")
    canary_dir = tmp / "precious"
    canary_dir.mkdir()
    canary = canary_dir / "canary.txt"
    canary.write_text("keep me")
    os.chmod(tmp, 0o755)
    bench = get_benchmark("humaneval")
    tasks = bench.load_tasks(str(HE))
    hostile = _hostile(str(canary))
    recs = []
    names = {}
    for task, (name, code) in zip(tasks, hostile.items(), strict=False):
        names[task["task_id"]] = name
        recs.append({"task_id": task["task_id"], "solution": code.replace("{fn}", task["entry_point"])})
        recs.append({"task_id": task["task_id"], "solution": task["prompt"] + task["canonical_solution"]})
    pred = tmp / "hostile.jsonl"
    pred.write_text("".join(json.dumps(r) + "\n" for r in recs))
    settings = {"jobs": 2, "timings": test_timings("humaneval", HE), "retries": 1, "reference_repeats": 1, "ks": [1, 2]}
    res = score_file("humaneval", str(pred), str(HE), settings)
    return res, names, canary


def test_every_hostile_sample_fails_and_every_canonical_passes(hostile_scores):
    res, names, _ = hostile_scores
    assert set(res["per_task"]) == set(names)
    for tid, entry in res["per_task"].items():
        assert entry["n"] == 2
        assert entry["base"][0] != "pass", f"{names[tid]} passed base"
        assert entry["plus"][0] != "pass", f"{names[tid]} passed plus"
        assert entry["base"][1] == "pass" and entry["plus"][1] == "pass", f"canonical of {tid} ({names[tid]})"
    assert res["base"]["pass@1"] == 50.0 and res["plus"]["pass@1"] == 50.0
    assert res["base"]["pass@2"] == 100.0


def test_machine_unharmed(hostile_scores):
    _, _, canary = hostile_scores
    assert canary.read_text() == "keep me"
    # no sandbox process survived (a uid a live scorer holds, e.g. another test file's, is not a leftover)
    from evolcoder.sandbox.isolation import SANDBOX_UID_BASE, SANDBOX_UIDS, uid_claimed

    left = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                uid = os.stat(f"/proc/{name}").st_uid
            except OSError:
                continue
            if SANDBOX_UID_BASE <= uid < SANDBOX_UID_BASE + SANDBOX_UIDS and not uid_claimed(uid):
                try:
                    stat = Path(f"/proc/{name}/stat").read_text()
                except OSError:
                    continue
                left.append(f"{name} uid {uid}: {stat[:120]}")
    assert left == []


def test_infinite_loop_is_a_timeout_not_a_plain_failure(hostile_scores):
    res, names, _ = hostile_scores
    tid = next(t for t, n in names.items() if n == "infinite_loop")
    assert res["per_task"][tid]["base"][0] == "timeout"
    assert tid in res["retried"]


def test_official_evalplus_passes_the_always_eq_hack():
    """Documents why we do not execute through evalplus: its ``out == exp`` trusts the output's __eq__."""
    from evalplus.eval import untrusted_check
    from evalplus.gen.util import trusted_exec

    from evolcoder.benchmarks import get_benchmark

    task = get_benchmark("humaneval").load_tasks(str(HE))[0]
    expected, times = trusted_exec(
        task["prompt"] + task["canonical_solution"], task["base_input"], task["entry_point"], record_time=True
    )
    code = _hostile("/nonexistent")["always_eq"].replace("{fn}", task["entry_point"])
    stat, _ = untrusted_check(
        "humaneval", code, task["base_input"], task["entry_point"], expected, task["atol"], times, fast_check=True
    )
    assert stat == "pass"


MBPP_ORIG = DATA / "mbpp" / "mbpp.test.jsonl"


def test_mbpp_original_asserts_are_type_aware(tmp_path):
    """``assert f(x) == y``: the sandbox computes ``f(x)``, the scorer compares it with ``y`` (plain
    values only), so an always-True __eq__ fails there too."""
    from evolcoder.benchmarks import get_benchmark
    from evolcoder.benchmarks.harness import plan_asserts
    from evolcoder.score import score_file

    assert plan_asserts(["assert f(1) == 2"]) == [(["f(1)"], "__leaf0__ == 2")]
    assert plan_asserts(["assert math.isclose(area(2), 12.5, rel_tol=0.01)"]) == [
        (["area(2)"], "math.isclose(__leaf0__, 12.5, rel_tol=0.01)")
    ]
    assert plan_asserts(["assert set(f(x)) == set([1, 2])"]) == [(["set(f(x))"], "__leaf0__ == set([1, 2])")]
    tasks = get_benchmark("mbpp-original").load_tasks(str(MBPP_ORIG))[:3]
    recs = []
    for t in tasks:
        fn = t["test_list"][0].split("assert ", 1)[1].split("(", 1)[0].strip()
        recs.append({"task_id": t["task_id"], "solution": t["code"]})
        recs.append({"task_id": t["task_id"], "solution": _hostile("/x")["always_eq"].replace("{fn}", fn)})
        recs.append({"task_id": t["task_id"], "solution": f"import sys\ndef {fn}(*a):\n    sys.exit(0)\n"})
    pred = tmp_path / "m.jsonl"
    pred.write_text("".join(json.dumps(r) + "\n" for r in recs))
    res = score_file("mbpp-original", str(pred), str(MBPP_ORIG), {"jobs": 2})
    for t in tasks:
        assert res["per_task"][t["task_id"]]["base"] == ["pass", "fail", "fail"]
