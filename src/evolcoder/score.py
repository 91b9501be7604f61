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

import logging
import sys
from pathlib import Path

import click

from evolcoder.benchmarks import BENCHMARKS, get_benchmark
from evolcoder.benchmarks.base import POSTPROCESS_METHODS, ScoreSettings
from evolcoder.errors import EvolcoderError
from evolcoder.io import parse_json_option, sha256_file, write_json

log = logging.getLogger(__name__)


def score_file(benchmark: str, predictions: str, data_path: str | None = None,
               settings: dict | ScoreSettings | None = None, model_name: str | None = None,
               prompts_file: str | None = None, progress=None, postprocess: str | None = None) -> dict:
    """Score ``predictions``; returns the score record (see docs/ARCHITECTURE.md)."""
    if isinstance(settings, dict) and "postprocess" in settings:  # the rule's settings carry it
        settings = dict(settings)
        postprocess = postprocess or settings.pop("postprocess")
        settings.pop("postprocess", None)
    postprocess = postprocess or "wizardcoder"
    if postprocess not in POSTPROCESS_METHODS:
        raise EvolcoderError(f"postprocess must be one of {', '.join(POSTPROCESS_METHODS)}, not {postprocess!r}")
    st = settings if isinstance(settings, ScoreSettings) else ScoreSettings.from_dict(settings)
    opts = {"prompts_file": prompts_file} if benchmark == "mbpp" else {}
    bench = get_benchmark(benchmark, **opts)
    tasks = bench.load_tasks(data_path)
    report: dict = {}
    samples = bench.load_predictions(predictions, tasks, postprocess, report)
    result = bench.score(samples, data_path, st, progress=progress)
    head = {"model": model_name or default_model_name(predictions),
            "predictions": {"path": str(predictions), "sha256": sha256_file(predictions),
                            "postprocess": postprocess}}
    return {**head, **result, **report}


def default_model_name(predictions: str) -> str:
    """File name without .jsonl/.gz/.raw: ``wizardcoder-15b-v1.0_humaneval_greedy``."""
    name = Path(predictions).name
    for suffix in (".gz", ".jsonl", ".json", ".raw"):
        name = name[: -len(suffix)] if name.endswith(suffix) else name
    return name


def summary_line(res: dict) -> str:
    def fmt(d: dict) -> str:
        return ", ".join(f"{k} = {v:.1f}" for k, v in d.items() if k.startswith("pass@"))

    name = {"humaneval": "HumanEval", "mbpp": "MBPP", "mbpp-original": "MBPP (original)",
            "ds1000": "DS-1000"}.get(res["benchmark"], res["benchmark"])
    parts = [f"{name}: {fmt(res['base'])}"]
    if "plus" in res:
        parts.append(f"{name}+: {fmt(res['plus'])}")
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
    return (" | ".join(parts) + f"  ({res['n_tasks']} tasks, n={res['n_samples_per_task']}, "
            f"{ds.get('version', '?')}, {res['evaluator']['semantics']}, "
            f"{len(retried)} retried{extra})")


@click.command(help="Score predictions on a benchmark: pass@k (base and plus), per-task verdicts.")
@click.option("--benchmark", required=True, type=click.Choice(list(BENCHMARKS)))
@click.option("--predictions", required=True, type=click.Path(dir_okay=False),
              help="JSONL: {task_id, solution|completion|all_code|raw}, one line per sample.")
@click.option("--out", required=True, help="Score file (JSON) to write.")
@click.option("--data", "data_path", default=None, help="Dataset file (default: evalplus download).")
@click.option("--settings-json", "settings_json", default=None,
              help="Execution settings: jobs, timeout_s, memory_mb, semantics, retries, ... (JSON or file).")
@click.option("--model-name", default=None, help="Model name shown in the results table.")
@click.option("--timings", default=None, help="Reference timings file (read; written when missing).")
@click.option("--jobs", type=int, default=None, help="Parallel sandbox workers (overrides settings).")
@click.option("--prompts-file", default=None, help="MBPP+: WizardCoder's prompts JSON (for raw outputs).")
@click.option("--postprocess", type=click.Choice(list(POSTPROCESS_METHODS)), default=None,
              help="Raw outputs (raw, all_code): WizardCoder's process scripts (default) or evalplus's sanitize.")
@click.option("--ds1000-python", default=None,
              help="DS-1000: interpreter of its pinned environment (default $EVOLCODER_DS1000_PYTHON).")
def cli(benchmark: str, predictions: str, out: str, data_path: str | None, settings_json: str | None,
        model_name: str | None, timings: str | None, jobs: int | None, prompts_file: str | None,
        postprocess: str | None, ds1000_python: str | None) -> None:
    settings = parse_json_option(settings_json, "settings-json")
    if ds1000_python:
        settings["ds1000_python"] = ds1000_python
    if timings:
        settings["timings"] = timings
    if jobs:
        settings["jobs"] = jobs
    res = score_file(benchmark, predictions, data_path, settings, model_name, prompts_file,
                     postprocess=postprocess)
    write_json(out, res)
    click.echo(summary_line(res))
    sys.stdout.flush()
