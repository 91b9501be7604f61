"""Reference outputs and timings of the canonical solutions (evalplus benchmarks).

evalplus limits each test to ``max(floor, 4 x the reference solution's time)``, measured on the
machine at scoring time, so load while the reference runs flips verdicts. Here the reference is
measured once per (dataset sha256, machine class), as CPU time, the minimum of several repeats,
and stored in a file (a Snakemake output, ``evolcoder timings``) that later runs reuse.

Without ``--timings`` the file is cached under ``$EVOLCODER_CACHE/timings/``.

The file is a pickle of plain values, written atomically by the scorer and read only with the
sandbox's restricted unpickler (:func:`evolcoder.sandbox.values.safe_loads`: builtin, collections,
decimal/fractions and numpy values, nothing that runs code), so a file rewritten by anyone runs no
code in the next scorer. (JSON was measured: the 250 MB HumanEval+ file loads in 6.1 s against
1.9 s, a tenth of a whole scoring run.) A bubblewrap sandbox cannot reach the file at all.
"""

from __future__ import annotations

import logging
import os
import pickle
import platform
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from evolcoder.errors import DataError, EvolcoderError
from evolcoder.io import atomic_path, parse_json_option

log = logging.getLogger(__name__)

# Imported through the benchmark adapters, never run here: the reference measurement builds no prompts
# (evolcoder.codehash; checked by the test suite).
CODE_HASH_EXCLUDES = ("evolcoder.benchmarks.prompts",)

FORMAT = 1


def machine_info() -> dict:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cores = os.cpu_count() or 1
    klass = re.sub(r"[^A-Za-z0-9]+", "-", f"{cpu or platform.machine()}-{cores}c").strip("-").lower()
    return {
        "machine_class": klass,
        "cpu": cpu,
        "cores": cores,
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def default_cache_path(benchmark: str, sha256: str, machine_class: str) -> Path:
    from evolcoder.io import cache_dir

    return cache_dir() / "timings" / f"{benchmark}-{sha256[:16]}-{machine_class}.pkl"


def compute(bench, tasks: list[dict], settings) -> dict[str, dict]:
    """Run every task's canonical solution on its base and plus inputs: trusted code (the dataset's
    own), so, as evalplus computes its ground truth, in plain worker processes (spawned, one task at
    a time each, ``settings.jobs`` of them), not in the sandbox meant for generated code."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from evolcoder.benchmarks import harness

    out = {}
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=max(1, int(settings.jobs)), mp_context=ctx, initializer=_init_reference_worker
    ) as pool:
        futures = [
            (
                t,
                pool.submit(
                    harness.run_reference,
                    t["prompt"] + t["canonical_solution"],
                    t["entry_point"],
                    {"base": t["base_input"], "plus": t["plus_input"]},
                    settings.reference_repeats,
                    t["entry_point"] in bench.output_not_none,
                ),
            )
            for t in tasks
        ]
        for t, fut in futures:
            try:
                out[t["task_id"]] = fut.result()
            except Exception as exc:
                raise EvolcoderError(
                    f"reference solution of {t['task_id']} failed: {type(exc).__name__}: {exc}"[:500]
                ) from None
    return out


def _init_reference_worker() -> None:
    """One BLAS thread per worker (as in the sandbox's workers), numpy pre-imported."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    import numpy  # noqa: F401


def load(path: str | os.PathLike) -> dict:
    """Read with the sandbox's restricted unpickler (:func:`evolcoder.sandbox.values.safe_loads`):
    plain values only, so loading runs no code whoever wrote the file."""
    from evolcoder.sandbox.values import UnsafeResult, safe_loads

    try:
        with open(path, "rb") as fh:
            data = safe_loads(fh.read())
    except (OSError, UnsafeResult) as exc:
        raise DataError(f"{path}: not a reference timings file ({str(exc)[:120]})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DataError(f"{path}: not a reference timings file (format)")
    if not isinstance(data.get("meta"), dict) or not isinstance(data.get("tasks"), dict):
        raise DataError(f"{path}: not a reference timings file (meta, tasks)")
    return data


def save(path: str | os.PathLike, data: dict) -> None:
    """Written atomically (a temporary file renamed over the target), never in place."""
    blob = pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(blob)


def reference_for(bench, tasks: list[dict], data_path: str | None, settings) -> dict:
    """``{"meta": ..., "tasks": {task_id: {base, base_time, plus, plus_time}}}`` for ``tasks``.

    Reads the timings file (``settings.timings`` or the cache), measures what is missing
    (only then), and stores the union back.
    """
    info = bench.dataset_info(data_path)
    machine = machine_info()
    path = (
        Path(settings.timings)
        if settings.timings
        else default_cache_path(bench.name, info["sha256"], machine["machine_class"])
    )
    data: dict[str, Any] | None = None
    if path.exists():
        data = load(path)
        meta = data["meta"]
        if meta.get("dataset_sha256") != info["sha256"]:
            raise DataError(
                f"{path}: reference timings were measured on another dataset "
                f"(sha256 {meta.get('dataset_sha256', '?')[:12]}…, this one "
                f"{info['sha256'][:12]}…)"
            )
        if meta.get("machine_class") != machine["machine_class"]:
            log.warning(
                "%s: reference timings were measured on %s, this machine is %s",
                path,
                meta.get("machine_class"),
                machine["machine_class"],
            )
    missing = [t for t in tasks if data is None or t["task_id"] not in data["tasks"]]
    if missing:
        log.info("%s: measuring reference solutions of %d task(s) (once; stored in %s)", bench.name, len(missing), path)
        measured = compute(bench, missing, settings)
        if data is None:
            data = {
                "format": FORMAT,
                "meta": {
                    "benchmark": bench.name,
                    "dataset_version": info["version"],
                    "dataset_sha256": info["sha256"],
                    **machine,
                    "clock": "cpu",
                    "repeats": settings.reference_repeats,
                    "created": datetime.now(UTC).isoformat(timespec="seconds"),
                },
                "tasks": {},
            }
        data["tasks"].update(measured)
        save(path, data)
    meta = dict(data["meta"])
    meta["path"] = str(path)
    meta["n_tasks"] = len(data["tasks"])
    return {"meta": meta, "tasks": data["tasks"]}


def timed_benchmarks() -> list[str]:
    """The registered benchmarks whose per-test limits come from reference timings (``needs_timings``)."""
    from evolcoder.benchmarks import describe

    return [name for name, info in describe().items() if info["needs_timings"]]


@click.command(help="Measure the reference solutions' outputs and CPU times once (evalplus benchmarks).")
@click.option("--benchmark", "benchmark", required=True, type=click.Choice(timed_benchmarks()))
@click.option("--data", "data_path", default=None, help="Dataset file (default: evalplus download).")
@click.option("--out", "out", required=True, help="Timings file to write (plain-value pickle).")
@click.option("--settings-json", "settings_json", default=None, help="Score settings (jobs, reference_repeats).")
@click.option("--limit", type=int, default=None, help="Only the first N tasks.")
@click.option("--jobs", type=int, default=None, help="Parallel sandbox workers (the setting `jobs`).")
def cli(
    benchmark: str, data_path: str | None, out: str, settings_json: str | None, limit: int | None, jobs: int | None
) -> None:
    from evolcoder.benchmarks import get_benchmark
    from evolcoder.benchmarks.verdicts import ScoreSettings

    raw = parse_json_option(settings_json, "settings-json")
    if jobs:
        raw["jobs"] = jobs
    settings = ScoreSettings.from_dict(raw)
    settings.timings = out
    bench = get_benchmark(benchmark)
    tasks = bench.load_tasks(data_path)
    if limit:
        tasks = tasks[:limit]
    ref = reference_for(bench, tasks, data_path, settings)
    meta = ref["meta"]
    click.echo(f"{benchmark}: reference timings of {meta['n_tasks']} tasks on {meta['machine_class']} -> {out}")
