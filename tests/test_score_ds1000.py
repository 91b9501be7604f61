"""DS-1000: the official check (code_context + test_execution/test_string) in DS-1000's own pinned
environment, every exception to "the reference code passes" listed and explained, skips never pass.

The full-dataset and foreign-interpreter tests need that environment: ``scripts/test.sh`` builds
it (``scripts/setup_ds1000.sh``, ``envs/ds1000.txt``) and exports ``EVOLCODER_DS1000_PYTHON``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evolcoder.benchmarks import harness
from evolcoder.benchmarks.ds1000 import OFFICIAL_PINS, failure_cause
from evolcoder.errors import EvolcoderError
from evolcoder.sandbox.jobs import Job, Limits
from evolcoder.sandbox.pool import run_jobs
from evolcoder.score import score_file

DATA = Path(os.environ.get("EVOLCODER_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
DS = DATA / "ds1000" / "ds1000.jsonl.gz"
DS_PYTHON = os.environ.get("EVOLCODER_DS1000_PYTHON")
pytestmark = pytest.mark.skipif(not DS.exists(), reason="shared data not available")
needs_env = pytest.mark.skipif(not DS_PYTHON, reason="DS-1000 environment not built (EVOLCODER_DS1000_PYTHON)")

# Reference solutions that cannot pass in a sandbox without network: they download a file
# (matplotlib sample images and data, an sklearn dataset) in their code_context or solution.
# The official harness on this (offline) machine fails exactly these 15 too.
NETWORK_FETCH = {
    "519",
    "539",
    "565",
    "566",
    "567",
    "577",
    "598",
    "624",
    "629",
    "650",
    "654",
    "655",
    "656",
    "661",
    "819",
}
# Numpy problems whose test code imports TensorFlow: they pass only where TensorFlow is installed.
TF_IMPORTING = {"379", "380"}
# The official-harness count, 937 of the 955 non-TensorFlow problems, is 955 minus the 15
# network fetches, minus the 2 TensorFlow imports (no TensorFlow there), minus 1 timeout at 60 s:
# Sklearn 849 (GridSearchCV over a bagging classifier) takes 12 s here in a worker that has
# pre-imported sklearn with one BLAS thread, well inside the official 120 s (and the 60 s).
SLOW_BUT_PASSING = "849"


def _write(tmp_path, recs) -> Path:
    pred = tmp_path / "ds.jsonl"
    pred.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return pred


def _tasks():
    from evolcoder.benchmarks import get_benchmark

    return get_benchmark("ds1000").load_tasks(str(DS))


def test_scorer_interpreter_skips_missing_libraries_and_records_pin_mismatch(tmp_path):
    """Without the pinned environment: TensorFlow (absent from the scorer's venv) is skipped, never
    passed, and the score file says which versions differ from the official pins."""
    tasks = _tasks()
    pick = [t for t in tasks if t["library"] == "Numpy"][:3] + [t for t in tasks if t["library"] == "Pandas"][:1]
    recs = [{"task_id": t["task_id"], "solution": t["reference_code"]} for t in pick]
    recs += [{"task_id": t["task_id"], "solution": "result = None\n"} for t in pick]
    tf = [t for t in tasks if t["library"] == "Tensorflow"][:2]
    recs += [{"task_id": t["task_id"], "solution": t["reference_code"]} for t in tf]
    res = score_file(
        "ds1000",
        str(_write(tmp_path, recs)),
        str(DS),
        {"jobs": 2, "options": {"python": sys.executable, "preimport": ["numpy", "pandas"]}},
    )
    for t in pick:
        assert res["per_task"][t["task_id"]]["base"] == ["pass", "fail"], t["task_id"]
    assert res["base"]["pass@1"] == 50.0 and res["by_library"]["Numpy"] == 50.0
    assert set(res["skipped"]) == {t["task_id"] for t in tf}
    assert not set(res["skipped"]) & set(res["per_task"])
    env = res["execution_env"]
    assert env["executable"] == os.path.abspath(sys.executable)
    assert env["pins_match"] is False
    assert env["mismatches"]["numpy"]["want"] == "1.26.4" and env["mismatches"]["tensorflow"]["have"] is None
    assert res["failure_causes"] == {}  # "result = None" is a wrong answer, not an environment problem


def test_failure_causes():
    assert failure_cause("URLError: <urlopen error [Errno -3] Temporary failure in name resolution>") == "network"
    assert failure_cause("ModuleNotFoundError: No module named 'tensorflow.keras'") == "missing-module:tensorflow"
    assert failure_cause("time limit 120s") == "timeout"
    assert failure_cause("AssertionError: ") is None


def test_bad_interpreter_is_one_line_error(tmp_path):
    t = _tasks()[0]
    pred = _write(tmp_path, [{"task_id": t["task_id"], "solution": t["reference_code"]}])
    with pytest.raises(EvolcoderError, match="execution interpreter not found: /nonexistent/python"):
        score_file("ds1000", str(pred), str(DS), {"options": {"python": "/nonexistent/python"}})
    out = subprocess.run(
        [
            str(Path(sys.executable).parent / "evolcoder"),
            "score",
            "--benchmark",
            "ds1000",
            "--predictions",
            str(pred),
            "--data",
            str(DS),
            "--out",
            str(tmp_path / "r.json"),
            "--option",
            "python=/nonexistent/python",
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and not (tmp_path / "r.json").exists()
    assert len(out.stderr.strip().splitlines()) == 1 and "/nonexistent/python" in out.stderr


@needs_env
def test_foreign_workers_run_programs_against_the_pinned_libraries():
    """Workers started with the DS-1000 interpreter: the sandboxed program sees numpy 1.26.4 (the
    scorer has numpy 2), order is kept, and hostile programs still fail cleanly."""
    import numpy

    assert numpy.__version__ != "1.26.4"
    context = (
        "import numpy as np\n"
        "def test_execution(code):\n"
        "    g = {'np': np}\n"
        "    exec(code, g)\n"
        "    assert np.__version__ == '1.26.4' and g['result'] == 6\n"
    )
    sem = {"clock": "wall", "guard": True}
    programs = [
        "result = int(np.arange(4).sum())",
        "result = 5",
        "while True: pass",
        "import os; os._exit(0)",
        "result = int(np.arange(4).sum())",
    ]
    jobs = [
        Job(harness.run_ds1000, (context, p, 3.0, sem), Limits(wall_s=10, cpu_s=5, memory_mb=4096)) for p in programs
    ]
    info: dict = {}
    res = run_jobs(jobs, workers=2, preimport=["numpy"], python=DS_PYTHON, env_info=info)
    assert info["executable"] == DS_PYTHON and info["versions"]["numpy"] == "1.26.4"
    assert info["preimported"] == ["numpy"]
    verdicts = [r.result["status"] if r.status == "ok" else r.status for r in res]
    assert verdicts == ["pass", "fail", "timeout", "crash", "pass"]


@needs_env
@pytest.mark.slow
def test_every_reference_solution_passes_but_the_explained_exceptions(tmp_path):
    """All 1000 reference solutions in the pinned environment (about 2 minutes on 2 cores)."""
    tasks = _tasks()
    recs = [{"task_id": t["task_id"], "solution": t["reference_code"]} for t in tasks]
    res = score_file("ds1000", str(_write(tmp_path, recs)), str(DS), {"jobs": 2})
    env = res["execution_env"]
    assert env["pins_match"], env["mismatches"]
    assert {m: v.split("+")[0] for m, v in env["versions"].items() if OFFICIAL_PINS.get(m)} == {
        m: v for m, v in OFFICIAL_PINS.items() if v
    }
    has_tf = bool(env["versions"].get("tensorflow"))
    fails = {t for t, e in res["per_task"].items() if e["base"] != ["pass"]}
    causes = dict(res["failure_causes"])
    assert set(causes.pop("network")) == NETWORK_FETCH
    tf_ids = {t["task_id"] for t in tasks if t["library"] == "Tensorflow"}
    if has_tf:
        assert res["skipped"] == [] and causes == {}
        assert fails == NETWORK_FETCH
        assert all(res["per_task"][t]["base"] == ["pass"] for t in tf_ids | TF_IMPORTING)
    else:
        assert set(res["skipped"]) == tf_ids
        assert causes == {"missing-module:tensorflow": sorted(TF_IMPORTING)}
        assert fails == NETWORK_FETCH | TF_IMPORTING
    assert res["per_task"][SLOW_BUT_PASSING]["base"] == ["pass"]
    non_tf_pass = sum(e["base"] == ["pass"] for t, e in res["per_task"].items() if t not in tf_ids)
    assert non_tf_pass == (940 if has_tf else 938)  # official here: 937 (see TF_IMPORTING, SLOW_BUT_PASSING)
