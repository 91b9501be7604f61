# Maps wildcards to the inputs and params of the rules. What is computed from the config lives in the
# package (evolcoder.workflow: config checks, each stage's settings, the DAG's names); what needs
# Snakemake's own objects (checkpoints, the code hashes of this tree) lives here.

import json
import os
import shlex
import sys
from pathlib import Path

# The package of this tree (not another installed copy): the registry, the schema and the workflow's logic
# come from it. Only light modules are imported here (standard library, yaml, jsonschema).
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from evolcoder import benchmarks as _registry
from evolcoder.errors import EvolcoderError
from evolcoder.workflow import (
    ConfigError,
    Plan,
    as_json,
    check_config,
    container_warnings,
    local_seed_file,
    settings_for,
)

# {name: {labels, data_key, data_options, needs_timings, ...}}
BENCHMARK_INFO = _registry.describe()

# one line naming the offending key, before any job starts
try:
    check_config(config, BENCHMARK_INFO)
except EvolcoderError as exc:
    sys.exit(f"evolcoder: {'' if isinstance(exc, ConfigError) else 'error: '}{exc}")

# each stage records its image's digest from them (evolcoder.io.container_info)
os.environ.update(EVOLCODER_IMAGES=json.dumps(config["containers"], sort_keys=True))
for _line in container_warnings(
    config["containers"],
    getattr(getattr(workflow, "deployment_settings", None), "deployment_method", None),
):
    sys.stderr.write(f"evolcoder: warning: {_line}\n")


def evaluated_rounds():
    """(last k evaluated, selected k), walking the select_round checkpoints from round 1: each one that
    continues asks for the next round (and so its evolution, merge, training and scoring).
    """
    k = 1
    while True:
        with open(checkpoints.select_round.get(k=k).output[0]) as fh:
            decision = json.load(fh)
        if not decision["continue"]:
            return k, decision["best_k"]
        k += 1


plan = Plan(config, BENCHMARK_INFO, evaluated_rounds)


def settings(stage):
    """A param: the stage's settings (evolcoder.workflow.settings_for) as one JSON argument."""
    return lambda wildcards: as_json(settings_for(stage, config, wildcards))


##### code hashes #####


def _load_codehash():
    """evolcoder.codehash, loaded by path (standard library only: no package import needed here)."""
    import importlib.util

    path = Path(workflow.basedir) / "src" / "evolcoder" / "codehash.py"
    spec = importlib.util.spec_from_file_location("_evolcoder_codehash", path)
    codehash = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(codehash)
    return codehash


_CODEHASH = _load_codehash()
_CODE_VERSIONS = {}
# stage hashes of earlier parses, valid while their files' stats hold (a no-op dry run reads no source)
_CODEHASH_CACHE_FILE = Path(".snakemake") / "evolcoder-codehash.json"
_CODEHASH_CACHE = _CODEHASH.load_cache(_CODEHASH_CACHE_FILE)


def code_version(command):
    """Hash of the code behind `evolcoder <command>`: the command's module, every evolcoder module it
    imports (transitively) and the package data it reads, derived from the source (evolcoder.codehash).

    Used as a param: Snakemake's params trigger compares it with the value stored at the last run, so
    editing any of that code marks the stage's outputs stale, and nothing else does.
    """
    if command not in _CODE_VERSIONS:
        root = Path(workflow.basedir) / "src" / "evolcoder"
        before = json.dumps(_CODEHASH_CACHE, sort_keys=True)
        _CODE_VERSIONS[command] = _CODEHASH.stage_hash(root, command, _CODEHASH_CACHE)
        if json.dumps(_CODEHASH_CACHE, sort_keys=True) != before:
            _CODEHASH.save_cache(_CODEHASH_CACHE_FILE, _CODEHASH_CACHE)
    return _CODE_VERSIONS[command]


##### environments and resources #####


def container_for(family):
    return config["containers"][family]


##### inputs and params of the rules #####


def get_seed_file(wildcards):
    """A local seed file is an input: editing it in place makes the seed (and all after it) stale."""
    src = local_seed_file(config["seed"])
    if src is None or (not Path(src).exists() and config["seed"]["fallback_builtin"]):
        return []
    return src


def get_round_pool(wildcards):
    return plan.round_pool(wildcards.k)


def get_evolved_rounds(wildcards):
    return plan.evolved(plan.n_rounds())


def get_rounds_upto(wildcards):
    return plan.evolved(wildcards.k)


def get_round_stats(wildcards):
    return plan.round_stats(plan.rounds_run())


def merge_round_args(wildcards, input):
    return " ".join(f"--round {shlex.quote(p)}" for p in input.rounds)


def get_train_data(wildcards):
    return plan.train_data(wildcards.model)


def get_model_input(wildcards):
    """The checkpoint directory when the model is the one trained here, else nothing to wait for."""
    return plan.checkpoint(wildcards.model) or []


def get_model_spec(wildcards, input):
    """The model's checkpoint (the job's input, resolved through the selection with rounds: auto) or its spec."""
    got = input.model
    if isinstance(got, str):
        return got
    return got[0] if len(got) else plan.eval_models()[wildcards.model]


def get_data_path(wildcards):
    return plan.data_path(wildcards.benchmark)


def benchmark_options(wildcards):
    return plan.benchmark_options(wildcards.benchmark)


def get_shards(wildcards):
    return plan.shards(wildcards.model, wildcards.benchmark, wildcards.mode)


def get_timings(wildcards):
    return plan.timings(wildcards.benchmark)


def timings_arg(wildcards, input):
    return f"--timings {input.timings}" if input.timings else ""


def sandbox_jobs(wildcards):
    """Parallel sandbox workers of the timings and score rules (their `threads`)."""
    return config["evaluation"]["execution"]["jobs"]


def get_predictions(wildcards):
    return plan.predictions(wildcards.model, wildcards.benchmark, wildcards.mode)


def get_score_files(wildcards):
    return plan.score_files()


def get_ablation_scores(wildcards):
    return plan.ablation_scores()


def get_ablation_stats(wildcards):
    return plan.ablation_stats()


def get_selection_inputs(wildcards):
    return plan.selection_inputs(wildcards.k)


def get_selection_decisions(wildcards):
    return plan.selection_decisions()


def ablation_args(wildcards, input):
    ks = " ".join(
        f"--k {shlex.quote(f'{plan.ablation_model(k)}={stats}')}"
        for k, stats in enumerate(input.stats)
    )
    return f"{ks} --base {shlex.quote(plan.untuned_model())}"


def get_dataset_inputs(wildcards):
    return plan.dataset_inputs()


def table_name(wildcards):
    return plan.table_name(wildcards.model)


def get_final_output(wildcards):
    return plan.final_output()
