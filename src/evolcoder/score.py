"""``evolcoder score``: score a predictions file on a benchmark, without the rest of the DAG.

Accepted predictions (JSONL, several lines per task for n samples):
- evolcoder / evalplus samples: ``{task_id, solution}`` (a complete program) or
  ``{task_id, completion}`` (appended to the task prompt, as evalplus does);
- WizardCoder's released files: ``{task_id, completion, all_code}`` (``completion`` wins);
- raw model output only: ``{task_id, raw}`` or ``{task_id, all_code}``, post-processed here as
  WizardCoder's process scripts do (``--postprocess wizardcoder``, the default) or with evalplus's
  ``sanitize`` (``--postprocess evalplus``).

Lines for tasks the dataset does not have are skipped with one warning (official evalplus does the
same) and listed in the score file (``not_in_dataset``); uneven samples per task are warned about and
listed (``uneven_samples``). A file none of whose task ids is in the dataset is an error.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from pathlib import Path

import click

from evolcoder.benchmarks import BENCHMARKS, get_benchmark, labels, parse_options, split_options
from evolcoder.benchmarks.base import Benchmark, JobContext, Sample
from evolcoder.benchmarks.postprocess import POSTPROCESS_METHODS
from evolcoder.benchmarks.verdicts import ScoreSettings, aggregate, stopped_verdict
from evolcoder.errors import EvolcoderError
from evolcoder.io import container_info, parse_json_option, sha256_file, write_json
from evolcoder.sandbox.isolation import set_dumpable
from evolcoder.sandbox.jobs import FAIL, PASS, TIMEOUT
from evolcoder.sandbox.pool import run_jobs
from evolcoder.sandbox.values import inert_text

log = logging.getLogger(__name__)

# Imported through the benchmark adapters, never run here: scoring builds no prompts (evolcoder.codehash;
# checked by the test suite).
CODE_HASH_EXCLUDES = ("evolcoder.benchmarks.prompts",)


def score_file(
    benchmark: str,
    predictions: str,
    data_path: str | None = None,
    settings: dict | ScoreSettings | None = None,
    model_name: str | None = None,
    options: dict | None = None,
    progress=None,
    postprocess: str | None = None,
) -> dict:
    """Score ``predictions``; returns the score record (see docs/ARCHITECTURE.md). ``postprocess``
    overrides the settings' (standalone use)."""
    st = settings if isinstance(settings, ScoreSettings) else ScoreSettings.from_dict(settings)
    postprocess = postprocess or st.postprocess
    if postprocess not in POSTPROCESS_METHODS:
        raise EvolcoderError(f"postprocess must be one of {', '.join(POSTPROCESS_METHODS)}, not {postprocess!r}")
    bench = get_benchmark(benchmark, **(options or {}))
    tasks = bench.load_tasks(data_path)
    report: dict = {}
    samples = bench.load_predictions(predictions, tasks, postprocess, report)
    result = score_samples(bench, samples, data_path, st, progress=progress)
    head = {
        "model": model_name or default_model_name(predictions),
        "predictions": {"path": str(predictions), "sha256": sha256_file(predictions), "postprocess": postprocess},
    }
    return {**head, **result, **report}


def score_samples(
    bench: Benchmark, samples: list[Sample], data_path: str | None, settings: ScoreSettings, progress=None
) -> dict:
    """Run every sample's tests in the sandbox; pass@k, per-task verdicts, retries.

    The benchmark adapter first prepares the run (:meth:`~Benchmark.prepare`: the samples that can be
    scored, DS-1000 dropping problems whose library the execution environment lacks; the workers'
    interpreter; reference timings) and finally adds its own fields (:meth:`~Benchmark.finalize`).

    Split by split (base, then plus for the samples that passed base): each job runs in the
    sandbox; a job the sandbox stopped (timeout, crash) gets the sandbox's verdict, one that ran to
    its end the adapter's :meth:`~Benchmark.check`, here, in the scoring process. A timed-out job is
    re-run alone, with longer limits, from the test that timed out, before it counts.
    """
    t0 = time.time()
    settings = dataclasses.replace(settings, options=bench.resolve_options(settings.options))
    all_tasks = bench.load_tasks(data_path)
    prepared = bench.prepare(samples, all_tasks, data_path, settings)
    samples = prepared.samples
    if os.geteuid() != 0:
        set_dumpable(False)  # a same-uid sandboxed program cannot read this process's memory or environ
    by_id = {str(t["task_id"]): t for t in all_tasks}
    splits = bench.splits()
    verdict: dict[tuple[int, str], dict] = {}
    retried: dict[str, list] = {}
    env_info: dict = {}

    def run(items: list[tuple[int, str, int]], factor: float, workers: int, prog=None) -> None:
        contexts = [
            JobContext(by_id[samples[si].task_id], samples[si], split, prepared.ctx, settings, factor, start)
            for si, split, start in items
        ]
        results = run_jobs(
            [bench.make_job(jc) for jc in contexts],
            python=prepared.python,
            workers=workers,
            preimport=prepared.preimport,
            isolate_network=settings.isolate_network,
            progress=prog,
            env_info=env_info if not env_info else None,
        )
        for (si, split, _), jc, r in zip(items, contexts, results, strict=True):
            ran = r.status == "ok" and r.result is not None
            v = bench.check(jc, r.result) if ran else stopped_verdict(r)
            if v.get("reason"):
                v["reason"] = inert_text(v["reason"])  # sample-controlled text: capped, printable
            verdict[(si, split)] = v

    todo = list(range(len(samples)))
    for split in splits:
        run([(si, split, 0) for si in todo], 1.0, settings.jobs, progress)
        factor = 1.0
        for attempt in range(settings.retries):
            # a CPU timeout may be the machine's fault; a stalled sample (asleep, blocked) is not re-run
            late = [
                si
                for si in todo
                if verdict[(si, split)]["status"] == TIMEOUT and verdict[(si, split)].get("cause") != "stall"
            ]
            if not late:
                break
            factor *= settings.retry_time_factor
            log.info("%s: re-running %d timed-out job(s) alone (time limits x%.2f)", bench.name, len(late), factor)
            before = {si: verdict[(si, split)].get("reason", "") for si in late}
            run([(si, split, verdict[(si, split)].get("failed") or 0) for si in late], factor, 1)
            for si in late:
                s = samples[si]
                retried.setdefault(s.task_id, []).append(
                    {
                        "sample_idx": s.sample_idx,
                        "split": split,
                        "attempt": attempt + 1,
                        "timed_out": before[si],
                        "status": verdict[(si, split)]["status"],
                    }
                )
        todo = [si for si in todo if verdict[(si, split)]["status"] == PASS]
    keys = [(si, split) for si in range(len(samples)) for split in splits]
    verdicts = [verdict.get(k) or {"status": FAIL, "reason": "base tests failed", "skipped": True} for k in keys]
    out = aggregate(
        bench,
        samples,
        keys,
        verdicts,
        retried,
        settings=settings,
        prepared=prepared,
        data_path=data_path,
        all_tasks=all_tasks,
        elapsed=time.time() - t0,
    )
    if env_info.get("isolation", {}).get("missing"):
        log.warning(
            "sandbox (%s): missing protections: %s",
            env_info["isolation"]["mode"],
            "; ".join(env_info["isolation"]["missing"]),
        )
    out["execution_env"] = env_info
    out["container"] = container_info()
    return bench.finalize(out, prepared)


def default_model_name(predictions: str) -> str:
    """File name without .jsonl/.gz/.raw: ``wizardcoder-15b-v1.0_humaneval_greedy``."""
    name = Path(predictions).name
    for suffix in (".gz", ".jsonl", ".json", ".raw"):
        name = name[: -len(suffix)] if name.endswith(suffix) else name
    return name


def summary_line(res: dict) -> str:
    def fmt(d: dict) -> str:
        return ", ".join(f"{k} = {v:.1f}" for k, v in d.items() if k.startswith("pass@"))

    names = res.get("labels") or labels(res["benchmark"])
    parts = [f"{names['base']}: {fmt(res['base'])}"]
    if "plus" in res:
        parts.append(f"{names.get('plus', names['base'] + '+')}: {fmt(res['plus'])}")
    skipped = res.get("skipped")
    extra = f"; {len(skipped)} skipped" if skipped else ""
    causes = res.get("failure_causes") or {}
    if causes:
        extra += "; failed for " + ", ".join(f"{c}: {len(ids)}" for c, ids in causes.items())
    missing = (res.get("not_in_dataset") or {}).get("count")
    if missing:
        extra += f"; {missing} task id(s) not in the dataset skipped"
    if res.get("uneven_samples"):
        u = res["uneven_samples"]
        extra += f"; uneven n ({u['min']}..{u['max']})"
    retried = res.get("retried") or []
    ds = res.get("dataset", {})
    return (
        " | ".join(parts) + f"  ({res['n_tasks']} tasks, n={res['n_samples_per_task']}, "
        f"{ds.get('version', '?')}, {res['evaluator']['semantics']}, "
        f"{len(retried)} retried{extra})"
    )


@click.command(help="Score predictions on a benchmark: pass@k (base and plus), per-task verdicts.")
@click.option("--benchmark", required=True, type=click.Choice(list(BENCHMARKS)))
@click.option(
    "--predictions",
    required=True,
    type=click.Path(dir_okay=False),
    help="JSONL: {task_id, solution|completion|all_code|raw}, one line per sample.",
)
@click.option("--out", required=True, help="Score file (JSON) to write.")
@click.option("--data", "data_path", default=None, help="Dataset file (default: evalplus download).")
@click.option(
    "--settings-json",
    "settings_json",
    default=None,
    help="Score settings, flat (JSON or file): evaluation.execution's keys (timeout_s, memory_mb, semantics, "
    "retries, ...), postprocess, options (the benchmark's own), ks.",
)
@click.option("--model-name", default=None, help="Model name shown in the results table.")
@click.option("--timings", default=None, help="Reference timings file (read; written when missing).")
@click.option(
    "--jobs", type=int, default=None, help="Parallel sandbox workers (the workflow's threads; changes no verdict)."
)
@click.option(
    "--option",
    "options",
    multiple=True,
    help="A file the benchmark takes (NAME=PATH; e.g. mbpp: prompts_file=...) or one of its own options "
    "(NAME=VALUE, YAML; e.g. ds1000: python=/path/to/python). Repeatable.",
)
@click.option(
    "--postprocess",
    type=click.Choice(list(POSTPROCESS_METHODS)),
    default=None,
    help="Raw outputs (raw, all_code): WizardCoder's process scripts or evalplus's sanitize; overrides the "
    "settings' postprocess (standalone use; the workflow passes it in the settings).",
)
def cli(
    benchmark: str,
    predictions: str,
    out: str,
    data_path: str | None,
    settings_json: str | None,
    model_name: str | None,
    timings: str | None,
    jobs: int | None,
    options: tuple[str, ...],
    postprocess: str | None,
) -> None:
    settings = parse_json_option(settings_json, "settings-json")
    files, values = split_options(benchmark, parse_options(options))
    if values:
        settings["options"] = {**(settings.get("options") or {}), **values}
    if timings:
        settings["timings"] = timings
    if jobs:
        settings["jobs"] = jobs
    res = score_file(benchmark, predictions, data_path, settings, model_name, files, postprocess=postprocess)
    write_json(out, res)
    click.echo(summary_line(res))
    sys.stdout.flush()
