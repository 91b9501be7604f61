"""The Snakemake workflow: lint, DAG, config errors, and one real end-to-end run on the tiny config."""

from __future__ import annotations

import csv
import json
import os
import secrets
import subprocess
import sys
from itertools import pairwise

import pytest
import yaml

from test_chat_workflow import check_chat_overlay_run, check_hub_artefacts

from conftest import files_containing
from workflow_utils import REPO, copy_workflow, planned_jobs, snakemake

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def test_lint_is_clean():
    proc = subprocess.run([*SNAKEMAKE, "--lint"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "good condition" in proc.stdout + proc.stderr


def test_snakefmt_formatting():
    proc = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", "Snakefile", "rules"], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "configfile, expected",
    [
        (
            None,
            {
                "seed": 1,
                "evolve_round": 4,
                "merge": 1,
                # the baseline rows: the seed-only set and its fine-tune, the untuned base
                "merge_rounds": 1,
                "tokenize": 2,
                "train": 2,
                "generate": 3,
                "gather": 3,
                "score": 3,
                "table": 1,
            },
        ),
        # rounds: auto: round 1, its checkpoint and the k = 0 baseline it is compared with, then the DAG grows
        ("config/paper.yaml", {"evolve_round": 1, "train": 2, "generate": 8, "score": 2, "select_round": 1}),
        # the whole paper DAG at once, with the rounds fixed
        ("config/paper.yaml rounds4.yaml", {"evolve_round": 4, "train": 2, "generate": 96, "gather": 24, "score": 25}),
    ],
)
def test_dag_of_default_and_paper_configs(tmp_path, configfile, expected):
    wd = copy_workflow(tmp_path, None)
    # a stand-in for the released predictions file the paper config lists under ../shared
    (wd / "released.jsonl").write_text("")
    (wd / "ext.yaml").write_text(
        "evaluation:\n  external_predictions:\n    - {name: released, benchmark: humaneval, path: released.jsonl}\n"
    )
    (wd / "rounds4.yaml").write_text("evolution:\n  rounds: 4\n")
    jobs = planned_jobs(wd, configfiles=(*configfile.split(), "ext.yaml") if configfile else ())
    for rule, count in expected.items():
        assert jobs.get(rule) == count, (rule, jobs)


@pytest.mark.parametrize(
    "overlay, where",
    [
        ("evaluation:\n  greedy:\n    max_new_tokens: many\n", "evaluation.greedy.max_new_tokens"),
        ("evaluation:\n  limt: 3\n", "evaluation"),
        ("train:\n  learning_rate: fast\n", "train.learning_rate"),
        ("sed:\n  limit: 3\n", "<top level>"),
    ],
)
def test_bad_config_is_one_line_naming_the_key(tmp_path, overlay, where):
    wd = copy_workflow(tmp_path, None)
    (wd / "bad.yaml").write_text(overlay)
    proc = snakemake(wd, "-n", configfiles=("bad.yaml",), check=False)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("evolcoder: config error")]
    assert len(errors) == 1 and f"'{where}'" in errors[0], proc.stderr


def test_malformed_seed_stops_before_any_job(tmp_path):
    wd = copy_workflow(tmp_path, None)
    (wd / "seed.json").write_text('[{"instruction": "Sort a list."}]')
    (wd / "bad.yaml").write_text("seed:\n  source: seed.json\n")
    proc = snakemake(wd, "-n", configfiles=("bad.yaml",), check=False)
    assert proc.returncode != 0
    assert "evolcoder: error: seed seed.json, item 0: missing field 'output'" in proc.stderr


@pytest.mark.slow
def test_tiny_pipeline_end_to_end_and_stale_only_reruns(tmp_path, shared_data):
    wd = copy_workflow(tmp_path, shared_data)
    # an API key in the environment (as the README tells a user to export) and a hostile external
    # prediction that hunts for it: no file of the run or in the temp dirs may hold it afterwards
    key = f"sk-test-SECRET-{secrets.token_hex(8)}"
    hostile = wd / "hostile.jsonl"
    hostile.write_text("".join(json.dumps(r) + "\n" for r in _hostile_predictions()))
    data = yaml.safe_load((wd / "data.yaml").read_text())
    data["evaluation"] = {"external_predictions": [{"name": "hostile", "benchmark": "humaneval", "path": str(hostile)}]}
    (wd / "data.yaml").write_text(yaml.safe_dump(data))
    snakemake(wd, env={"OPENAI_API_KEY": key})
    leaks = files_containing(key, [wd, "/tmp", "/var/tmp", "/dev/shm"])
    assert leaks == [], leaks
    hostile_score = json.loads((wd / "results/scores/hostile/humaneval/greedy.json").read_text())
    assert hostile_score["per_task"]["HumanEval/0"]["base"] == ["fail", "pass"], hostile_score["per_task"]

    # every stage really ran
    seed = (wd / "results/seed/seed.jsonl").read_text().splitlines()
    assert len(seed) == 6
    evolved = [json.loads(line) for line in (wd / "results/evolve/round_1/evolved.jsonl").read_text().splitlines()]
    rejects = (wd / "results/evolve/round_1/rejects.jsonl").read_text().splitlines()
    assert len(evolved) + len(rejects) >= 6
    assert all(r["round"] == 1 and r["parent_id"] and r["method"] != "seed" for r in evolved)
    merged = json.loads((wd / "results/merged/stats.json").read_text())
    assert merged["records"] >= 6
    model_dir = wd / "results/train/tiny-evolcoder/model"
    assert (model_dir / "config.json").exists() and (model_dir / "training_manifest.json").exists()
    preds = (wd / "results/predictions/tiny-evolcoder/humaneval/greedy.jsonl").read_text().splitlines()
    assert len(preds) == 3
    score = json.loads((wd / "results/scores/tiny-evolcoder/humaneval/greedy.json").read_text())
    assert 0.0 <= score["base"]["pass@1"] <= 100.0 and "plus" in score
    table = (wd / "results/scores.md").read_text()
    assert "tiny-evolcoder" in table and "humaneval" in table.lower()

    # nothing left to do
    assert planned_jobs(wd) == {}

    # a generation parameter reruns generation, scoring and the table only
    (wd / "gen.yaml").write_text("evaluation:\n  greedy:\n    max_new_tokens: 40\n")
    jobs = planned_jobs(wd, configfiles=("tests/configs/tiny.yaml", "gen.yaml"))
    assert set(jobs) == {"generate", "gather", "score", "table", "model_card", "all"}, jobs

    # a training hyper-parameter reruns training onward, without re-tokenising
    (wd / "lr.yaml").write_text("train:\n  learning_rate: 1.0e-4\n")
    jobs = planned_jobs(wd, configfiles=("tests/configs/tiny.yaml", "lr.yaml"))
    assert "train" in jobs and "tokenize" not in jobs and "evolve_round" not in jobs, jobs

    # editing the evolution code marks every round stale
    evolve_py = next((wd / "src/evolcoder/evolve").glob("*.py"))
    evolve_py.write_text(evolve_py.read_text() + "\n# edited\n")
    jobs = planned_jobs(wd)
    assert jobs.get("evolve_round") == 2 and "seed" not in jobs, jobs
    evolve_py.write_text(evolve_py.read_text().replace("\n# edited\n", ""))

    # a malformed seed stops with one line and deletes nothing that was finished
    before = {p: p.stat().st_mtime for p in (wd / "results").rglob("*") if p.is_file()}
    (wd / "seed.json").write_text("[{")
    (wd / "bad.yaml").write_text("seed:\n  source: seed.json\n")
    proc = snakemake(wd, configfiles=("tests/configs/tiny.yaml", "bad.yaml"), check=False)
    assert proc.returncode != 0 and "evolcoder: error: seed file seed.json: not valid JSON" in proc.stderr
    after = {p: p.stat().st_mtime for p in (wd / "results").rglob("*") if p.is_file()}
    assert before == after

    # the hub-ready data set and model card, then prompt_template: chat over the same evolved data
    # (tokenize onward; tests/test_chat_workflow.py)
    check_hub_artefacts(wd, json.loads((wd / "results/scores.json").read_text()))
    check_chat_overlay_run(wd)


ABLATION = ("tests/configs/tiny.yaml", "tests/configs/ablation-tiny.yaml")


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("EVOLCODER_ABLATION_E2E") != "1",
    reason="real rounds ablation (~10 min on 2 cores): EVOLCODER_ABLATION_E2E=1; tests/test_ablation.py checks its DAG",
)
def test_rounds_ablation_end_to_end_with_the_real_stages(tmp_path, shared_data):
    """`snakemake all`, then `snakemake ablation_rounds all` on the shipped tiny ablation config: k = 0..2 (k = 2
    is the main model, rebuilt not), the untuned base, intervals and paired p-values; then nothing to do."""
    wd = copy_workflow(tmp_path, shared_data)
    snakemake(wd)
    main_model = wd / "results/train/tiny-evolcoder/model/training_manifest.json"
    main_mtime = main_model.stat().st_mtime
    jobs = planned_jobs(wd, "ablation_rounds", "all", configfiles=ABLATION)
    assert {r: jobs.get(r) for r in ("merge_rounds", "train", "generate", "score")} == {
        "merge_rounds": 2,  # seed only, seed + round 1 (seed + rounds 1..2 is the main merged set)
        "train": 2,
        "generate": 3,  # k = 0, k = 1, the untuned base
        "score": 3,
    }, jobs
    assert not {"seed", "evolve_round", "merge", "timings"} & set(jobs), jobs
    snakemake(wd, "ablation_rounds", "all", configfiles=ABLATION)
    assert main_model.stat().st_mtime == main_mtime
    with open(wd / "results/ablation/rounds.csv") as fh:
        rows = list(csv.DictReader(fh))
    he = [r for r in rows if r["benchmark_id"] == "humaneval" and r["split"] == "base"]
    assert [r["k"] for r in he] == ["base", "0", "1", "2"], rows
    assert [r["model"] for r in he][1:] == ["tiny-evolcoder-k0", "tiny-evolcoder-k1", "tiny-evolcoder"]
    seed_only = json.loads((wd / "results/merged/rounds_0/stats.json").read_text())
    assert seed_only["by_round"] == {"0": seed_only["records"]} and he[1]["train_records"] == str(seed_only["records"])
    for prev, r in pairwise(he):
        assert r["vs"] == prev["model"] and r["test"] == "mcnemar-exact" and 0.0 <= float(r["p_value"]) <= 1.0
        assert float(r["pass@1_lo"]) <= float(r["pass@1"]) <= float(r["pass@1_hi"])
    md = (wd / "results/ablation/rounds.md").read_text()
    assert "| 2 | tiny-evolcoder |" in md and "McNemar" in md and "Held fixed across k" in md
    assert (wd / "results/ablation/rounds.png").stat().st_size > 1000
    # the results table reads base -> seed only -> evolved, with paired tests
    table = json.loads((wd / "results/scores.json").read_text())["rows"]
    he_rows = [r for r in table if r["benchmark_id"] == "humaneval" and r["split"] == "base"]
    order = [r["model"] for r in he_rows]
    assert order[:3] == ["tiny-evolcoder-untuned", "tiny-evolcoder-k0", "tiny-evolcoder"], order
    assert he_rows[1]["vs"] == "tiny-evolcoder-untuned" and "p_value" in he_rows[1] and "pass@1_lo" in he_rows[0]
    assert planned_jobs(wd, "ablation_rounds", "all", configfiles=ABLATION) == {}


def _hostile_predictions() -> list[dict]:
    """HumanEval/0: a sample that spreads $OPENAI_API_KEY over every writable place it finds and
    raises an exception named after it (a score file keeps exception names), then the canonical one."""
    from evolcoder.benchmarks import get_benchmark

    from conftest import shared_data_dir

    task = get_benchmark("humaneval").load_tasks(
        str(shared_data_dir() / "evalplus" / "HumanEvalPlus-v0.1.10.jsonl.gz")
    )[0]
    spread = """
import io, os, posix
def _key():
    k = os.environ.get("OPENAI_API_KEY", "")
    for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
        try:
            env = io.open(f"/proc/{pid}/environ", "rb").read()
        except OSError:
            continue
        if b"sk-test-SECRET" in env:
            k = k or env[env.find(b"sk-test-SECRET"):].split(b"\\0")[0].decode()
    return k
KEY = _key()
for d in ("/tmp", "/var/tmp", "/dev/shm", posix.getcwd(), os.path.expanduser("~"), os.environ.get("TMPDIR", "/tmp")):
    try:
        with io.open(os.path.join(d, "evolcoder-leak.txt"), "w") as fh:
            fh.write(KEY)
    except OSError:
        pass
def has_close_elements(numbers, threshold):
    raise type("KEY_" + "".join(c if c.isalnum() else "_" for c in KEY), (Exception,), {})()
"""
    return [
        {"task_id": task["task_id"], "solution": spread},
        {"task_id": task["task_id"], "solution": task["prompt"] + task["canonical_solution"]},
    ]


@pytest.mark.skipif(
    not __import__("os").environ.get("EVOLCODER_DS1000_PYTHON"),
    reason="DS-1000 environment not built (EVOLCODER_DS1000_PYTHON)",
)
def test_execution_config_reaches_the_scorer(tmp_path, shared_data, monkeypatch):
    """`evaluation.execution` travels from the config through the score rule to the scorer: DS-1000
    predictions score under the interpreter and time limit the config names (the environment
    variable is removed, so only the config can point at the pinned env)."""

    import yaml

    from evolcoder.io import read_jsonl

    ds_python = os.environ["EVOLCODER_DS1000_PYTHON"]
    monkeypatch.delenv("EVOLCODER_DS1000_PYTHON")
    wd = copy_workflow(tmp_path / "wf", shared_data)
    pred = tmp_path / "ds1000-reference.jsonl"
    rows = read_jsonl(str(shared_data / "ds1000" / "ds1000.jsonl.gz"))[:3]
    pred.write_text(
        "".join(
            json.dumps({"task_id": str(r["metadata"]["problem_id"]), "solution": r["reference_code"]}) + "\n"
            for r in rows
        )
    )
    overlay = {
        "evaluation": {
            "external_predictions": [{"name": "ds1000-reference", "benchmark": "ds1000", "path": str(pred)}],
            "execution": {"jobs": 2},
            "benchmark_options": {"ds1000": {"python": ds_python, "timeout_s": 90}},
        }
    }
    (wd / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    target = "results/scores/ds1000-reference/ds1000/greedy.json"
    snakemake(wd, target, configfiles=("tests/configs/tiny.yaml", "overlay.yaml"))
    res = json.loads((wd / target).read_text())
    assert res["execution_env"]["executable"] == ds_python and res["execution_env"]["pins_match"]
    assert res["evaluator"]["time_limit_policy"].startswith("90s per program")
    assert res["n_tasks"] == 3 and res["base"]["pass@1"] == 100.0
