"""A tiny benchmark, added the way docs/ARCHITECTURE.md says: this one adapter file, copied into
src/evolcoder/benchmarks/, and one line in the registry (tests/test_single_source.py does both in a
copy of the workflow, then generates, gathers and scores it through the workflow's commands).

Dataset (JSONL): ``{"task_id", "prompt", "entry_point", "test_list": ["assert f(1) == 2", ...]}``;
a program passes when every assert holds (checked in the scoring process, as the original MBPP's).
It uses every template's generic prompt (no ``prompts``) and declares one option of its own
(``evaluation.benchmark_options.tiny-add.timeout_s``).
"""

from __future__ import annotations

from typing import ClassVar

from evolcoder.benchmarks import harness
from evolcoder.benchmarks.base import Benchmark, Dataset, JobContext, dataset_path
from evolcoder.benchmarks.verdicts import limits_for
from evolcoder.io import read_jsonl
from evolcoder.sandbox.jobs import Job


class TinyAdd(Benchmark):
    name = "tiny-add"
    labels: ClassVar[dict[str, str]] = {"base": "TinyAdd"}
    data_key = "tiny_add"
    options: ClassVar[dict[str, dict]] = {
        "timeout_s": {"type": "number", "exclusiveMinimum": 0, "default": 5, "description": "Per program."}
    }

    def load(self, data_path: str | None) -> Dataset:
        path = dataset_path(self.name, self.data_key, data_path)
        rows = read_jsonl(path)
        for r in rows:
            r["task_id"] = str(r["task_id"])
        return Dataset(rows, path, f"tiny-{len(rows)}")

    def make_job(self, jc: JobContext) -> Job:
        limit = jc.options["timeout_s"] * jc.time_factor
        args = (jc.sample.solution, "", list(jc.task["test_list"]), limit, jc.settings.sem())
        return Job(harness.run_assert_leaves, args, limits_for(jc.settings, limit))

    def check(self, jc: JobContext, output: dict) -> dict:
        return harness.check_asserts(output, jc.task["test_list"])
