"""A tiny benchmark, added the way docs/ARCHITECTURE.md says: this one adapter file, copied into
src/evolcoder/benchmarks/, and one line in the registry (tests/test_single_source.py does both in a
copy of the workflow and runs it).

Dataset (JSONL): ``{"task_id", "prompt", "entry_point", "test_list": ["assert f(1) == 2", ...]}``;
a program passes when every assert holds (checked in the scoring process, as the original MBPP's).
"""

from __future__ import annotations

from typing import Any

from evolcoder.benchmarks import harness
from evolcoder.benchmarks.base import Benchmark, Sample
from evolcoder.benchmarks.verdicts import ScoreSettings, _verdict, limits_for
from evolcoder.errors import DataError
from evolcoder.io import read_jsonl
from evolcoder.sandbox.jobs import Job, JobResult


class TinyAdd(Benchmark):
    name = "tiny-add"
    labels = {"base": "TinyAdd"}
    data_key = "tiny_add"
    decontamination_fields = ("prompt",)

    def load_tasks(self, data_path: str | None = None) -> list[dict]:
        if not data_path:
            raise DataError("tiny-add: dataset path required (data.tiny_add)")
        rows = read_jsonl(data_path)
        for r in rows:
            r["task_id"] = str(r["task_id"])
        return rows

    def dataset_version(self, path: str, tasks: list[dict]) -> str:
        return f"tiny-{len(tasks)}"

    def wizardcoder_program(self, task: dict, answer: str) -> str:
        return task["prompt"] + answer

    def make_job(self, task: dict, sample: Sample, split: str, ctx: Any, settings: ScoreSettings,
                 time_factor: float = 1.0, start: int = 0) -> Job:
        limit = settings.timeout_s * time_factor
        return Job(harness.run_assert_leaves, (sample.solution, "", list(task["test_list"]), limit, settings.sem()),
                   limits_for(settings, limit))

    def check(self, task: dict, sample: Sample, split: str, ctx: Any, settings: ScoreSettings,
              result: JobResult, start: int = 0) -> dict:
        if result.status != "ok" or result.result is None:
            return _verdict(result)
        return harness.check_asserts(result.result, task["test_list"])
