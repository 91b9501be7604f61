"""Benchmark adapters, one per benchmark, in a registry.

Each adapter (a subclass of :class:`evolcoder.benchmarks.base.Benchmark`, one file) is the single
source of what the rest of the pipeline knows about its benchmark: its ``name``, display ``labels``,
the ``data:`` key of its dataset file (``data_key``) and of any other file its constructor takes
(``data_options``), its own settings (``options``: ``evaluation.benchmark_options.<name>``), whether
it needs reference timings (``needs_timings``), its dataset loader, prompts (per template), stop
sequences, post-processing, the texts decontamination checks, and its scorer. The Snakefile
(wildcards, data paths, timings), the config schema (benchmark lists, option blocks), merge
(decontamination), generate, timings, score and table all read them from here.

Adding a benchmark: one adapter file and one line in :data:`BENCHMARKS` (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import importlib
from typing import Any

from evolcoder.errors import EvolcoderError

# name -> "module:Class"
BENCHMARKS: dict[str, str] = {
    "humaneval": "evolcoder.benchmarks.evalplus_bench:HumanEval",
    "mbpp": "evolcoder.benchmarks.evalplus_bench:MbppPlus",
    "mbpp-original": "evolcoder.benchmarks.mbpp_original:MbppOriginal",
    "ds1000": "evolcoder.benchmarks.ds1000:DS1000",
}


def adapter_class(name: str) -> type:
    """The adapter class of ``name`` (imported on first use)."""
    if name not in BENCHMARKS:
        raise EvolcoderError(f"unknown benchmark {name!r} (one of {', '.join(BENCHMARKS)})")
    module, cls = BENCHMARKS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def get_benchmark(name: str, **options: Any):
    """The adapter of ``name``; options (its ``data_options``, e.g. ``prompts_file`` for mbpp) go to its
    constructor; None values are left out."""
    klass = adapter_class(name)
    options = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(options) - set(klass.data_options))
    if unknown:
        raise EvolcoderError(
            f"benchmark {name}: unknown option(s) {', '.join(unknown)}"
            f"{' (it takes ' + ', '.join(klass.data_options) + ')' if klass.data_options else ''}"
        )
    return klass(**options) if options else klass()


def parse_options(values: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``--option NAME=VALUE`` arguments (a benchmark's ``data_options``) as a dict."""
    out = {}
    for v in values or ():
        name, eq, value = v.partition("=")
        if not eq or not name:
            raise EvolcoderError(f"--option {v!r}: expected NAME=VALUE (e.g. prompts_file=prompts.json)")
        out[name] = value
    return out


def split_options(name: str, options: dict[str, str]) -> tuple[dict[str, str], dict[str, Any]]:
    """``--option NAME=VALUE`` arguments of ``name`` split into the files its constructor takes
    (``data_options``) and its own options (``options``, each value read as YAML: ``120``, ``[numpy]``)."""
    import yaml

    files = adapter_class(name).data_options
    return (
        {k: v for k, v in options.items() if k in files},
        {k: yaml.safe_load(v) for k, v in options.items() if k not in files},
    )


def describe() -> dict[str, dict]:
    """What the workflow needs of each benchmark, without loading any data: {name: {labels,
    data_key, data_options, options, needs_timings, has_plus}} (``options``: the JSON schema of each
    of the adapter's own options, filled into the config schema's ``evaluation.benchmark_options``)."""
    out = {}
    for name in BENCHMARKS:
        k = adapter_class(name)
        out[name] = {
            "labels": dict(k.labels),
            "data_key": k.data_key,
            "data_options": dict(k.data_options),
            "options": {o: dict(spec) for o, spec in k.options.items()},
            "needs_timings": bool(k.needs_timings),
            "has_plus": bool(k.has_plus),
        }
    return out


def labels(name: str) -> dict[str, str]:
    """Display names of a benchmark's splits ({"base": ..., "plus": ...}); the name for an unknown one."""
    try:
        return dict(adapter_class(name).labels)
    except EvolcoderError:
        return {"base": name, "plus": name + "+"}


__all__ = ["BENCHMARKS", "adapter_class", "describe", "get_benchmark", "labels", "parse_options", "split_options"]
