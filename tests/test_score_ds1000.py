"""DS-1000: the official check (code_context + test_execution/test_string), skips never pass."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from evolcoder.score import score_file

DATA = Path(os.environ.get("EVOLCODER_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
DS = DATA / "ds1000" / "ds1000.jsonl.gz"
pytestmark = pytest.mark.skipif(not DS.exists(), reason="shared data not available")


def test_reference_code_passes_wrong_code_fails_and_missing_libraries_are_skipped(tmp_path):
    from evolcoder.benchmarks import get_benchmark

    bench = get_benchmark("ds1000")
    tasks = bench.load_tasks(str(DS))
    pick = [t for t in tasks if t["library"] == "Numpy"][:3] + [t for t in tasks if t["library"] == "Pandas"][:1]
    recs = [{"task_id": t["task_id"], "solution": t["reference_code"]} for t in pick]
    recs += [{"task_id": t["task_id"], "solution": "result = None\n"} for t in pick]
    tf = [t for t in tasks if t["library"] == "Tensorflow"][:2]
    recs += [{"task_id": t["task_id"], "solution": t["reference_code"]} for t in tf]
    pred = tmp_path / "ds.jsonl"
    pred.write_text("".join(json.dumps(r) + "\n" for r in recs))
    res = score_file("ds1000", str(pred), str(DS), {"jobs": 2, "timeout_s": 60,
                                                      "ds1000_preimport": ["numpy", "pandas"]})
    for t in pick:
        assert res["per_task"][t["task_id"]]["base"] == ["pass", "fail"], t["task_id"]
    assert res["base"]["pass@1"] == 50.0
    if "Tensorflow" not in bench.available_libraries():
        assert set(res["skipped"]) == {t["task_id"] for t in tf}
        assert not set(res["skipped"]) & set(res["per_task"])
    assert res["by_library"]["Numpy"] == 50.0
