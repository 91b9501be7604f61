"""Rounds ablation and round selection: the decision, and the DAGs with stand-in stages and a scripted pass@1
(the rounds table, reuse of the main run, evolution.rounds: auto stopping after the first decline)."""

from __future__ import annotations

import csv
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
    assert rows[2]["role"] == "evolved (best k on humaneval base, a reported test benchmark)"
    rounds = (wd / "results/ablation/rounds.md").read_text()
    assert "**1** (selected)" in rounds and "k=2: 25.0 -> 15.0 declined" in rounds
    assert "selected on a benchmark the results table reports" in rounds
    assert planned_jobs(wd, "all", "ablation_rounds", configfiles=cfgs, bin_dir=bin_dir) == {}
    assert os.environ["EVOLCODER_STUB_METRIC"]


def test_rounds_ablation_reuses_the_main_run_and_a_second_invocation_does_nothing(tmp_path, monkeypatch):
    """Fixed rounds (2) with the stand-in stages: after `snakemake`, `snakemake ablation_rounds all` on the
    shipped tiny ablation config adds only the k < 2 checkpoints and the baselines (the k = 2 checkpoint is the
    main model); rounds.{md,csv,png} list k = 0..2 with intervals and McNemar p-values; then nothing to do.
    (The same with the real stages: tests/test_workflow.py, EVOLCODER_ABLATION_E2E=1.)"""
    wd = copy_workflow(tmp_path / "wf", None)
    bin_dir = _stub_bin(tmp_path)
    metric = {"base": 0.0, "tiny-evolcoder-k0": 30.0, "tiny-evolcoder-k1": 35.0, "tiny-evolcoder": 70.0}
    monkeypatch.setenv("EVOLCODER_STUB_METRIC", json.dumps(metric))
    (wd / "noext.yaml").write_text("evaluation:\n  external_predictions: []\n")
    main_cfgs = ("tests/configs/tiny.yaml", "noext.yaml")
    cfgs = ("tests/configs/tiny.yaml", "tests/configs/ablation-tiny.yaml", "noext.yaml")
    snakemake(wd, configfiles=main_cfgs, bin_dir=bin_dir)
    main_model = wd / "results/train/tiny-evolcoder/model/config.json"
    mtime = main_model.stat().st_mtime

    jobs = planned_jobs(wd, "ablation_rounds", "all", configfiles=cfgs, bin_dir=bin_dir)
    assert {r: jobs.get(r) for r in ("merge_rounds", "train", "generate", "score")} == {
        "merge_rounds": 2,  # seed only, seed + round 1 (seed + rounds 1..2 is the main merged set)
        "train": 2,
        "generate": 3,  # k = 0, k = 1, the untuned base
        "score": 3,
    }, jobs
    assert not {"seed", "evolve_round", "merge"} & set(jobs), jobs
    snakemake(wd, "ablation_rounds", "all", configfiles=cfgs, bin_dir=bin_dir)
    assert main_model.stat().st_mtime == mtime
    assert json.loads((wd / "results/train/tiny-evolcoder-k0/model/config.json").read_text())["data"] == (
        "results/merged/rounds_0/train.jsonl"
    )
    with open(wd / "results/ablation/rounds.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["k"] for r in rows] == ["base", "0", "1", "2"]
    assert [r["model"] for r in rows][1:] == ["tiny-evolcoder-k0", "tiny-evolcoder-k1", "tiny-evolcoder"]
    assert [r["train_records"] for r in rows] == ["", "1", "2", "3"]
    # discordant tasks (only the later row passed / only the earlier): 6/0, 1/0, 7/0 -> 2/2^6, 1, 2/2^7
    assert [r["p_value"] for r in rows] == ["", "0.0312", "1.0", "0.0156"]
    assert all(float(r["pass@1_lo"]) <= float(r["pass@1"]) <= float(r["pass@1_hi"]) for r in rows)
    md = (wd / "results/ablation/rounds.md").read_text()
    assert "| 2 | tiny-evolcoder |" in md and "fixed in the config (evolution.rounds: 2), not selected" in md
    assert (wd / "results/ablation/rounds.png").stat().st_size > 1000
    table = json.loads((wd / "results/scores.json").read_text())["rows"]
    assert [r["model"] for r in table] == ["tiny-evolcoder-untuned", "tiny-evolcoder-k0", "tiny-evolcoder"]
    assert table[2]["vs"] == "tiny-evolcoder-k0" and table[2]["role"] == "evolved (2 rounds)"
    assert planned_jobs(wd, "ablation_rounds", "all", configfiles=cfgs, bin_dir=bin_dir) == {}
