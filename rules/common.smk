# Helpers shared by all rule files -- config validation, input functions, small utilities.
# Rules stay thin: they call `evolcoder <stage>` with paths and the stage's config slice.

import json
import os
import shlex
import sys
from pathlib import Path

import jsonschema
from snakemake.utils import validate

# The package of this tree (not another installed copy): the benchmark registry and the schema come
# from it. Only light modules are imported here (standard library and yaml; no torch, no evalplus).
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from evolcoder import benchmarks as _registry
from evolcoder import config as _schema

BENCHMARK_INFO = (
    _registry.describe()
)  # {name: {labels, data_key, data_options, needs_timings, ...}}


##### config validation: one line naming the offending key #####


def _validate_config(cfg):
    """Validate against the schema with the registry's benchmarks, filling in the defaults."""
    import os
    import tempfile

    schema = _schema.schema(BENCHMARK_INFO)
    # JSON (a subset of YAML): snakemake reads it back with the json parser, not PyYAML's
    fd, path = tempfile.mkstemp(suffix=".schema.json")
    with os.fdopen(fd, "w") as fh:
        json.dump(schema, fh)
    try:
        validate(cfg, schema=path, set_default=True)
    except (
        Exception
    ) as exc:  # snakemake's WorkflowError wraps jsonschema's ValidationError
        err = jsonschema.exceptions.best_match(
            jsonschema.Draft202012Validator(schema).iter_errors(cfg)
        )
        if err is None:
            raise
        where = ".".join(str(p) for p in err.absolute_path) or "<top level>"
        sys.stderr.write(f"evolcoder: config error at '{where}': {err.message}\n")
        sys.exit(1)
    finally:
        os.unlink(path)


_validate_config(config)


def _check_data_keys(cfg):
    """`data:` keys beyond the schema's must be named by a registered adapter (a typo is an error)."""
    known = set(_schema.section("data")["properties"])
    for info in BENCHMARK_INFO.values():
        known |= {info["data_key"], *info["data_options"].values()}
    for key in sorted(set(cfg["data"]) - known):
        sys.stderr.write(
            f"evolcoder: config error at 'data.{key}': no registered benchmark reads it "
            f"(known: {', '.join(sorted(known))})\n"
        )
        sys.exit(1)


_check_data_keys(config)


def _check_seed_source(cfg):
    """Parse a local seed file before any job runs: a malformed seed stops the run with one line,
    before Snakemake removes the outputs of the seed job it would rerun."""
    src = cfg["source"]
    if src == "builtin" or src.startswith("hf:"):
        return
    try:
        from evolcoder.errors import EvolcoderError
        from evolcoder.seed import build_seed
    except (
        ImportError
    ):  # a dependency of the seed stage lives only in the rules' containers
        return
    try:
        build_seed(src, cfg["limit"], cfg["sample_seed"], cfg["fallback_builtin"])
    except EvolcoderError as exc:
        sys.stderr.write(f"evolcoder: error: {exc}\n")
        sys.exit(1)


_check_seed_source(config["seed"])


def _check_chat_templates(cfg):
    """prompt_template chat: the models' tokenizers have a chat template (or train.chat_template gives
    one), checked from their files before any job starts."""
    if "chat" not in (
        cfg["train"]["prompt_template"],
        cfg["evaluation"]["prompt_template"],
    ):
        return
    from evolcoder.chat import check_chat_config
    from evolcoder.errors import EvolcoderError

    try:
        check_chat_config(cfg)
    except EvolcoderError as exc:
        sys.stderr.write(f"evolcoder: error: {exc}\n")
        sys.exit(1)


_check_chat_templates(config)


##### small helpers #####


def as_json(obj):
    """A config slice as one shell-quoted JSON argument (params are tracked by content)."""
    return shlex.quote(json.dumps(obj, sort_keys=True))


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


def container_for(family):
    return config["containers"][family]


def generation_family():
    """The environment and image of the generate rule: vllm (envs/vllm.yaml, the vllm image) for
    evaluation.backend vllm, else gpu. vLLM pins other transformers/numpy versions than the gpu image.
    """
    return "vllm" if config["evaluation"]["backend"] == "vllm" else "gpu"


def generation_env():
    return f"../envs/{generation_family()}.yaml"


def _check_container_pins(cfg):
    """Export the images (each stage records its image's digest from them: evolcoder.io.container_info);
    with containers in use, a `containers:` entry that is a tag without a digest gets a warning.
    """
    os.environ.update(EVOLCODER_IMAGES=json.dumps(cfg, sort_keys=True))
    settings = getattr(workflow, "deployment_settings", None)
    methods = getattr(settings, "deployment_method", None) or ()
    if not any(str(m).lower().endswith(("apptainer", "singularity")) for m in methods):
        return
    for family, ref in sorted(cfg.items()):
        if "@sha256:" not in ref:
            sys.stderr.write(
                f"evolcoder: warning: containers.{family} = {ref} is a tag, not a digest: the image may change "
                "under it (build and pin: scripts/build_containers.sh --pin FILE, docs/CLUSTER.md)\n"
            )


_check_container_pins(config["containers"])


##### seed and evolution #####


def get_seed_file(wildcards):
    """A local seed file is an input: editing it in place makes the seed (and all after it) stale.
    `builtin` and `hf:` sources have no file here (the builtin seed is part of the seed stage's code).
    """
    src = config["seed"]["source"]
    if src == "builtin" or src.startswith("hf:"):
        return []
    if not Path(src).exists() and config["seed"]["fallback_builtin"]:
        return []
    return src


def auto_rounds():
    """`evolution.rounds: auto`: the number of rounds is selected by the select_round checkpoints."""
    return config["evolution"]["rounds"] == "auto"


def n_rounds():
    """The number of rounds; with rounds: auto, the cap (evolution.max_rounds)."""
    ev = config["evolution"]
    return int(ev["max_rounds"] if auto_rounds() else ev["rounds"])


def evolve_settings():
    """The evolution slice of one round: every key but how many rounds there are, and how they are selected."""
    return {
        k: v
        for k, v in config["evolution"].items()
        if k not in ("rounds", "max_rounds", "selection")
    }


def get_round_pool(wildcards):
    k = int(wildcards.k)
    return (
        "results/seed/seed.jsonl"
        if k == 1
        else f"results/evolve/round_{k - 1}/pool.jsonl"
    )


def get_evolved_rounds(wildcards=None):
    return [f"results/evolve/round_{k}/evolved.jsonl" for k in range(1, n_rounds() + 1)]


def rounds_run():
    """Rounds evolved: all of them, or with rounds: auto those up to the round whose checkpoint stopped the
    evolution (only callable from an input function: it waits for the select_round checkpoints).
    """
    return evaluated_rounds()[0] if auto_rounds() else n_rounds()


def get_round_stats(wildcards=None):
    return [f"results/evolve/round_{k}/stats.json" for k in range(1, rounds_run() + 1)]


def merge_round_args(wildcards, input):
    return " ".join(f"--round {shlex.quote(p)}" for p in input.rounds)


##### training #####


def trained_model():
    return config["train"]["model_name"]


##### rounds ablation and baselines #####


def ablation_model(k):
    """The checkpoint trained on the seed + rounds 1..k: the main model for k = N (nothing is trained twice)."""
    k = int(k)
    if k == n_rounds() and not auto_rounds():
        return trained_model()
    return f"{trained_model()}-k{k}"


def ablation_k(model):
    """k of an ablation checkpoint's name, else None."""
    for k in range(n_rounds() + 1):
        if ablation_model(k) == model:
            return k
    return None


def merged_dir(k):
    """The merged set of seed + rounds 1..k: the main one for k = N."""
    if int(k) == n_rounds() and not auto_rounds():
        return "results/merged"
    return f"results/merged/rounds_{int(k)}"


def get_train_data(wildcards):
    k = ablation_k(wildcards.model)
    return f"{merged_dir(n_rounds() if k is None else k)}/train.jsonl"


def get_rounds_upto(wildcards):
    return [
        f"results/evolve/round_{j}/evolved.jsonl"
        for j in range(1, int(wildcards.k) + 1)
    ]


def untuned_model():
    return f"{trained_model()}-untuned"


def baseline_models():
    """{name: role} of the baseline rows the config asks for (evaluation.baselines)."""
    wanted = config["evaluation"]["baselines"]
    out = {}
    if "base" in wanted:
        out[untuned_model()] = "base model (untuned)"
    if "seed_only" in wanted:
        out[ablation_model(0)] = "seed only (k=0)"
    return out


def ablation_benchmarks():
    return config["ablation"]["benchmarks"] or config["evaluation"]["benchmarks"]


def train_settings():
    # resources (GPUs, memory, time) change where training runs, not what it computes
    return {
        k: v for k, v in config["train"].items() if k not in ("model_name", "resources")
    }


def tokenize_settings():
    t = config["train"]
    keys = (
        "base_model",
        "model_max_length",
        "prompt_template",
        "chat_template",
        "system_prompt",
    )
    return {k: t[k] for k in keys if k in t}


##### cluster resources of the GPU rules (keys of snakemake-executor-plugin-slurm) #####

# Used when the config says nothing; sized to fit one small GPU node (and the test cluster).
GPU_RESOURCE_DEFAULTS = {
    "gpus": 1,
    "gpu_model": "",
    "cpus_per_gpu": 4,
    "mem_mb": 32000,
    "runtime": 240,
}


def gpu_resources(lookup):
    """Resources of a GPU rule, sized from the config per model.

    `lookup(wildcards)` returns the config's `resources` mapping for the job (gpus, gpu_model,
    cpus_per_gpu, mem_mb, runtime). Returned as Snakemake resources: gpu, gpu_model (""
    = any), cpus_per_gpu, mem_mb, runtime (minutes). gpus: 0 runs the rule on CPU nodes.
    """

    def getter(key):
        def value(wildcards):
            got = (lookup(wildcards) or {}).get(key)
            return GPU_RESOURCE_DEFAULTS[key] if got is None else got

        return value

    return {("gpu" if k == "gpus" else k): getter(k) for k in GPU_RESOURCE_DEFAULTS}


def train_resources(wildcards):
    return config["train"].get("resources")


def train_nodes():
    """train.resources.nodes: the nodes of the train job (1 = today's single-node job)."""
    return int((config["train"].get("resources") or {}).get("nodes") or 1)


def multinode_resources(lookup, nodes):
    """Resources of a GPU rule whose job spans `nodes` (> 1) nodes, as snakemake-executor-plugin-slurm
    reads them: --nodes, one task per node (its launcher starts one process per GPU there), the GPUs
    per node as --gres=gpu[:model]:N (--gpus would count the whole job), the node's CPUs as
    --cpus-per-task (cpus_per_gpu × gpus), mem_mb per node. `mpi` makes the plugin run the command
    in the batch script rather than in a one-task srun step: `evolcoder train` starts the srun itself.
    """
    base = gpu_resources(lookup)

    def gres(wildcards):
        gpus, model = base["gpu"](wildcards), base["gpu_model"](wildcards)
        return (
            ":".join(["gpu", model, str(gpus)] if model else ["gpu", str(gpus)])
            if gpus
            else ""
        )

    return {
        "nodes": nodes,
        "tasks": nodes,
        "tasks_per_gpu": 0,  # no --ntasks-per-gpu: one task per node
        "mpi": "srun",
        "gpu": 0,
        "gpu_model": "",
        "gres": gres,
        "cpus_per_task": lambda wc: base["cpus_per_gpu"](wc) * max(1, base["gpu"](wc)),
        "mem_mb": base["mem_mb"],
        "runtime": base["runtime"],
    }


def train_job_resources():
    """The train rule's resources: one node (gpu_resources), or train.resources.nodes of them."""
    nodes = train_nodes()
    if nodes > 1:
        return multinode_resources(train_resources, nodes)
    return gpu_resources(train_resources)


def generate_resources(wildcards):
    """evaluation.resources, overridden per model by evaluation.models[].resources."""
    res = dict(config["evaluation"].get("resources") or {})
    for m in config["evaluation"]["models"]:
        if m["name"] == wildcards.model:
            res.update(m.get("resources") or {})
    if int(res.get("nodes") or 1) > 1:
        raise ValueError(
            f"evaluation resources of {wildcards.model}: nodes > 1 is for train only (one node each)"
        )
    return res


##### evaluation #####


def eval_models():
    """Every model the DAG can generate with: the configured ones, the untuned base and the ablation
    checkpoints (`trained:<k>`)."""
    out = {untuned_model(): config["train"]["base_model"]}
    last = n_rounds() + 1 if auto_rounds() else n_rounds()
    out.update({ablation_model(k): f"trained:{k}" for k in range(last)})
    out.update({m["name"]: m["model"] for m in config["evaluation"]["models"]})
    return out


def table_models():
    """Models of the results table: the configured ones and the baselines."""
    return [m["name"] for m in config["evaluation"]["models"]] + [
        m for m in baseline_models() if m not in configured_models()
    ]


def configured_models():
    return [m["name"] for m in config["evaluation"]["models"]]


def _checkpoint(spec):
    """The checkpoint directory of a `trained` spec (with rounds: auto, the selected k's; an input function
    only then, as it waits for the selection)."""
    if spec == "trained":
        if auto_rounds():
            return f"results/train/{ablation_model(evaluated_rounds()[1])}/model"
        return f"results/train/{trained_model()}/model"
    if spec.startswith("trained:"):
        return f"results/train/{ablation_model(spec.split(':', 1)[1])}/model"
    return None


_WARNED = set()


def _warn_once(message):
    if message not in _WARNED:
        _WARNED.add(message)
        sys.stderr.write(f"evolcoder: warning: {message}\n")


def external_predictions():
    """{(name, benchmark, mode): path}; an optional entry whose file is missing is skipped."""
    for e in config["evaluation"]["external_predictions"]:
        if e.get("optional") and not Path(e["path"]).exists():
            _warn_once(
                f"external predictions {e['name']}: {e['path']} not found, skipped"
            )
    return {
        (e["name"], e["benchmark"], e.get("mode", "greedy")): e["path"]
        for e in config["evaluation"]["external_predictions"]
        if not (e.get("optional") and not Path(e["path"]).exists())
    }


MODE_SECTION = {"greedy": "greedy", "sampled": "sampling"}


def eval_modes():
    ev = config["evaluation"]
    return [m for m, section in MODE_SECTION.items() if ev[section]["enabled"]]


def get_model_input(wildcards):
    """The checkpoint directory when the model is the one trained here, else nothing to wait for."""
    return _checkpoint(eval_models()[wildcards.model]) or []


def get_model_spec(wildcards, input):
    """The model's checkpoint (the job's input, resolved through the selection with rounds: auto) or its spec."""
    got = input.model
    if isinstance(got, str):
        return got
    return got[0] if len(got) else eval_models()[wildcards.model]


def generation_settings(wildcards):
    ev = config["evaluation"]
    mode = dict(ev[MODE_SECTION[wildcards.mode]])
    mode.pop("enabled", None)
    mode.pop("ks", None)
    if wildcards.mode == "greedy":
        mode.update(n=1, temperature=0.0)
    return {
        "mode": wildcards.mode,
        "limit": ev["limit"],
        "prompt_template": ev["prompt_template"],
        **chat_generation_settings(),
        "backend": ev["backend"],
        "dtype": ev["dtype"],
        **mode,
    }


def chat_generation_settings():
    """prompt_template chat: the template file and system turn of training reach the generation prompts."""
    if config["evaluation"]["prompt_template"] != "chat":
        return {}
    t = config["train"]
    return {"chat_template": t["chat_template"], "system_prompt": t["system_prompt"]}


def table_options():
    """`evolcoder table` options: reproductions matched to the published model, comparison block."""
    ev = config["evaluation"]
    opts = [
        f"--match {shlex.quote(m['name'])}={shlex.quote(m['reproduces'])}"
        for m in ev["models"]
        if m.get("reproduces")
    ]
    if ev.get("published_comparison"):
        opts.append("--comparison")
    baselines = baseline_models()
    if baselines:
        # base -> seed only -> the evolved model(s), each row with a paired test against the one before
        chain = list(baselines.items()) + [
            (m["name"], selected_role())
            for m in ev["models"]
            if m["model"] == "trained"
        ]
        opts += [f"--chain {shlex.quote(f'{m}={role}')}" for m, role in chain]
    return " ".join(opts)


def gather_settings(wildcards):
    """Post-processing of the raw outputs (WizardCoder's process scripts or evalplus's sanitize)."""
    return {"postprocess": config["evaluation"]["postprocess"]}


def get_data_path(wildcards):
    """Dataset file of a benchmark (its adapter's data_key; '' lets the adapter use its library's
    own download, e.g. evalplus's)."""
    key = BENCHMARK_INFO[wildcards.benchmark]["data_key"]
    path = config["data"].get(key)
    return path if path and Path(path).exists() else ""


def benchmark_options(wildcards):
    """`--option NAME=PATH` for each file the benchmark's adapter takes (its data_options), where the
    config's `data:` section names one that exists (e.g. mbpp: WizardCoder's MBPP+ prompts).
    """
    opts = []
    for name, key in BENCHMARK_INFO[wildcards.benchmark]["data_options"].items():
        path = config["data"].get(key)
        if path and Path(path).exists():
            opts.append(f"--option {shlex.quote(f'{name}={path}')}")
    return " ".join(opts)


def get_shards(wildcards):
    n = int(config["evaluation"]["num_shards"])
    return [
        f"results/predictions/{wildcards.model}/{wildcards.benchmark}/{wildcards.mode}.shards/{i}.raw.jsonl"
        for i in range(n)
    ]


def get_timings(wildcards):
    """Reference timings (evalplus benchmarks): measured once per dataset and machine, then reused."""
    if BENCHMARK_INFO[wildcards.benchmark]["needs_timings"]:
        return f"results/timings/{wildcards.benchmark}.pkl"
    return []


def timings_settings():
    """What the reference measurement depends on: the repeats it takes the minimum over (the number of
    parallel workers, `threads`, changes no number: times are CPU times)."""
    return {"reference_repeats": config["evaluation"]["execution"]["reference_repeats"]}


def sandbox_jobs(wildcards):
    """Parallel sandbox workers of the timings and score rules (their `threads`)."""
    return config["evaluation"]["execution"]["jobs"]


def timings_arg(wildcards, input):
    return f"--timings {input.timings}" if input.timings else ""


def get_predictions(wildcards):
    ext = external_predictions()
    key = (wildcards.model, wildcards.benchmark, wildcards.mode)
    if key in ext:
        return ext[key]
    return f"results/predictions/{wildcards.model}/{wildcards.benchmark}/{wildcards.mode}.jsonl"


def score_settings(wildcards):
    ev = config["evaluation"]
    # jobs is the rule's `threads` (--jobs): how many workers run the sandbox changes no verdict
    out = {
        "execution": {k: v for k, v in ev["execution"].items() if k != "jobs"},
        "options": ev["benchmark_options"].get(wildcards.benchmark, {}),
        "limit": ev["limit"],
        "postprocess": ev["postprocess"],
    }
    if wildcards.mode == "sampled":
        out["ks"] = ev["sampling"]["ks"]
    key = (wildcards.model, wildcards.benchmark, wildcards.mode)
    if key in external_predictions():
        out["limit"] = None  # released predictions are scored on every task they cover
    return out


def get_score_files(wildcards=None):
    ev = config["evaluation"]
    files = [
        f"results/scores/{m}/{b}/{mode}.json"
        for m in table_models()
        for b in ev["benchmarks"]
        for mode in eval_modes()
    ]
    files += [
        f"results/scores/{n}/{b}/{mode}.json" for (n, b, mode) in external_predictions()
    ]
    return files


def get_ablation_scores(wildcards=None):
    """Score files of the untuned base and of every k's checkpoint on the ablation's benchmarks (with
    rounds: auto, every k evaluated before the selection stopped)."""
    models = [untuned_model()] + [ablation_model(k) for k in range(rounds_run() + 1)]
    return [
        f"results/scores/{m}/{b}/{mode}.json"
        for m in models
        for b in ablation_benchmarks()
        for mode in eval_modes()
    ]


def get_ablation_stats(wildcards=None):
    return [f"{merged_dir(k)}/stats.json" for k in range(rounds_run() + 1)]


##### round selection (evolution.rounds: auto) #####


def selection():
    return config["evolution"]["selection"]


def selection_score(k):
    """The selection metric's score file of the checkpoint of k (greedy when enabled, else sampled)."""
    return f"results/scores/{ablation_model(k)}/{selection()['benchmark']}/{eval_modes()[0]}.json"


def get_selection_inputs(wildcards):
    k = int(wildcards.k)
    return {"previous": selection_score(k - 1), "current": selection_score(k)}


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


def get_selection_decisions(wildcards=None):
    return (
        [f"results/selection/round_{k}.json" for k in range(1, rounds_run() + 1)]
        if auto_rounds()
        else []
    )


def selection_is_held_out():
    return selection()["benchmark"] not in config["evaluation"]["benchmarks"]


def selection_note():
    """What the number of rounds was selected on, for the tables."""
    if not auto_rounds():
        return f"fixed in the config (evolution.rounds: {n_rounds()}), not selected"
    sel = selection()
    where = (
        "held out (not a reported benchmark)"
        if selection_is_held_out()
        else "a benchmark the results table reports: its numbers are selected on themselves (as in the paper)"
    )
    return (
        f"rounds: auto (cap {n_rounds()}): stop at the first decline of {sel['benchmark']} {sel['split']} "
        f"pass@1 ({eval_modes()[0]}), keep the best k; selected on {where}"
    )


def selected_role():
    if not auto_rounds():
        return f"evolved ({n_rounds()} rounds)"
    sel = selection()
    where = "held out" if selection_is_held_out() else "a reported test benchmark"
    return f"evolved (best k on {sel['benchmark']} {sel['split']}, {where})"


def ablation_args(wildcards, input):
    ks = " ".join(
        f"--k {shlex.quote(f'{ablation_model(k)}={stats}')}"
        for k, stats in enumerate(input.stats)
    )
    return f"{ks} --base {shlex.quote(untuned_model())}"


def ablation_held_fixed():
    t = config["train"]
    return shlex.quote(
        f"train's hyper-parameters (base model {t['base_model']}, lr {t['learning_rate']}, "
        f"{t['num_epochs']} epochs, max_steps {t['max_steps']}, global batch {t['global_batch_size']}, "
        f"length {t['model_max_length']}, seed {t['seed']}), the prompts, generation and scorer"
    )


##### hub-ready artefacts #####


def dataset_card_settings():
    ev = config["evolution"]
    return {
        "license": config["hub"]["license"],
        "pretty_name": config["hub"]["pretty_name"],
        "shard_rows": config["hub"]["shard_rows"],
        "seed_source": config["seed"]["source"],
        "evolver_model": ev["backend"]["model"],
        "evolver_backend": ev["backend"]["kind"],
        "rounds": ev["rounds"],
        "commands": [
            "snakemake --configfile <your config> results/dataset/README.md  # seed -> evolve_round -> merge -> export_dataset"
        ],
    }


def get_dataset_inputs(wildcards):
    """The merged set the trained model was trained on (with rounds: auto, the selected k's) and its records."""
    k = evaluated_rounds()[1] if auto_rounds() else n_rounds()
    d = merged_dir(k)
    return {
        "merged": f"{d}/train.jsonl",
        "stats": f"{d}/stats.json",
        "decontamination": f"{d}/decontamination.json",
        "seed": "results/seed/seed.jsonl",
        "rounds": [f"results/evolve/round_{j}/stats.json" for j in range(1, k + 1)],
    }


def model_card_settings():
    hub = config["hub"]
    return {"license": hub["model_license"], "dataset_ref": hub["dataset_repo_id"]}


def table_name(wildcards):
    """The results table's name of a checkpoint (evaluation.models: the entry whose model is `trained`)."""
    # with rounds: auto the selected checkpoint {model}-k{k} is scored again under the trained model's name
    if wildcards.model == trained_model() or (
        auto_rounds() and wildcards.model == ablation_model(evaluated_rounds()[1])
    ):
        for m in config["evaluation"]["models"]:
            if m["model"] == "trained":
                return m["name"]
    return wildcards.model


##### final targets #####


def get_final_output(wildcards=None):
    out = [
        "results/scores.md",
        "results/scores.csv",
        "results/scores.json",
        "results/scores.png",
        "results/evolve/stats.png",
    ]
    out += ["results/dataset/README.md"]
    card = any(m["model"] == "trained" for m in config["evaluation"]["models"])
    if not auto_rounds():
        if card:
            out += [f"results/train/{trained_model()}/model_card.json"]
        return out + [f"results/train/{trained_model()}/loss.png"]
    # rounds: auto: the selected checkpoint, and the rounds table the selection was made from
    best = ablation_model(evaluated_rounds()[1])
    if card:
        out += [f"results/train/{best}/model_card.json"]
    return out + [
        f"results/train/{best}/loss.png",
        "results/ablation/rounds.md",
        "results/ablation/rounds.png",
    ]
