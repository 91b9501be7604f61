"""DS-1000 (2024 format: prompt, reference_code, code_context, metadata), official checks.

Each solution runs as the official harness builds the program: ``code_context`` +
``code = <solution>`` + ``test_execution(code)`` (+ ``test_string(code)`` where the context defines
it), in a sandboxed child forked from a worker that has pre-imported the heavy libraries.
Problems of a library that cannot be imported here (TensorFlow is optional) are reported as
skipped, never as passed.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from typing import Any

from evolcoder.benchmarks import harness
from evolcoder.benchmarks.base import Benchmark, Sample, ScoreSettings, limits_for
from evolcoder.errors import DataError
from evolcoder.execution import Job
from evolcoder.io import read_jsonl
from evolcoder.passk import pass_at_k_table

log = logging.getLogger(__name__)

LIBRARY_MODULE = {"Pandas": "pandas", "Numpy": "numpy", "Matplotlib": "matplotlib", "Sklearn": "sklearn",
                  "Scipy": "scipy", "Pytorch": "torch", "Tensorflow": "tensorflow"}


@functools.lru_cache(maxsize=4)
def _read(path: str) -> tuple[dict, ...]:
    rows = read_jsonl(path)
    for i, r in enumerate(rows):
        if "code_context" not in r or "prompt" not in r:
            raise DataError(f"{path}: row {i} is not DS-1000 (2024 format: prompt, code_context, ...)")
        meta = r.get("metadata") or {}
        r["task_id"] = str(meta.get("problem_id", i))
        r["library"] = meta.get("library", "")
    return tuple(rows)


def ds1000_postprocess(code: str) -> str:
    """The official DS-1000 post-processing of a completion."""
    code = code.split("</code>")[0]
    code = code.replace("```python", "")
    code = code.split("```")[0]
    code = code.split("\nEND SOLUTION")[0]
    code = code.replace("<code>", "")
    return code


class DS1000(Benchmark):
    name = "ds1000"
    data_key = "ds1000"
    stop_sequences = ("</code>", "# SOLUTION END", "\nEND SOLUTION", "\n### Instruction")

    def load_tasks(self, data_path: str | None = None) -> list[dict]:
        path = self.resolve_path(data_path)
        if path is None:
            raise DataError("ds1000: dataset path required (data.ds1000)")
        return [dict(r) for r in _read(str(path))]

    def dataset_version(self, path: str, tasks: list[dict]) -> str:
        return f"2024-{len(tasks)}"

    def postprocess(self, task: dict, raw: str) -> str:
        from evolcoder.benchmarks.base import strip_response

        text = strip_response(raw).replace("\r", "")
        if "```" in text:  # instruct models answer in a code block
            after = text.split("```", 1)[1]
            after = after[after.index("\n") + 1:] if "\n" in after else after
            text = after
        return ds1000_postprocess(text)

    def solution_from_record(self, task: dict, rec: dict) -> str:
        for key in ("solution", "completion", "code"):
            if isinstance(rec.get(key), str):
                return ds1000_postprocess(rec[key])
        return super().solution_from_record(task, rec)

    @staticmethod
    def short_id(task_id: str) -> str:
        return str(task_id).rsplit("/", 1)[-1]

    # --- scoring ---------------------------------------------------------------------------
    def available_libraries(self) -> set[str]:
        return {lib for lib, mod in LIBRARY_MODULE.items() if importlib.util.find_spec(mod) is not None}

    def preimport(self, settings: ScoreSettings) -> list[str]:
        return list(settings.ds1000_preimport)

    def make_job(self, task: dict, sample: Sample, split: str, ctx: Any, settings: ScoreSettings,
                 time_factor: float = 1.0, start: int = 0) -> Job:
        limit = settings.timeout_s * time_factor
        sem = settings.sem()
        sem["clock"] = "wall"  # library code may sleep or spawn threads; the official check is wall time
        lim = limits_for(settings, limit, memory_mb=max(settings.memory_mb, 16384))
        return Job(harness.run_ds1000, (task["code_context"], sample.solution, limit, sem), lim)

    def score(self, samples: list[Sample], data_path: str | None, settings: ScoreSettings,
              progress=None) -> dict:
        tasks = {t["task_id"]: t for t in self.load_tasks(data_path)}
        libs = self.available_libraries()
        keep = [s for s in samples if tasks[s.task_id]["library"] in libs]
        skipped = sorted({s.task_id for s in samples} - {s.task_id for s in keep}, key=int)
        if skipped:
            log.warning("ds1000: %d problem(s) skipped: library not installed (%s)", len(skipped),
                        ", ".join(sorted({tasks[t]["library"] for t in skipped})))
        if settings.ds1000_preimport:
            settings.ds1000_preimport = [m for m in settings.ds1000_preimport
                                         if importlib.util.find_spec(m.split(".")[0]) is not None]
        res = super().score(keep, data_path, settings, progress) if keep else _empty(self, data_path, settings)
        res["skipped"] = skipped
        res["skipped_reason"] = "library not importable here" if skipped else ""
        by_lib: dict[str, tuple[list[int], list[int]]] = {}
        for tid, e in res["per_task"].items():
            ns, cs = by_lib.setdefault(tasks[tid]["library"], ([], []))
            ns.append(e["n"])
            cs.append(e["base_correct"])
        res["by_library"] = {lib: pass_at_k_table(ns, cs, [1])["pass@1"] for lib, (ns, cs) in sorted(by_lib.items())}
        return res


def _empty(bench: DS1000, data_path: str | None, settings: ScoreSettings) -> dict:
    return {"benchmark": bench.name, "n_samples_per_task": 0, "n_tasks": 0, "complete": False,
            "dataset": bench.dataset_info(data_path), "evaluator": bench.evaluator_info(settings, None),
            "base": pass_at_k_table([], [], [1]), "retried": [], "retries": {}, "per_task": {}}
