"""evolcoder.workflow.settings_for: each stage's settings, flat, read by that stage's Settings class; each
value reaches a command by one road; a config key reaches only the stages that read it. Pure Python."""

from __future__ import annotations

import copy
import json
import re

import pytest
import yaml

from evolcoder.workflow import STAGES, Plan, check_data_keys, settings_for, validate_config

from conftest import REPO


def _classes():
    from evolcoder.benchmarks.verdicts import ScoreSettings
    from evolcoder.evolve.engine import EvolutionSettings
    from evolcoder.generate import GatherSettings, GenSettings
    from evolcoder.hub import DatasetCardSettings, ModelCardSettings
    from evolcoder.merge import MergeSettings
    from evolcoder.train.settings import TokenizeSettings, TrainSettings

    return {
        "evolve": EvolutionSettings,
        "merge": MergeSettings,
        "tokenize": TokenizeSettings,
        "train": TrainSettings,
        "generate": GenSettings,
        "gather": GatherSettings,
        "timings": ScoreSettings,
        "score": ScoreSettings,
        "export-data": DatasetCardSettings,
        "model-card": ModelCardSettings,
    }


def _benchmarks() -> dict[str, dict]:
    from evolcoder.benchmarks import describe

    return describe()


# the keys the schema requires, and nothing else: every other value is the schema's default
MINIMAL = {
    "data": {},
    "seed": {"source": "builtin"},
    "evolution": {"rounds": 2, "methods": "code", "backend": {"kind": "local", "model": "smollm2-135m-instruct"}},
    "merge": {},
    "train": {
        "model_name": "m",
        "base_model": "smollm2-135m-instruct",
        "model_max_length": 256,
        "global_batch_size": 4,
        "micro_batch_size": 2,
        "learning_rate": 1e-4,
    },
    "evaluation": {"models": [{"name": "m", "model": "trained"}], "benchmarks": ["humaneval"]},
    "containers": {"cpu": "docker://c", "gpu": "docker://g", "sandbox": "docker://s"},
}
WILDCARDS = {"mode": "greedy", "model": "m", "benchmark": "humaneval", "k": "1", "shard": "0"}


def _config(**over) -> dict:
    cfg = copy.deepcopy(MINIMAL)
    for path, value in over.items():
        *head, last = path.split("__")
        node = cfg
        for part in head:
            node = node.setdefault(part, {})
        node[last] = value
    validate_config(cfg, _benchmarks())
    return cfg


def _repo_config() -> dict:
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    validate_config(cfg, _benchmarks())
    return cfg


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("mode", ["greedy", "sampled"])
def test_each_stage_reads_its_settings_with_its_class(stage, mode):
    for cfg in (_config(), _repo_config()):
        got = settings_for(stage, cfg, {**WILDCARDS, "mode": mode})
        assert json.loads(json.dumps(got)) == got  # one JSON argument
        cls = _classes()[stage]
        assert set(got) <= cls.known_keys(), sorted(set(got) - cls.known_keys())
        s = cls.from_dict(got)
        for key, value in got.items():  # nothing is dropped on the way
            made = getattr(s, key)
            made = made.to_dict() if hasattr(made, "to_dict") else made
            if isinstance(value, dict) and isinstance(made, dict):
                assert {k: made[k] for k in value} == value, key
            elif (stage, key, mode) != ("generate", "temperature", "greedy"):
                assert made == value, (stage, key)


@pytest.mark.parametrize("stage", STAGES)
def test_a_class_default_is_the_schema_default(stage):
    """What a stage gets from a config that sets only the required keys (the rest: the schema's defaults
    filled in by the validation) is what its Settings class holds by default."""
    cfg = _config()
    given = copy.deepcopy(MINIMAL)
    sections = {"evolve": "evolution", "train": "train", "tokenize": "train", "merge": "merge"}
    explicit = given.get(sections.get(stage, ""), {})
    got = settings_for(stage, cfg, WILDCARDS)
    made = _classes()[stage]()

    def same(value, default, given):
        if isinstance(value, dict) and isinstance(default, dict):
            for k, v in value.items():
                if k in default:
                    same(v, default[k], (given or {}).get(k) if isinstance(given, dict) else None)
        elif given is None:
            assert value == default

    for key, value in got.items():
        if key in ("seed_source", "evolver_model", "evolver_backend", "rounds", "commands", "mode"):
            continue  # not config defaults: facts of the run the card or the job states
        default = getattr(made, key)
        default = default.to_dict() if hasattr(default, "to_dict") else default
        same(value, default, explicit.get(key))


def test_the_stages_settings_hold_exactly_their_keys():
    cfg = _config(evaluation__sampling={"enabled": True})
    ev = cfg["evaluation"]
    evolve = settings_for("evolve", cfg)
    assert not {"rounds", "max_rounds", "selection"} & set(evolve) and evolve["backend"] == cfg["evolution"]["backend"]
    assert set(settings_for("train", cfg)) == set(cfg["train"]) - {"model_name", "resources"}
    from evolcoder.train.settings import TOKENIZE_KEYS

    assert tuple(settings_for("tokenize", cfg)) == TOKENIZE_KEYS
    assert settings_for("merge", cfg) == cfg["merge"] and cfg["merge"]["decontaminate"]["enabled"] is True

    greedy = settings_for("generate", cfg, {"mode": "greedy"})
    assert greedy == {
        "mode": "greedy",
        **{k: ev[k] for k in ("limit", "prompt_template", "backend", "dtype")},
        **{k: ev["greedy"][k] for k in ("max_new_tokens", "batch_size")},
    }
    sampled = settings_for("generate", cfg, {"mode": "sampled"})
    assert sampled["n"] == ev["sampling"]["n"] and "ks" not in sampled and "enabled" not in sampled

    score = settings_for("score", cfg, {"mode": "greedy", "benchmark": "humaneval"})
    execution = {k: v for k, v in ev["execution"].items() if k != "jobs"}
    assert score == {**execution, "postprocess": ev["postprocess"], "options": {}}
    assert settings_for("score", cfg, {"mode": "sampled", "benchmark": "humaneval"}) == {
        **score,
        "ks": ev["sampling"]["ks"],
    }
    ds = _config(evaluation__benchmark_options={"ds1000": {"timeout_s": 90}})
    assert settings_for("score", ds, {"mode": "greedy", "benchmark": "ds1000"})["options"]["timeout_s"] == 90
    assert settings_for("score", ds, {"mode": "greedy", "benchmark": "humaneval"})["options"] == {}
    assert settings_for("gather", cfg) == {"postprocess": ev["postprocess"]}
    assert settings_for("timings", cfg) == {"reference_repeats": ev["execution"]["reference_repeats"]}

    chat = _config(evaluation__prompt_template="chat", train__system_prompt="Be brief.")
    assert settings_for("generate", chat, {"mode": "greedy"})["system_prompt"] == "Be brief."
    with pytest.raises(KeyError, match="no settings for stage 'nope'"):
        settings_for("nope", cfg)


@pytest.mark.parametrize(
    ("edit", "changed"),
    [
        ({"train__learning_rate": 1.0}, {"train"}),
        ({"train__model_max_length": 128}, {"train", "tokenize"}),
        ({"train__model_name": "other"}, set()),
        ({"train__resources": {"gpus": 8}}, set()),
        ({"evaluation__limit": 2}, {"generate"}),
        ({"evaluation__postprocess": "evalplus"}, {"gather", "score"}),
        ({"evaluation__execution": {"jobs": 16}}, set()),
        ({"evaluation__execution": {"timeout_s": 5.0}}, {"score"}),
        ({"evaluation__execution": {"reference_repeats": 5}}, {"score", "timings"}),
        ({"evaluation__sampling": {"ks": [1, 5]}}, set()),  # greedy jobs: pass@1 only
        ({"evolution__max_rounds": 9}, set()),
        ({"evolution__evolve_params": {"temperature": 1.0}}, {"evolve"}),
        ({"merge__decontaminate": {"ngram": 10}}, {"merge"}),
        ({"hub__shard_rows": 10}, {"export-data"}),
        ({"evaluation__benchmark_options": {"ds1000": {"timeout_s": 90}}}, set()),  # another benchmark's
        ({"hub__model_license": "mit"}, {"model-card"}),
    ],
)
def test_a_config_edit_reaches_only_the_stages_that_read_it(edit, changed):
    before, after = _config(), _config(**edit)
    differ = {s for s in STAGES if settings_for(s, before, WILDCARDS) != settings_for(s, after, WILDCARDS)}
    assert differ == changed


def test_no_value_reaches_a_command_by_two_roads():
    """A rule passes each value once: no command-line flag of a rule names a key of its settings."""
    cfg = _config(evaluation__sampling={"enabled": True})
    for smk in REPO.glob("rules/*.smk"):
        for rule, body in re.findall(
            r"^(?:rule|checkpoint) (\w+):\n(.*?)(?=^(?:rule|checkpoint) |\Z)", smk.read_text(), re.S | re.M
        ):
            shell = "".join(re.findall(r'"([^"]*)"', body.split("shell:", 1)[-1]))
            command = re.match(r"evolcoder ([\w-]+)", shell)
            if not command or command.group(1) not in STAGES or "--settings-json" not in shell:
                continue
            keys = set(settings_for(command.group(1), cfg, {**WILDCARDS, "mode": "sampled"}))
            flags = {f.replace("-", "_") for f in re.findall(r"--([\w-]+)", shell)}
            assert not keys & flags, f"rule {rule}: {sorted(keys & flags)} both a flag and a setting"


def test_validation_fills_defaults_and_names_the_key():
    from evolcoder.workflow import ConfigError

    cfg = _config(train__lora={"r": 8})
    assert cfg["train"]["lora"] == {"r": 8, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}
    assert _config()["train"]["lora"] is None  # null stays null: no defaults filled into it
    assert cfg["evolution"]["evolve_params"] is not _config()["evolution"]["evolve_params"]
    bad = copy.deepcopy(MINIMAL)
    bad["evaluation"]["greedy"] = {"max_new_tokens": 0}
    with pytest.raises(ConfigError, match=r"config error at 'evaluation.greedy.max_new_tokens': 0 is less than"):
        validate_config(bad, _benchmarks())
    typo = _config(data={"humaneval_plsu": "x"})
    from evolcoder.benchmarks import describe

    with pytest.raises(ConfigError, match=r"config error at 'data.humaneval_plsu': no registered benchmark reads it"):
        check_data_keys(typo, describe())


def test_plan_names_the_rounds_ablation_and_the_selection():
    fixed = Plan(_config(evaluation__baselines=["base", "seed_only"]), {})
    assert fixed.ablation_model(2) == "m" and fixed.ablation_model(0) == "m-k0" and fixed.merged_dir(1).endswith("_1")
    assert fixed.table_models() == ["m", "m-untuned", "m-k0"]
    assert fixed.selection_note() == "fixed in the config (evolution.rounds: 2), not selected"
    assert "--chain 'm-untuned=base model (untuned)'" in fixed.table_options()
    assert fixed.final_output()[-1] == "results/train/m/loss.png"

    auto = Plan(_config(evolution__rounds="auto", evolution__max_rounds=3), {}, selected=lambda: (3, 2))
    assert auto.ablation_model(3) == "m-k3" and auto.checkpoint("m") == "results/train/m-k2/model"
    assert auto.table_name("m-k2") == "m" and auto.rounds_run() == 3
    assert auto.selection_inputs(2) == {
        "previous": "results/scores/m-k1/humaneval/greedy.json",
        "current": "results/scores/m-k2/humaneval/greedy.json",
    }
    assert "rounds: auto (cap 3)" in auto.selection_note() and "selected on themselves" in auto.selection_note()
    assert "results/ablation/rounds.md" in auto.final_output()
