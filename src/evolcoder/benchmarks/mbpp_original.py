"""The original MBPP test set (500 problems), scored through its ``test_list`` asserts."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, ClassVar

from evolcoder.benchmarks import harness
from evolcoder.benchmarks.base import Benchmark, Sample
from evolcoder.benchmarks.postprocess import process_mbpp
from evolcoder.benchmarks.scoring import ScoreSettings, _verdict, limits_for
from evolcoder.errors import DataError
from evolcoder.io import read_jsonl
from evolcoder.sandbox.jobs import Job, JobResult

if TYPE_CHECKING:
    from evolcoder.benchmarks.prompts import PromptTemplate


@functools.lru_cache(maxsize=4)
def _read(path: str) -> tuple[dict, ...]:
    rows = read_jsonl(path)
    for r in rows:
        if "test_list" not in r or "text" not in r:
            raise DataError(f"{path}: not an MBPP file (task {r.get('task_id')} lacks text/test_list)")
        r["task_id"] = str(r["task_id"])
    return tuple(rows)


class MbppOriginal(Benchmark):
    name = "mbpp-original"
    labels: ClassVar[dict[str, str]] = {"base": "MBPP"}
    data_key = "mbpp_original"
    decontamination_fields = ("text", "code")
    stop_sequences = ("\n### Instruction", "\n### Input:", "\n### Response:", "\nif __name__", "\n# Example usage")

    def load_tasks(self, data_path: str | None = None) -> list[dict]:
        path = self.resolve_path(data_path)
        if path is None:
            raise DataError("mbpp-original: dataset path required (data.mbpp_original)")
        return [dict(r) for r in _read(str(path))]

    def dataset_version(self, path: str, tasks: list[dict]) -> str:
        return f"original-{len(tasks)}"

    def problem_text(self, task: dict, template: PromptTemplate | None = None) -> str:
        # WizardCoder mbpp_gen.py: "\n{text}\nTest examples:" + each assert on its own line
        prompt = f"\n{task['text']}\nTest examples:"
        if task["task_id"] == "493":
            prompt += "\ncalculate_polygons(startx, starty, endx, endy, radius)"
        else:
            for test in task["test_list"]:
                prompt += f"\n{test}"
        return prompt

    def wizardcoder_program(self, task: dict, answer: str) -> str:
        """``process_mbpp.py --add_prompt``: the extracted code is the program (the harness appends the asserts)."""
        return process_mbpp(answer)

    def solution_from_record(self, task: dict, rec: dict, method: str = "wizardcoder") -> str:
        if isinstance(rec.get("completion"), str) and not isinstance(rec.get("solution"), str):
            return rec["completion"]  # no prompt to prepend: the completion is the program
        return super().solution_from_record(task, rec, method)

    def make_job(
        self,
        task: dict,
        sample: Sample,
        split: str,
        ctx: Any,
        settings: ScoreSettings,
        time_factor: float = 1.0,
        start: int = 0,
    ) -> Job:
        """The solution and setup code, then each assert's sample-side values (see :meth:`check`)."""
        limit = settings.timeout_s * time_factor
        tests = tuple(task["test_list"])
        _plan(tests)  # a test the checker cannot split is a data error, raised here
        return Job(
            harness.run_assert_leaves,
            (sample.solution, task.get("test_setup_code", ""), list(tests), limit, settings.sem()),
            limits_for(settings, limit),
        )

    def check(
        self,
        task: dict,
        sample: Sample,
        split: str,
        ctx: Any,
        settings: ScoreSettings,
        result: JobResult,
        start: int = 0,
    ) -> dict:
        if result.status != "ok" or result.result is None:
            return _verdict(result)  # timeout or crash: decided by the sandbox guard, not the sample
        return harness.check_asserts(result.result, task["test_list"], plan_of=_plan)


@functools.lru_cache(maxsize=4096)
def _plan(tests: tuple[str, ...], shadowed: tuple[str, ...] = ()) -> list:
    try:
        return harness.plan_asserts(list(tests), shadowed)
    except (SyntaxError, ValueError) as exc:
        raise DataError(f"mbpp-original: a test cannot be checked: {exc}") from None
