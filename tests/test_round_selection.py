"""Round selection (evolution.rounds: auto): the decision, and the DAG stopping after the first decline."""

from __future__ import annotations

import json
import os
import stat
import sys

import pytest

from evolcoder.errors import DataError
from evolcoder.selection import decide

from workflow_utils import REPO, copy_workflow, planned_jobs, snakemake


def test_decide_stops_at_the_first_decline_and_keeps_the_best():
    assert decide(1, 10.0, 20.0, 4) == {
        "k": 1,
        "previous": 10.0,
        "current": 20.0,
        "declined": False,
        "continue": True,
        "best_k": 1,
    }
    assert decide(2, 20.0, 20.0, 4)["continue"]  # a tie is no decline
    d = decide(3, 20.0, 15.0, 4)
    assert d["declined"] and not d["continue"] and d["best_k"] == 2
    cap = decide(4, 15.0, 30.0, 4)
    assert not cap["continue"] and cap["best_k"] == 4
    with pytest.raises(DataError):
        decide(5, 1.0, 2.0, 4)


def _stub_bin(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "evolcoder"
    exe.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(REPO / 'tests')!r})\n"
                   "from stub_evolcoder import main\nmain(sys.argv[1:])\n")  # fmt: skip
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def test_auto_rounds_dag_stops_after_the_first_decline(tmp_path, monkeypatch):
    """Scripted pass@1 per checkpoint: k=0 10, k=1 25, k=2 15 (a decline), k=3 40 (never reached): the DAG
    evolves rounds 1 and 2 only, decides twice, selects k = 1, and evaluates that checkpoint as the model."""
    wd = copy_workflow(tmp_path / "wf", None)
    bin_dir = _stub_bin(tmp_path)
    calls = tmp_path / "calls.jsonl"
    metric = {"base": 5.0, "tiny-evolcoder-k0": 10.0, "tiny-evolcoder-k1": 25.0, "tiny-evolcoder-k2": 15.0}
    metric["tiny-evolcoder-k3"] = 40.0
    monkeypatch.setenv("EVOLCODER_STUB_METRIC", json.dumps(metric))
    monkeypatch.setenv("EVOLCODER_STUB_CALLS", str(calls))
    (wd / "auto.yaml").write_text(
        "evolution:\n  rounds: auto\n  max_rounds: 4\n  selection: {benchmark: humaneval}\n"
        "evaluation:\n  baselines: [base, seed_only]\n  external_predictions: []\n"
    )
    cfgs = ("tests/configs/tiny.yaml", "auto.yaml")
    snakemake(wd, "all", "ablation_rounds", configfiles=cfgs, bin_dir=bin_dir)

    evolved = sorted(p.parent.name for p in (wd / "results/evolve").glob("round_*/evolved.jsonl"))
    assert evolved == ["round_1", "round_2"]
    decisions = [json.loads((wd / f"results/selection/round_{k}.json").read_text()) for k in (1, 2)]
    assert [d["continue"] for d in decisions] == [True, False] and decisions[1]["best_k"] == 1
    assert not (wd / "results/selection/round_3.json").exists()
    trained = sorted(p.parent.name for p in (wd / "results/train").glob("*/model"))
    assert trained == ["tiny-evolcoder-k0", "tiny-evolcoder-k1", "tiny-evolcoder-k2"]
    # the model of the results table is the selected checkpoint (k = 1), under its configured name
    gen = [json.loads(line) for line in calls.read_text().splitlines()]
    main_gen = [c for c in gen if c[0] == "generate" and "results/predictions/tiny-evolcoder/" in " ".join(c)]
    assert main_gen and all("results/train/tiny-evolcoder-k1/model" in c for c in main_gen), main_gen
    main_score = json.loads((wd / "results/scores/tiny-evolcoder/humaneval/greedy.json").read_text())
    assert main_score["base"]["pass@1"] == 25.0
    rows = json.loads((wd / "results/scores.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["tiny-evolcoder-untuned", "tiny-evolcoder-k0", "tiny-evolcoder"]
    assert "best k on humaneval base" in rows[2]["role"]
    rounds = (wd / "results/ablation/rounds.md").read_text()
    assert "**1** (selected)" in rounds and "k=2: 25.0 -> 15.0 declined" in rounds
    assert "selected on a benchmark the results table reports" in rounds
    assert planned_jobs(wd, "all", "ablation_rounds", configfiles=cfgs, bin_dir=bin_dir) == {}
    assert os.environ["EVOLCODER_STUB_METRIC"]
