"""What the Snakemake workflow computes from the config, as plain functions of it.

``rules/common.smk`` calls this module at every Snakefile parse (a no-op dry run too), so it imports only
the standard library, yaml and jsonschema (through :mod:`evolcoder.config`) and the adapter registry.
It holds:

- :func:`check_config`: schema validation (filling in the defaults) and the checks made before any
  job starts (data keys, a local seed file, chat templates); each failure is one line naming the key;
- :func:`settings_for`: the settings of one stage's job, flat, exactly the fields of that stage's
  ``Settings`` class that the config sets (the command reads them with ``Settings.from_dict``). A rule
  passes it as its ``--settings-json`` param, tracked by content: editing a key reruns the stages that
  read it and nothing else;
- :class:`Plan`: file names, models and rounds of the DAG (rounds ablation, baselines, round selection),
  and the tables' prose. What needs Snakemake's checkpoints (the selected number of rounds with
  ``rounds: auto``) is passed in by the rule file.
"""

from __future__ import annotations

import copy
import json
import shlex
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from evolcoder import config as schema_
from evolcoder.errors import EvolcoderError


class ConfigError(EvolcoderError):
    """The config breaks the schema or names something no stage knows; the message names the key."""


##### config checks #####


def validate_config(cfg: dict, benchmarks: Mapping[str, dict] | list[str]) -> None:
    """Validate ``cfg`` against the schema with the registry's ``benchmarks`` (their names, or
    :func:`evolcoder.benchmarks.describe` for their options blocks too), filling in the defaults (fresh
    copies) in place; raise :class:`ConfigError` naming the offending key."""
    import jsonschema
    from jsonschema import validators

    base = jsonschema.Draft202012Validator
    check_properties = base.VALIDATORS["properties"]

    def fill(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from check_properties(validator, properties, instance, schema)

    filling = validators.extend(base, {"properties": fill})
    err = jsonschema.exceptions.best_match(filling(schema_.schema(benchmarks)).iter_errors(cfg))
    if err is not None:
        where = ".".join(str(p) for p in err.absolute_path) or "<top level>"
        raise ConfigError(f"config error at '{where}': {err.message}")


def check_data_keys(cfg: dict, info: Mapping[str, dict]) -> None:
    """`data:` keys beyond the schema's must be named by a registered adapter (a typo is an error)."""
    known = set(schema_.section("data")["properties"])
    for b in info.values():
        known |= {b["data_key"], *b["data_options"].values()}
    for key in sorted(set(cfg["data"]) - known):
        raise ConfigError(
            f"config error at 'data.{key}': no registered benchmark reads it (known: {', '.join(sorted(known))})"
        )


def local_seed_file(seed: dict) -> str | None:
    """The seed's local file, or None for ``builtin`` and ``hf:`` sources."""
    src = seed["source"]
    return None if src == "builtin" or src.startswith("hf:") else src


def check_seed_source(seed: dict) -> None:
    """Parse a local seed file before any job runs: a malformed seed stops the run with one line, before
    Snakemake removes the outputs of the seed job it would rerun."""
    if local_seed_file(seed) is None:
        return
    try:
        from evolcoder.seed import build_seed
    except ImportError:  # a dependency of the seed stage lives only in the rules' containers
        return
    build_seed(seed["source"], seed["limit"], seed["sample_seed"], seed["fallback_builtin"])


def check_chat_templates(cfg: dict) -> None:
    """prompt_template chat: the models' tokenizers have a chat template (or train.chat_template gives one),
    checked from their files before any job starts."""
    if "chat" in (cfg["train"]["prompt_template"], cfg["evaluation"]["prompt_template"]):
        from evolcoder.chat import check_chat_config

        check_chat_config(cfg)


def check_config(cfg: dict, info: Mapping[str, dict]) -> None:
    """Every check made at parse time, in order; the first failure raises (:class:`ConfigError` for the
    config's shape, :class:`EvolcoderError` for what a file it names holds)."""
    validate_config(cfg, info)
    check_data_keys(cfg, info)
    check_seed_source(cfg["seed"])
    check_chat_templates(cfg)


def container_warnings(containers: dict, deployment_methods) -> list[str]:
    """With containers in use, each `containers:` entry that is a tag without a digest gets a warning."""
    if not any(str(m).lower().endswith(("apptainer", "singularity")) for m in deployment_methods or ()):
        return []
    return [
        f"containers.{family} = {ref} is a tag, not a digest: the image may change under it (build and pin: "
        "scripts/build_containers.sh --pin FILE, docs/CLUSTER.md)"
        for family, ref in sorted(containers.items())
        if "@sha256:" not in ref
    ]


##### the settings of each stage's job #####

# Keys of a section that change where or how fast a stage runs, never what it computes: not passed in the
# settings (a change reruns nothing); the rules pass them their own way (resources, threads = --jobs).
EVOLUTION_WORKFLOW_KEYS = ("rounds", "max_rounds", "selection")  # how many rounds, and how they are chosen
TRAIN_WORKFLOW_KEYS = ("model_name", "resources")
EXECUTION_RUNTIME_KEYS = ("jobs",)
MODE_SECTION = {"greedy": "greedy", "sampled": "sampling"}


def _wildcard(wildcards: Any, name: str) -> str:
    if isinstance(wildcards, Mapping):
        return str(wildcards[name])
    return str(getattr(wildcards, name))


def _without(section: dict, keys) -> dict:
    return {k: copy.deepcopy(v) for k, v in section.items() if k not in keys}


def _generate(cfg: dict, wildcards: Any) -> dict:
    ev, mode = cfg["evaluation"], _wildcard(wildcards, "mode")
    out = {k: ev[k] for k in ("limit", "prompt_template", "backend", "dtype")}
    out.update(_without(ev[MODE_SECTION[mode]], ("enabled", "ks")), mode=mode)
    if ev["prompt_template"] == "chat":  # the template file and system turn of training reach the prompts
        out.update({k: cfg["train"][k] for k in ("chat_template", "system_prompt")})
    return out


def _score(cfg: dict, wildcards: Any) -> dict:
    ev = cfg["evaluation"]
    out = _without(ev["execution"], EXECUTION_RUNTIME_KEYS)
    out["postprocess"] = ev["postprocess"]
    out["options"] = copy.deepcopy(ev["benchmark_options"].get(_wildcard(wildcards, "benchmark"), {}))
    if _wildcard(wildcards, "mode") == "sampled":
        out["ks"] = list(ev["sampling"]["ks"])  # greedy: pass@1 only (n = 1)
    return out


def _tokenize(cfg: dict, wildcards: Any) -> dict:
    from evolcoder.train.settings import TOKENIZE_KEYS

    return {k: cfg["train"][k] for k in TOKENIZE_KEYS}


def _dataset_card(cfg: dict, wildcards: Any) -> dict:
    ev, hub = cfg["evolution"], cfg["hub"]
    return {
        **{k: hub[k] for k in ("license", "pretty_name", "shard_rows")},
        "seed_source": cfg["seed"]["source"],
        "evolver_model": ev["backend"]["model"],
        "evolver_backend": ev["backend"]["kind"],
        "rounds": ev["rounds"],
        "commands": [
            "snakemake --configfile <your config> results/dataset/README.md  # seed -> evolve_round -> merge -> "
            "export_dataset"
        ],
    }


# stage (the evolcoder command) -> its settings from the validated config and the job's wildcards
_STAGES: dict[str, Callable[[dict, Any], dict]] = {
    "evolve": lambda cfg, w: _without(cfg["evolution"], EVOLUTION_WORKFLOW_KEYS),
    "merge": lambda cfg, w: copy.deepcopy(cfg["merge"]),
    "tokenize": _tokenize,
    "train": lambda cfg, w: _without(cfg["train"], TRAIN_WORKFLOW_KEYS),
    "generate": _generate,
    "gather": lambda cfg, w: {"postprocess": cfg["evaluation"]["postprocess"]},
    # the repeats the reference time is the minimum over (the number of workers changes no number)
    "timings": lambda cfg, w: {"reference_repeats": cfg["evaluation"]["execution"]["reference_repeats"]},
    "score": _score,
    "export-data": _dataset_card,
    "model-card": lambda cfg, w: {
        "license": cfg["hub"]["model_license"],
        "dataset_ref": cfg["hub"]["dataset_repo_id"],
    },
}
STAGES = tuple(_STAGES)


def settings_for(stage: str, cfg: dict, wildcards: Any = None) -> dict:
    """The settings of a job of ``stage`` (an ``evolcoder`` command), flat: what its ``--settings-json``
    gets from the validated config ``cfg``, for the job's ``wildcards`` (``mode`` for generate and score)."""
    if stage not in _STAGES:
        raise KeyError(f"no settings for stage {stage!r} (known: {', '.join(_STAGES)})")
    return _STAGES[stage](cfg, wildcards)


def as_json(obj: Any) -> str:
    """One shell-quoted JSON argument (a rule's params are tracked by content)."""
    return shlex.quote(json.dumps(obj, sort_keys=True))


##### cluster resources of the GPU rules (keys of snakemake-executor-plugin-slurm) #####

# Used when the config says nothing; sized to fit one small GPU node (and the test cluster).
GPU_RESOURCE_DEFAULTS = {"gpus": 1, "gpu_model": "", "cpus_per_gpu": 4, "mem_mb": 32000, "runtime": 240}


def gpu_resources(lookup: Callable[[Any], dict | None]) -> dict:
    """Resources of a GPU rule, sized from the config per job.

    ``lookup(wildcards)`` returns the config's ``resources`` mapping for the job (gpus, gpu_model,
    cpus_per_gpu, mem_mb, runtime). Returned as Snakemake resources: gpu, gpu_model ("" = any),
    cpus_per_gpu, mem_mb, runtime (minutes). gpus: 0 runs the rule on CPU nodes.
    """

    def getter(key):
        def value(wildcards):
            got = (lookup(wildcards) or {}).get(key)
            return GPU_RESOURCE_DEFAULTS[key] if got is None else got

        return value

    return {("gpu" if k == "gpus" else k): getter(k) for k in GPU_RESOURCE_DEFAULTS}


def multinode_resources(lookup: Callable[[Any], dict | None], nodes: int) -> dict:
    """Resources of a GPU rule whose job spans ``nodes`` (> 1) nodes, as snakemake-executor-plugin-slurm
    reads them: --nodes, one task per node (its launcher starts one process per GPU there), the GPUs per
    node as --gres=gpu[:model]:N (--gpus would count the whole job), the node's CPUs as --cpus-per-task
    (cpus_per_gpu x gpus), mem_mb per node. ``mpi`` makes the plugin run the command in the batch script
    rather than in a one-task srun step: ``evolcoder train`` starts the srun itself.
    """
    base = gpu_resources(lookup)

    def gres(wildcards):
        gpus, model = base["gpu"](wildcards), base["gpu_model"](wildcards)
        return ":".join(["gpu", model, str(gpus)] if model else ["gpu", str(gpus)]) if gpus else ""

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


##### the DAG's files, models and rounds #####


class Plan:
    """Names of the DAG from the validated config. ``selected`` (rounds: auto only, an input function's
    call: it waits for the select_round checkpoints) returns (last k evaluated, selected k)."""

    def __init__(self, cfg: dict, info: Mapping[str, dict], selected: Callable[[], tuple[int, int]] | None = None):
        self.cfg, self.info, self.selected = cfg, info, selected
        self._warned: set[str] = set()

    # ---- where jobs run
    def generation_family(self) -> str:
        """The environment and image of the generate rule: vllm (envs/vllm.yaml, the vllm image) for
        evaluation.backend vllm, else gpu. vLLM pins other transformers/numpy versions than the gpu image."""
        return "vllm" if self.cfg["evaluation"]["backend"] == "vllm" else "gpu"

    def train_job_resources(self) -> dict:
        """The train rule's resources: one node (:func:`gpu_resources`), or train.resources.nodes of them."""
        res = self.cfg["train"].get("resources") or {}
        nodes = int(res.get("nodes") or 1)
        return multinode_resources(lambda w: res, nodes) if nodes > 1 else gpu_resources(lambda w: res)

    def generate_resources(self, model: str) -> dict:
        """evaluation.resources, overridden per model by evaluation.models[].resources."""
        res = dict(self.cfg["evaluation"].get("resources") or {})
        for m in self.cfg["evaluation"]["models"]:
            if m["name"] == model:
                res.update(m.get("resources") or {})
        if int(res.get("nodes") or 1) > 1:
            raise ConfigError(f"evaluation resources of {model}: nodes > 1 is for train only (one node each)")
        return res

    def generate_job_resources(self) -> dict:
        return gpu_resources(lambda w: self.generate_resources(_wildcard(w, "model")))

    # ---- rounds
    def auto_rounds(self) -> bool:
        """``evolution.rounds: auto``: the number of rounds is selected by the select_round checkpoints."""
        return self.cfg["evolution"]["rounds"] == "auto"

    def n_rounds(self) -> int:
        """The number of rounds; with rounds: auto, the cap (evolution.max_rounds)."""
        ev = self.cfg["evolution"]
        return int(ev["max_rounds"] if self.auto_rounds() else ev["rounds"])

    def rounds_run(self) -> int:
        """Rounds evolved: all, or with rounds: auto those up to the one whose checkpoint stopped."""
        return self.selected()[0] if self.auto_rounds() else self.n_rounds()

    def final_k(self) -> int:
        """k of the final model: all rounds, or with rounds: auto the selected one."""
        return self.selected()[1] if self.auto_rounds() else self.n_rounds()

    def round_pool(self, k: int) -> str:
        return "results/seed/seed.jsonl" if int(k) == 1 else f"results/evolve/round_{int(k) - 1}/pool.jsonl"

    def evolved(self, last: int) -> list[str]:
        return [f"results/evolve/round_{j}/evolved.jsonl" for j in range(1, int(last) + 1)]

    def round_stats(self, last: int) -> list[str]:
        return [f"results/evolve/round_{j}/stats.json" for j in range(1, int(last) + 1)]

    # ---- models
    def trained_model(self) -> str:
        return self.cfg["train"]["model_name"]

    def untuned_model(self) -> str:
        return f"{self.trained_model()}-untuned"

    def ablation_model(self, k) -> str:
        """The checkpoint trained on the seed + rounds 1..k: the main model for k = N (nothing is trained twice)."""
        if int(k) == self.n_rounds() and not self.auto_rounds():
            return self.trained_model()
        return f"{self.trained_model()}-k{int(k)}"

    def ablation_k(self, model: str) -> int | None:
        """k of an ablation checkpoint's name, else None."""
        return next((k for k in range(self.n_rounds() + 1) if self.ablation_model(k) == model), None)

    def merged_dir(self, k) -> str:
        """The merged set of seed + rounds 1..k: the main one for k = N."""
        if int(k) == self.n_rounds() and not self.auto_rounds():
            return "results/merged"
        return f"results/merged/rounds_{int(k)}"

    def train_data(self, model: str) -> str:
        k = self.ablation_k(model)
        return f"{self.merged_dir(self.n_rounds() if k is None else k)}/train.jsonl"

    def baseline_models(self) -> dict[str, str]:
        """{name: role} of the baseline rows the config asks for (evaluation.baselines)."""
        wanted, out = self.cfg["evaluation"]["baselines"], {}
        if "base" in wanted:
            out[self.untuned_model()] = "base model (untuned)"
        if "seed_only" in wanted:
            out[self.ablation_model(0)] = "seed only (k=0)"
        return out

    def configured_models(self) -> list[str]:
        return [m["name"] for m in self.cfg["evaluation"]["models"]]

    def table_models(self) -> list[str]:
        """Models of the results table: the configured ones and the baselines."""
        configured = self.configured_models()
        return configured + [m for m in self.baseline_models() if m not in configured]

    def eval_models(self) -> dict[str, str]:
        """{name: spec} of every model the DAG can generate with: the configured ones, the untuned base and
        the ablation checkpoints (``trained:<k>``)."""
        out = {self.untuned_model(): self.cfg["train"]["base_model"]}
        last = self.n_rounds() + 1 if self.auto_rounds() else self.n_rounds()
        out.update({self.ablation_model(k): f"trained:{k}" for k in range(last)})
        out.update({m["name"]: m["model"] for m in self.cfg["evaluation"]["models"]})
        return out

    def checkpoint(self, model: str) -> str | None:
        """The checkpoint directory of a model trained here (with rounds: auto, ``trained`` is the selected
        k's), else None."""
        spec = self.eval_models()[model]
        if spec == "trained":
            return f"results/train/{self.ablation_model(self.final_k())}/model"
        if spec.startswith("trained:"):
            return f"results/train/{self.ablation_model(spec.split(':', 1)[1])}/model"
        return None

    def table_name(self, model: str) -> str:
        """The results table's name of a checkpoint (evaluation.models: the entry whose model is `trained`);
        with rounds: auto the selected checkpoint {model}-k{k} is scored again under that name."""
        if model == self.trained_model() or (self.auto_rounds() and model == self.ablation_model(self.final_k())):
            for m in self.cfg["evaluation"]["models"]:
                if m["model"] == "trained":
                    return m["name"]
        return model

    # ---- evaluation
    def eval_modes(self) -> list[str]:
        ev = self.cfg["evaluation"]
        return [m for m, section in MODE_SECTION.items() if ev[section]["enabled"]]

    def external_predictions(self) -> dict[tuple[str, str, str], str]:
        """{(name, benchmark, mode): path}; an optional entry whose file is missing is skipped (one warning)."""
        out = {}
        for e in self.cfg["evaluation"]["external_predictions"]:
            if e.get("optional") and not Path(e["path"]).exists():
                message = f"external predictions {e['name']}: {e['path']} not found, skipped"
                if message not in self._warned:
                    self._warned.add(message)
                    sys.stderr.write(f"evolcoder: warning: {message}\n")
                continue
            out[(e["name"], e["benchmark"], e.get("mode", "greedy"))] = e["path"]
        return out

    def predictions(self, model: str, benchmark: str, mode: str) -> str:
        return self.external_predictions().get(
            (model, benchmark, mode), f"results/predictions/{model}/{benchmark}/{mode}.jsonl"
        )

    def shards(self, model: str, benchmark: str, mode: str) -> list[str]:
        n = int(self.cfg["evaluation"]["num_shards"])
        return [f"results/predictions/{model}/{benchmark}/{mode}.shards/{i}.raw.jsonl" for i in range(n)]

    def data_path(self, benchmark: str) -> str:
        """Dataset file of a benchmark (its adapter's data_key; '' lets the adapter use its library's own
        download, e.g. evalplus's)."""
        path = self.cfg["data"].get(self.info[benchmark]["data_key"])
        return path if path and Path(path).exists() else ""

    def benchmark_options(self, benchmark: str) -> str:
        """``--option NAME=PATH`` for each file the benchmark's adapter takes (its data_options), where the
        config's ``data:`` section names one that exists (e.g. mbpp: WizardCoder's MBPP+ prompts)."""
        opts = []
        for name, key in self.info[benchmark]["data_options"].items():
            path = self.cfg["data"].get(key)
            if path and Path(path).exists():
                opts.append(f"--option {shlex.quote(f'{name}={path}')}")
        return " ".join(opts)

    def timings(self, benchmark: str) -> str | list:
        """Reference timings (evalplus benchmarks): measured once per dataset and machine, then reused."""
        return f"results/timings/{benchmark}.pkl" if self.info[benchmark]["needs_timings"] else []

    def scores(self, models, benchmarks) -> list[str]:
        return [f"results/scores/{m}/{b}/{mode}.json" for m in models for b in benchmarks for mode in self.eval_modes()]

    def score_files(self) -> list[str]:
        files = self.scores(self.table_models(), self.cfg["evaluation"]["benchmarks"])
        return files + [f"results/scores/{n}/{b}/{mode}.json" for (n, b, mode) in self.external_predictions()]

    def ablation_scores(self) -> list[str]:
        """Score files of the untuned base and of every k's checkpoint on the ablation's benchmarks (with
        rounds: auto, every k evaluated before the selection stopped)."""
        models = [self.untuned_model()] + [self.ablation_model(k) for k in range(self.rounds_run() + 1)]
        return self.scores(models, self.cfg["ablation"]["benchmarks"] or self.cfg["evaluation"]["benchmarks"])

    def ablation_stats(self) -> list[str]:
        return [f"{self.merged_dir(k)}/stats.json" for k in range(self.rounds_run() + 1)]

    # ---- round selection (evolution.rounds: auto)
    def selection(self) -> dict:
        return self.cfg["evolution"]["selection"]

    def selection_inputs(self, k) -> dict[str, str]:
        """The selection metric's score files of the checkpoints of k - 1 and k (greedy when enabled)."""
        bench, mode = self.selection()["benchmark"], self.eval_modes()[0]
        score = lambda j: f"results/scores/{self.ablation_model(j)}/{bench}/{mode}.json"  # noqa: E731
        return {"previous": score(int(k) - 1), "current": score(int(k))}

    def selection_decisions(self) -> list[str]:
        if not self.auto_rounds():
            return []
        return [f"results/selection/round_{k}.json" for k in range(1, self.rounds_run() + 1)]

    def selection_is_held_out(self) -> bool:
        return self.selection()["benchmark"] not in self.cfg["evaluation"]["benchmarks"]

    # ---- hub
    def dataset_inputs(self) -> dict:
        """The merged set the trained model was trained on (with rounds: auto, the selected k's), its records."""
        k = self.final_k()
        d = self.merged_dir(k)
        return {
            "merged": f"{d}/train.jsonl",
            "stats": f"{d}/stats.json",
            "decontamination": f"{d}/decontamination.json",
            "seed": "results/seed/seed.jsonl",
            "rounds": self.round_stats(k),
        }

    def final_output(self) -> list[str]:
        out = ["results/scores.md", "results/scores.csv", "results/scores.json", "results/scores.png"]
        out += ["results/evolve/stats.png", "results/dataset/README.md"]
        final = self.ablation_model(self.final_k())
        if any(m["model"] == "trained" for m in self.cfg["evaluation"]["models"]):
            out.append(f"results/train/{final}/model_card.json")
        out.append(f"results/train/{final}/loss.png")
        if self.auto_rounds():  # the rounds table the selection was made from
            out += ["results/ablation/rounds.md", "results/ablation/rounds.png"]
        return out

    # ---- the tables' options and prose
    def selection_note(self) -> str:
        """What the number of rounds was selected on, for the tables."""
        if not self.auto_rounds():
            return f"fixed in the config (evolution.rounds: {self.n_rounds()}), not selected"
        sel = self.selection()
        where = (
            "held out (not a reported benchmark)"
            if self.selection_is_held_out()
            else "a benchmark the results table reports: its numbers are selected on themselves (as in the paper)"
        )
        return (
            f"rounds: auto (cap {self.n_rounds()}): stop at the first decline of {sel['benchmark']} {sel['split']} "
            f"pass@1 ({self.eval_modes()[0]}), keep the best k; selected on {where}"
        )

    def selected_role(self) -> str:
        if not self.auto_rounds():
            return f"evolved ({self.n_rounds()} rounds)"
        sel = self.selection()
        where = "held out" if self.selection_is_held_out() else "a reported test benchmark"
        return f"evolved (best k on {sel['benchmark']} {sel['split']}, {where})"

    def held_fixed(self) -> str:
        """What the rounds ablation holds fixed across k."""
        t = self.cfg["train"]
        return (
            f"train's hyper-parameters (base model {t['base_model']}, lr {t['learning_rate']}, "
            f"{t['num_epochs']} epochs, max_steps {t['max_steps']}, global batch {t['global_batch_size']}, "
            f"length {t['model_max_length']}, seed {t['seed']}), the prompts, generation and scorer"
        )

    def table_options(self) -> str:
        """``evolcoder table`` options: reproductions matched to the published model, comparison block, and
        the chain base -> seed only -> the evolved model(s), each row paired-tested against the one before."""
        ev = self.cfg["evaluation"]
        opts = [
            f"--match {shlex.quote(m['name'])}={shlex.quote(m['reproduces'])}"
            for m in ev["models"]
            if m.get("reproduces")
        ]
        if ev.get("published_comparison"):
            opts.append("--comparison")
        baselines = self.baseline_models()
        if baselines:
            chain = list(baselines.items()) + [
                (m["name"], self.selected_role()) for m in ev["models"] if m["model"] == "trained"
            ]
            opts += [f"--chain {shlex.quote(f'{m}={role}')}" for m, role in chain]
        return " ".join(opts)
