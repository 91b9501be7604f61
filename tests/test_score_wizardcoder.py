"""WizardCoder's own released generations give WizardCoder's own published numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(os.environ.get("EVOLCODER_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
HE = DATA / "evalplus" / "HumanEvalPlus-v0.1.10.jsonl.gz"
WIZ15 = DATA / "predictions" / "wizardcoder-15b-v1.0_humaneval_greedy.jsonl"
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not WIZ15.exists(), reason="shared data not available")]
SRC = Path(__file__).resolve().parents[1] / "src"


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    return subprocess.run(
        [sys.executable, "-m", "evolcoder.cli", *args], env=env, capture_output=True, text=True, timeout=900
    )


@pytest.mark.parametrize("semantics", ["evalplus-0.3.1", "evalplus-0.2.0"])
def test_wizardcoder_15b_humaneval_greedy_is_59_8(tmp_path, semantics):
    out = tmp_path / "score.json"
    proc = _cli(
        "score",
        "--benchmark",
        "humaneval",
        "--predictions",
        str(WIZ15),
        "--data",
        str(HE),
        "--out",
        str(out),
        "--jobs",
        "2",
        "--settings-json",
        json.dumps({"semantics": semantics}),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "HumanEval: pass@1 = 59.8" in proc.stdout and "HumanEval+: pass@1 = " in proc.stdout
    res = json.loads(out.read_text())
    assert res["base"]["pass@1"] == 59.8 and res["n_tasks"] == 164 and res["complete"]
    assert res["plus"]["pass@1"] == 53.7  # the official evalplus 0.3.1 gives the same, task by task
    assert res["evaluator"]["semantics"] == semantics
    assert res["dataset"]["version"] == "v0.1.10" and len(res["dataset"]["sha256"]) == 64
    assert set(res["per_task"]["HumanEval/0"]) >= {"n", "base", "plus", "base_correct", "plus_correct"}
    # the table states which evaluator/dataset produced each number
    table = _cli("table", "--out-dir", str(tmp_path / "results"), str(out))
    assert table.returncode == 0, table.stderr
    md = (tmp_path / "results" / "scores.md").read_text()
    assert f"({semantics})" in md and "humaneval v0.1.10" in md and "59.8" in md
