"""Stale-only rebuilds: a config or template edit reruns exactly the stages that depend on it.

Cheap by design: the outputs of the tiny DAG are created as placeholders and registered with
`snakemake --touch --forceall`, which records the same provenance (params, code, inputs) a real
run records; every check is then a dry run (`snakemake -n`). The real end-to-end run with the
same kind of checks is tests/test_workflow.py::test_tiny_pipeline_end_to_end_and_stale_only_reruns.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from workflow_utils import copy_workflow, planned_jobs, snakemake

TINY = ("tests/configs/tiny.yaml",)

# the table, and the model card that carries its numbers (rule model_card)
TABLE = {"table", "model_card", "all"}
EVAL_CHAIN = {"generate", "gather", "score"} | TABLE
TRAIN_ONWARD = {"train", "training_plot"} | EVAL_CHAIN
# everything downstream of round 1 (the seed itself is not re-drawn)
FROM_ROUND_1 = {"evolve_round", "evolution_stats_plot", "merge", "export_dataset", "tokenize"} | TRAIN_ONWARD


def _outputs(wd: Path) -> list[tuple[str, str]]:
    """(path, rule) of every output of the DAG, from `snakemake --summary`."""
    proc = snakemake(wd, "--summary", configfiles=TINY)
    rows = []
    for line in proc.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[0].startswith("results/"):
            rows.append((parts[0], parts[2]))
    assert rows, proc.stdout + proc.stderr
    return rows


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A workflow copy whose whole tiny DAG counts as built (placeholders + recorded provenance)."""
    wd = copy_workflow(tmp_path_factory.mktemp("rebuild"), None)
    for path, rule in _outputs(wd):
        p = wd / path
        if not Path(path).suffix:  # directory() outputs: the checkpoint folder, the data set's shards
            assert rule in ("train", "export_dataset"), (path, rule)
            p.mkdir(parents=True, exist_ok=True)
            (p / "config.json").write_text("{}")
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text("")
    snakemake(wd, "--touch", "--forceall", configfiles=TINY)
    assert planned_jobs(wd) == {}, "the placeholder DAG should be complete"
    return wd


def _plan_with(wd: Path, overlay: str) -> dict[str, int]:
    (wd / "edit.yaml").write_text(overlay)
    return planned_jobs(wd, configfiles=(*TINY, "edit.yaml"))


def test_nothing_to_do_when_nothing_changed(built):
    assert planned_jobs(built) == {}


@pytest.mark.parametrize(
    "overlay",
    [
        "evaluation:\n  greedy:\n    max_new_tokens: 40\n",
        "evaluation:\n  limit: 2\n",
        "evaluation:\n  prompt_template: alpaca\n",
    ],
)
def test_generation_settings_rerun_predictions_scores_table(built, overlay):
    jobs = _plan_with(built, overlay)
    assert set(jobs) == EVAL_CHAIN, jobs


def test_execution_settings_rerun_scores_and_table_only(built):
    jobs = _plan_with(built, "evaluation:\n  execution:\n    timeout_s: 5.0\n")
    assert set(jobs) == {"score"} | TABLE, jobs


@pytest.mark.parametrize(
    "overlay",
    [
        "train:\n  learning_rate: 1.0e-4\n",
        "train:\n  max_steps: 3\n",
    ],
)
def test_training_settings_rerun_train_onward(built, overlay):
    jobs = _plan_with(built, overlay)
    assert set(jobs) == TRAIN_ONWARD, jobs


def test_tokenizer_settings_rerun_tokenize_and_train_onward(built):
    jobs = _plan_with(built, "train:\n  model_max_length: 128\n")
    assert set(jobs) == TRAIN_ONWARD | {"tokenize"}, jobs


@pytest.mark.parametrize(
    "overlay",
    [
        "evolution:\n  backend:\n    model: some-other-evol-model\n",
        "evolution:\n  evolve_params: {temperature: 0.9, top_p: 0.95, max_tokens: 48}\n",
    ],
)
def test_evolution_model_or_params_rerun_from_round_1(built, overlay):
    jobs = _plan_with(built, overlay)
    assert set(jobs) == FROM_ROUND_1, jobs
    assert jobs["evolve_round"] == 2, jobs  # both rounds of the tiny config


def test_prompt_template_edit_reruns_from_round_1(built):
    templates = (
        sorted(p for p in (built / "src/evolcoder/templates/evol").rglob("*") if p.is_file())
        if (built / "src/evolcoder/templates/evol").exists()
        else []
    )
    if not templates:
        pytest.skip("no evolution prompt templates in src/evolcoder/templates/evol yet")
    original = templates[0].read_text()
    templates[0].write_text(original + "\n")
    try:
        jobs = planned_jobs(built)
    finally:
        templates[0].write_text(original)
    assert set(jobs) == FROM_ROUND_1 and jobs["evolve_round"] == 2, jobs


def test_more_rounds_add_only_the_new_round(built):
    jobs = _plan_with(built, "evolution:\n  rounds: 3\n")
    assert jobs.get("evolve_round") == 1, jobs
    assert "seed" not in jobs and "merge" in jobs, jobs


@pytest.mark.parametrize(
    "overlay",
    [
        "train:\n  resources: {gpus: 8, gpu_model: a100, cpus_per_gpu: 8, mem_mb: 480000, runtime: 2880}\n",
        "containers:\n  cpu: docker://ghcr.io/example/evolcoder-cpu:9.9.9\n",
    ],
)
def test_where_it_runs_makes_nothing_stale(built, overlay):
    """Resources and (undeployed) container images say where a stage runs, not what it computes."""
    assert _plan_with(built, overlay) == {}


def _edited(wd: Path, rel: str):
    """Context: ``rel`` (under the copy's src/evolcoder) with a comment appended, restored after."""
    import contextlib

    @contextlib.contextmanager
    def cm():
        path = wd / "src" / "evolcoder" / rel
        original = path.read_text()
        path.write_text(original + "\n# edited\n")
        try:
            yield
        finally:
            path.write_text(original)

    return cm()


def test_editing_a_sandbox_module_reruns_exactly_score_and_table(built):
    """No hand-written file list: the score rule's code hash covers every module `evolcoder score`
    imports (here the sandbox's child, which no other stage imports)."""
    with _edited(built, "sandbox/child.py"):
        jobs = planned_jobs(built)
    assert set(jobs) == {"score"} | TABLE, jobs


@pytest.mark.parametrize(
    "rel, expected",
    [
        ("sandbox/pool.py", {"score"} | TABLE),
        # the scorer: generation and merge import it through the adapters but never run it (CODE_HASH_EXCLUDES)
        ("benchmarks/harness.py", {"timings", "score"} | TABLE),
        ("passk.py", {"timings", "score"} | TABLE),
        # the adapters' base class: generation, timings, scoring, and merge (decontamination texts) run it
        ("benchmarks/base.py", {"timings", "merge", "export_dataset", "tokenize"} | TRAIN_ONWARD),
        ("evolve/eliminate.py", FROM_ROUND_1),
        ("train/run.py", TRAIN_ONWARD),
        # tokenisation has its own module: train reads its cache, so a tokenize edit reruns train too
        ("train/tokens.py", {"tokenize"} | TRAIN_ONWARD),
        ("data/published.yaml", TABLE),
        ("hub.py", {"export_dataset"} | TRAIN_ONWARD),
        ("templates/eval/wizardcoder/template.txt", EVAL_CHAIN),
    ],
)
def test_each_module_marks_exactly_the_stages_that_import_it(built, rel, expected):
    with _edited(built, rel):
        jobs = planned_jobs(built)
    assert set(jobs) == expected, (rel, jobs)


def test_editing_the_loss_plot_reruns_only_the_plot(built):
    """The code hash follows what the command runs, not its package: `evolcoder plot-training` shares
    evolcoder.train with tokenize and train, whose code does not import the plot."""
    with _edited(built, "train/plot.py"):
        jobs = planned_jobs(built)
    assert set(jobs) == {"training_plot", "all"}, jobs  # `all`: the target rule


def test_reference_repeats_reach_the_timings_rule(built):
    jobs = _plan_with(built, "evaluation:\n  execution:\n    reference_repeats: 5\n")
    assert set(jobs) == {"timings", "score"} | TABLE, jobs


def test_sandbox_workers_make_nothing_stale(built):
    """How many workers run the sandbox (the rules' threads) changes no verdict."""
    assert _plan_with(built, "evaluation:\n  execution:\n    jobs: 1\n") == {}


def test_a_local_seed_file_edited_in_place_is_stale(tmp_path):
    import json

    wd = copy_workflow(tmp_path, None)
    seed = [
        {"instruction": f"Write a function that returns {i}.", "input": "", "output": f"def f():\n    return {i}"}
        for i in range(6)
    ]
    (wd / "seed.json").write_text(json.dumps(seed))
    (wd / "seed.yaml").write_text("seed:\n  source: seed.json\n  limit: null\n")
    cfgs = (*TINY, "seed.yaml")
    proc = snakemake(wd, "--summary", configfiles=cfgs)
    for line in proc.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[0].startswith("results/"):
            p = wd / parts[0]
            if not Path(parts[0]).suffix:
                p.mkdir(parents=True, exist_ok=True)
                (p / "config.json").write_text("{}")
            else:
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text("")
    snakemake(wd, "--touch", "--forceall", configfiles=cfgs)
    assert planned_jobs(wd, configfiles=cfgs) == {}
    seed.append({"instruction": "Reverse a string.", "input": "", "output": "def r(s):\n    return s[::-1]"})
    (wd / "seed.json").write_text(json.dumps(seed))
    jobs = planned_jobs(wd, configfiles=cfgs)
    assert "seed" in jobs and jobs.get("evolve_round") == 2, jobs
