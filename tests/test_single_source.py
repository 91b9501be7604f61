"""One place for each piece of knowledge: schema defaults, the benchmark registry, stage code hashes.

Each test fails when a second copy of a fact comes back (a literal default in a settings class that
disagrees with the schema, a benchmark list written by hand, a rule naming files for its code hash).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import jsonschema
import pytest
import yaml

from conftest import REPO, shared_data_dir
from workflow_utils import copy_workflow, planned_jobs, snakemake

SRC = REPO / "src" / "evolcoder"


def _settings_classes():
    """(class, section, keys of the section the class does not hold) of every stage's settings: a class
    reading several sections (score: evaluation.execution, postprocess, sampling.ks) is listed for each."""
    from evolcoder.benchmarks.verdicts import ScoreSettings
    from evolcoder.config import section
    from evolcoder.evolve.backends import BackendSettings
    from evolcoder.evolve.eliminate import EliminationSettings
    from evolcoder.evolve.engine import EvolutionSettings, JudgeSettings
    from evolcoder.generate import GatherSettings, GenSettings
    from evolcoder.hub import DatasetCardSettings
    from evolcoder.merge import DecontaminateSettings, MergeSettings
    from evolcoder.train.settings import TOKENIZE_KEYS, LoraSettings, TokenizeSettings, TrainSettings

    def only(sec: str, keys) -> tuple[str, set]:
        return sec, set(section(sec)["properties"]) - set(keys)

    return [
        (ScoreSettings, "evaluation.execution", set()),
        (ScoreSettings, *only("evaluation", ["postprocess"])),
        (ScoreSettings, *only("evaluation.sampling", ["ks"])),
        (BackendSettings, "evolution.backend", set()),
        (EliminationSettings, "evolution.elimination", set()),
        (JudgeSettings, "evolution.judge", set()),
        (EvolutionSettings, "evolution", {"max_rounds", "selection"}),  # the workflow's round selection
        (MergeSettings, "merge", set()),
        (DecontaminateSettings, "merge.decontaminate", set()),
        (TokenizeSettings, *only("train", TOKENIZE_KEYS)),
        (TrainSettings, "train", {"model_name", "resources"}),
        (LoraSettings, "train.lora", set()),
        (GenSettings, *only("evaluation", ["limit", "prompt_template", "backend", "dtype"])),
        (GenSettings, "evaluation.sampling", {"enabled", "ks"}),
        (GatherSettings, *only("evaluation", ["postprocess"])),
        (DatasetCardSettings, *only("hub", ["license", "pretty_name", "shard_rows"])),
    ]


def test_every_schema_default_is_what_the_stage_uses():
    from evolcoder.config import defaults
    from evolcoder.hub import ModelCardSettings

    for cls, section, _ in _settings_classes():
        made = cls()
        for key, value in defaults(section).items():
            if (cls.__name__, key) == ("GenSettings", "n"):
                continue  # the settings default to greedy mode (n = 1); sampled mode takes n from the section
            if key in cls.known_keys():
                got = getattr(made, key)
                if hasattr(got, "to_dict"):  # a nested section: its own defaults are checked as a section
                    got = {k: v for k, v in got.to_dict().items() if k in value}
                assert got == value, f"{cls.__name__}.{key} = {got!r}, schema {section}.{key} default {value!r}"
    hub = defaults("hub")  # the model card's keys are named for the hub section
    assert (ModelCardSettings().license, ModelCardSettings().dataset_ref) == (
        hub["model_license"],
        hub["dataset_repo_id"],
    )


# JSON Schema keywords the schema file uses: anything else under a property is YAML splitting a flow mapping
# at a comma of an unquoted description (its tail becomes a stray key and the description is cut)
SCHEMA_KEYWORDS = {
    "$ref", "additionalProperties", "anyOf", "const", "default", "description", "enum", "exclusiveMinimum", "items",
    "maxItems", "maximum", "minItems", "minLength", "minimum", "oneOf", "pattern", "properties", "required", "type",
    "uniqueItems",
}  # fmt: skip


def test_every_schema_property_has_only_schema_keywords():
    schema = yaml.safe_load((REPO / "src/evolcoder/data/config.schema.yaml").read_text())
    stray = []

    def walk(node, path):
        for name, prop in (node.get("properties") or {}).items():
            stray.extend(f"{'.'.join([*path, name])}: {k!r}" for k in set(prop) - SCHEMA_KEYWORDS)
            walk(prop, [*path, name])
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                walk(node[key], [*path, key])

    walk(schema, [])
    for name, d in schema.get("$defs", {}).items():
        walk(d, ["$defs", name])
    assert not stray, "quote these descriptions: " + "; ".join(sorted(stray))


def test_every_schema_key_of_a_section_is_a_settings_field():
    from evolcoder.config import section

    for cls, sec, stripped in _settings_classes():
        keys = set(section(sec).get("properties", {})) - stripped
        assert keys <= cls.known_keys(), f"{sec}: {sorted(keys - cls.known_keys())} not in {cls.__name__}"


def test_settings_reject_unknown_keys_naming_them():
    from evolcoder.errors import EvolcoderError

    for cls, _, _ in _settings_classes():
        with pytest.raises(EvolcoderError, match=r"unknown key\(s\) no_such_key"):
            cls.from_dict({"no_such_key": 1})


def test_the_schema_benchmark_lists_are_the_registry():
    from evolcoder.benchmarks import BENCHMARKS
    from evolcoder.config import schema

    raw = (SRC / "data" / "config.schema.yaml").read_text()
    assert not re.search(r"enum: \[humaneval", raw), "a hand-written benchmark list in the schema"
    s = schema(list(BENCHMARKS))
    assert s["$defs"]["benchmark"]["enum"] == list(BENCHMARKS)
    refs = re.findall(r'\$ref: "#/\$defs/benchmark"', raw)
    assert len(refs) >= 3  # merge.decontaminate.benchmarks, evaluation.benchmarks, external_predictions


def test_no_module_names_benchmarks_by_hand():
    """Outside the adapters and the registry, no code lists the benchmarks or their data keys, asks
    for one by name (``name == "humaneval"``, ``click.Choice(["humaneval", ...])``), or keeps a
    benchmark's settings or flags among the generic ones (``ds1000_*`` keys, ``--ds1000-python``)."""
    bench = r"(humaneval|mbpp|mbpp-original|ds1000)"
    names = re.compile(
        r'"(humaneval_plus|mbpp_plus|mbpp_original|mbpp_plus_prompts)"|'
        r'"humaneval", "mbpp"|humaneval\|mbpp|'
        rf'[=!]= "{bench}"|"{bench}" (not )?in |Choice\(\["{bench}"|'
        r"ds1000_(python|timeout_s|preimport)|--ds1000"
    )
    adapters = ("__init__.py", "evalplus_bench.py", "mbpp_original.py", "ds1000.py")
    # evalplus's own oracles, keyed by evalplus's dataset names (as evalplus's code is)
    allowed = {SRC / "benchmarks" / f for f in (*adapters, "harness.py")}
    files = [*SRC.rglob("*.py"), SRC / "data" / "config.schema.yaml", REPO / "Snakefile", *REPO.glob("rules/*.smk")]
    offenders = [
        f"{p.relative_to(REPO)}: {m.group(0)}"
        for p in files
        if p not in allowed
        for m in [names.search(p.read_text())]
        if m
    ]
    assert offenders == []


def test_a_benchmark_needs_no_template_file_and_names_its_options():
    """Each template is one generic text (``templates/eval/<t>/template.txt``); an adapter's special
    prompts are its own ``prompts``; its options are a block of the schema filled in from the registry;
    the timings command's choices are the registry's ``needs_timings`` adapters."""
    from evolcoder.benchmarks import BENCHMARKS, adapter_class, describe
    from evolcoder.benchmarks.prompts import prompt_template, template_names
    from evolcoder.benchmarks.timings import cli as timings_cli
    from evolcoder.config import schema

    per_benchmark = [p for p in (SRC / "templates" / "eval").rglob("*.txt") if p.name != "template.txt"]
    assert per_benchmark == [], "a template file of one benchmark: put it in the adapter's `prompts`"
    for name in BENCHMARKS:
        assert set(adapter_class(name).prompts) <= set(template_names()), name
        for t in template_names():
            assert "{problem}" in prompt_template(t, name).text
    block = schema(describe())["properties"]["evaluation"]["properties"]["benchmark_options"]["properties"]
    assert set(block) == {n for n in BENCHMARKS if adapter_class(n).options}
    assert block["ds1000"]["properties"]["python"]["default"] is None
    options = schema(describe())["properties"]["evaluation"]["properties"]["benchmark_options"]
    err = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(options).iter_errors({"ds1000": {"pyhton": "/usr/bin/python3"}})
    )
    assert list(err.absolute_path) == ["ds1000"] and "pyhton" in err.message  # an undeclared option
    choice = next(p for p in timings_cli.params if p.name == "benchmark").type.choices
    assert list(choice) == [n for n in BENCHMARKS if adapter_class(n).needs_timings]


def test_rules_name_commands_not_files_for_their_code_hash():
    from evolcoder.cli import COMMANDS

    for smk in [REPO / "Snakefile", *REPO.glob("rules/*.smk")]:
        for arg in re.findall(r"code_version\(([^)]*)\)", smk.read_text()):
            if arg.strip() == "command":
                continue  # the helper's own definition
            assert arg.strip().strip('"') in COMMANDS, f"{smk.name}: code_version({arg})"


def test_every_rule_is_a_call_of_an_evolcoder_command():
    for smk in REPO.glob("rules/*.smk"):
        text = smk.read_text()
        for rule, body in re.findall(r"^rule (\w+):\n(.*?)(?=^rule |\Z)", text, re.S | re.M):
            shell = re.search(r"shell:\s*\n\s*(?:#.*\n\s*)*\"([^\"]*)", body)
            if shell:
                assert shell.group(1).startswith("evolcoder "), f"rule {rule}: {shell.group(1)[:60]}"
                assert 'code_version("' in body, f"rule {rule} has no code hash"


def test_code_hash_follows_imports_lazy_ones_and_package_data():
    from evolcoder.codehash import stage_files

    rel = lambda c: {p.relative_to(SRC).as_posix() for p in stage_files(SRC, c)}  # noqa: E731
    score, gen, evolve, table = rel("score"), rel("generate"), rel("evolve"), rel("table")
    assert {
        "sandbox/child.py",
        "sandbox/pool.py",
        "sandbox/worker.py",
        "sandbox/values.py",
        "benchmarks/timings.py",
        "io.py",
        "passk.py",
    } <= score
    assert "templates/eval/wizardcoder/template.txt" in gen and "models.py" in gen
    assert not {"sandbox/child.py", "sandbox/pool.py", "sandbox/isolation.py"} & gen  # generation runs no code
    assert "templates/evol/add_constraints.txt" in evolve and "models.py" in evolve
    assert not any(p.startswith(("benchmarks/", "sandbox/", "train/")) for p in evolve)
    assert "data/published.yaml" in table and "data/config.schema.yaml" not in table


def test_code_hash_cache_holds_while_the_files_stats_hold(tmp_path):
    """A dry run reads no source while nothing changed (the stat-keyed cache of rules/common.smk); an edit,
    a new template in a data folder or a fresh copy of the tree is hashed again, to the same value as uncached."""
    from evolcoder import codehash

    root = tmp_path / "evolcoder"
    shutil.copytree(SRC, root, ignore=shutil.ignore_patterns("__pycache__"))
    cache_file = tmp_path / "cache.json"
    cache = codehash.load_cache(cache_file)
    first = codehash.stage_hash(root, "evolve", cache)
    codehash.save_cache(cache_file, cache)
    cache = codehash.load_cache(cache_file)
    assert cache and codehash.stage_hash(root, "evolve", cache) == first == codehash.stage_hash(root, "evolve")

    (root / "models.py").write_text((root / "models.py").read_text() + "\n# edited\n")
    edited = codehash.stage_hash(root, "evolve", cache)
    assert edited != first and edited == codehash.stage_hash(root, "evolve")
    (root / "templates" / "evol" / "new_method.txt").write_text("{instruction}\n")
    assert codehash.stage_hash(root, "evolve", cache) not in (first, edited)
    assert codehash.load_cache(tmp_path / "missing.json") == {}


def test_adding_a_benchmark_is_one_adapter_file_and_one_registry_line(tmp_path):
    """The test suite's own tiny benchmark (one file, no template file), added to a copy of the workflow
    exactly as docs/ARCHITECTURE.md says, is validated by the config (its data key and its options
    block), planned by the DAG, generated with a real model (SmolLM2-135M, 3 tasks), gathered and
    scored through the workflow's commands, its reference predictions scored for real, and shown in
    the table under its own label."""
    wd = copy_workflow(tmp_path / "wf", None)
    bench_dir = wd / "src" / "evolcoder" / "benchmarks"
    shutil.copy(REPO / "tests" / "extra_benchmark" / "tinyadd.py", bench_dir / "tinyadd.py")
    reg = bench_dir / "__init__.py"
    text = reg.read_text()
    line = '    "ds1000": "evolcoder.benchmarks.ds1000:DS1000",\n'
    assert line in text
    reg.write_text(text.replace(line, line + '    "tiny-add": "evolcoder.benchmarks.tinyadd:TinyAdd",\n'))

    data = tmp_path / "tiny.jsonl"
    tasks = [
        {
            "task_id": f"T/{i}",
            "prompt": f"def add{i}(a, b):\n",
            "entry_point": f"add{i}",
            "test_list": [f"assert add{i}(1, 2) == 3", f"assert add{i}(-1, {i}) == {i - 1}"],
        }
        for i in range(3)
    ]
    data.write_text("".join(json.dumps(t) + "\n" for t in tasks))
    pred = tmp_path / "pred.jsonl"
    sols = ["    return a + b\n", "    return a - b\n", "    return b + a\n"]
    pred.write_text(
        "".join(json.dumps({"task_id": t["task_id"], "completion": s}) + "\n" for t, s in zip(tasks, sols, strict=True))
    )
    overlay = {
        "data": {"tiny_add": str(data)},
        "evaluation": {
            "models": [{"name": "smol", "model": "smollm2-135m-instruct"}],
            "benchmarks": ["humaneval", "tiny-add"],
            "greedy": {"max_new_tokens": 8, "batch_size": 3},
            "benchmark_options": {"tiny-add": {"timeout_s": 3}},
            "external_predictions": [{"name": "reference", "benchmark": "tiny-add", "path": str(pred)}],
        },
    }
    (wd / "tiny-add.yaml").write_text(yaml.safe_dump(overlay))
    cfgs = ("tests/configs/tiny.yaml", "tiny-add.yaml")
    env = {"PYTHONPATH": str(wd / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}

    jobs = planned_jobs(wd, configfiles=cfgs, env=env)
    assert jobs.get("generate") == 2 and jobs.get("score") == 3, jobs  # humaneval + tiny-add, + the external one
    assert "timings" in jobs  # for humaneval only: the tiny adapter needs none
    ours, ref = "results/scores/smol/tiny-add/greedy.json", "results/scores/reference/tiny-add/greedy.json"
    snakemake(wd, ours, ref, configfiles=cfgs, env=env)
    raw = [json.loads(x) for x in (wd / "results/predictions/smol/tiny-add/greedy.shards/0.raw.jsonl").open()]
    assert [r["task_id"] for r in raw] == ["T/0", "T/1", "T/2"]
    assert raw[0]["prompt"].startswith("Below is an instruction") and "def add0(a, b):" in raw[0]["prompt"]
    gathered = [json.loads(x) for x in (wd / "results/predictions/smol/tiny-add/greedy.jsonl").open()]
    assert [g["solution"].startswith("def add") for g in gathered] == [True] * 3
    res = json.loads((wd / ours).read_text())
    assert res["benchmark"] == "tiny-add" and res["n_tasks"] == 3 and res["dataset"]["version"] == "tiny-3"
    assert res["evaluator"]["time_limit_policy"].startswith("10s per program")  # the generic policy
    res = json.loads((wd / ref).read_text())
    assert res["labels"] == {"base": "TinyAdd"} and res["n_tasks"] == 3
    assert [e["base"][0] for e in res["per_task"].values()] == ["pass", "fail", "pass"]
    table = tmp_path / "table"
    proc = __import__("subprocess").run(
        [__import__("sys").executable, "-m", "evolcoder.cli", "table", "--out-dir", str(table), str(wd / ref)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "| reference | TinyAdd |" in (table / "scores.md").read_text()

    # a data key no adapter reads is a one-line config error (an option it does not declare: the test above)
    (wd / "typo.yaml").write_text("data:\n  tiny_ad: x.jsonl\n")
    bad = snakemake(wd, "-n", configfiles=(*cfgs, "typo.yaml"), env=env, check=False)
    assert bad.returncode != 0 and "config error at 'data.tiny_ad': no registered benchmark reads it" in bad.stderr


# ----------------------------------------------------------------------------- declared exclusions


def _excluded_files(modules: tuple[str, ...]) -> set[str]:
    out = set()
    for m in modules:
        base = SRC.joinpath(*m.split(".")[1:])
        if base.is_dir():
            out |= {str(p.resolve()) for p in base.rglob("*.py")}
        elif base.with_suffix(".py").exists():
            out.add(str(base.with_suffix(".py").resolve()))
    return out


def _functions_run_in(modules: tuple[str, ...], fn) -> set[str]:
    """``module file:function`` of each function of ``modules`` that ran while ``fn`` ran (in this
    process and its threads), every module imported beforehand so that module bodies do not count."""
    import importlib
    import sys
    import threading

    for p in SRC.rglob("*.py"):
        name = "evolcoder." + ".".join(p.relative_to(SRC).with_suffix("").parts)
        name = name.removesuffix(".__init__")
        if name.split(".")[-1] not in ("__main__", "worker"):
            with __import__("contextlib").suppress(Exception):
                importlib.import_module(name)
    files = _excluded_files(modules)
    hits: set[str] = set()

    def prof(frame, event, arg):
        if event == "call" and frame.f_code.co_filename in files:
            hits.add(f"{Path(frame.f_code.co_filename).relative_to(SRC.resolve())}:{frame.f_code.co_name}")

    sys.setprofile(prof)
    threading.setprofile(prof)
    try:
        fn()
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
    return hits


needs_data = pytest.mark.skipif(not shared_data_dir().exists(), reason="shared data not available")


def _data() -> dict:
    d = shared_data_dir()
    return {
        "humaneval_plus": str(d / "evalplus/HumanEvalPlus-v0.1.10.jsonl.gz"),
        "mbpp_plus": str(d / "evalplus/MbppPlus-v0.2.0.jsonl.gz"),
        "mbpp_original": str(d / "mbpp/mbpp.test.jsonl"),
        "mbpp_plus_prompts": str(d / "mbpp/wizardcoder_mbppplus_prompts.json"),
        "ds1000": str(d / "ds1000/ds1000.jsonl.gz"),
    }


@needs_data
def test_generation_runs_none_of_what_its_code_hash_leaves_out(tmp_path):
    from evolcoder import generate
    from evolcoder.benchmarks import BENCHMARKS, adapter_class

    class Canned:
        def generate(self, prompts, stops, seed):
            return ["```python\ndef f():\n    return 1\n```"] * len(prompts)

    data = _data()

    def run():
        for name in BENCHMARKS:
            klass = adapter_class(name)
            opts = {o: data[k] for o, k in klass.data_options.items()}
            raw = tmp_path / f"{name}.raw.jsonl"
            generate.run_generation(
                "unused",
                name,
                str(raw),
                generate.GenSettings.from_dict({"limit": 2}),
                data[klass.data_key],
                backend=Canned(),
                options=opts,
            )
            generate.gather(name, [str(raw)], str(tmp_path / f"{name}.jsonl"), data[klass.data_key], opts)

    assert _functions_run_in(generate.CODE_HASH_EXCLUDES, run) == set()


@needs_data
def test_merge_runs_none_of_what_its_code_hash_leaves_out():
    from evolcoder import merge
    from evolcoder.benchmarks import BENCHMARKS

    seed = [{"id": f"s{i}", "instruction": f"Sort {i} numbers.", "input": "", "output": "sorted(x)"} for i in range(3)]
    settings = {
        "dedup": True,
        "shuffle_seed": 1,
        "decontaminate": {"enabled": True, "ngram": 13, "benchmarks": list(BENCHMARKS)},
    }
    out = {}

    def run():
        out["stats"] = merge.merge(seed, [], settings, _data())[1]

    assert _functions_run_in(merge.CODE_HASH_EXCLUDES, run) == set()
    assert _functions_run_in(("evolcoder.benchmarks.base",), run)  # the tracer sees what merge does run
    assert out["stats"]["decontaminated"] and out["stats"]["decontamination_skipped"] == []


@needs_data
def test_scoring_and_timings_run_none_of_what_their_code_hashes_leave_out(tmp_path):
    from evolcoder import score
    from evolcoder.benchmarks import get_benchmark
    from evolcoder.benchmarks import timings as tm
    from evolcoder.benchmarks.verdicts import ScoreSettings

    from conftest import test_timings

    assert score.CODE_HASH_EXCLUDES == tm.CODE_HASH_EXCLUDES == ("evolcoder.benchmarks.prompts",)
    he = shared_data_dir() / "evalplus/HumanEvalPlus-v0.1.10.jsonl.gz"
    tasks = get_benchmark("humaneval").load_tasks(str(he))[:2]
    pred = tmp_path / "p.jsonl"
    pred.write_text(
        "".join(
            json.dumps({"task_id": t["task_id"], "solution": t["prompt"] + t["canonical_solution"]}) + "\n"
            for t in tasks
        )
    )

    def run():
        tm.compute(get_benchmark("humaneval"), tasks, ScoreSettings(jobs=1, reference_repeats=1))
        res = score.score_file(
            "humaneval",
            str(pred),
            str(he),
            {"jobs": 1, "timings": test_timings("humaneval", he), "reference_repeats": 1},
        )
        assert res["base"]["pass@1"] == 100.0

    assert _functions_run_in(score.CODE_HASH_EXCLUDES, run) == set()
