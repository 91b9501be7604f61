"""Benchmark adapters, one per benchmark, in a registry.

Each adapter (:class:`evolcoder.benchmarks.base.Benchmark`) provides ``load_tasks(data_path)``,
``build_prompt(task, template)``, ``stop_sequences``, ``postprocess(task, raw)`` (a complete
program), ``dataset_info(data_path)`` and the scorer ``score(samples, data_path, settings)``.
"""

from __future__ import annotations

import importlib

from evolcoder.benchmarks.base import Benchmark, Sample, ScoreSettings
from evolcoder.errors import EvolcoderError

# name -> (module, class)
BENCHMARKS: dict[str, tuple[str, str]] = {
    "humaneval": ("evolcoder.benchmarks.evalplus_bench", "HumanEval"),
    "mbpp": ("evolcoder.benchmarks.evalplus_bench", "MbppPlus"),
    "mbpp-original": ("evolcoder.benchmarks.mbpp_original", "MbppOriginal"),
    "ds1000": ("evolcoder.benchmarks.ds1000", "DS1000"),
}


def get_benchmark(name: str, **options) -> Benchmark:
    """The adapter of ``name``; options (e.g. ``prompts_file`` for mbpp) go to its constructor."""
    if name not in BENCHMARKS:
        raise EvolcoderError(f"unknown benchmark {name!r} (one of {', '.join(BENCHMARKS)})")
    module, cls = BENCHMARKS[name]
    klass = getattr(importlib.import_module(module), cls)
    options = {k: v for k, v in options.items() if v is not None}
    return klass(**options) if options else klass()


__all__ = ["BENCHMARKS", "Benchmark", "Sample", "ScoreSettings", "get_benchmark"]
