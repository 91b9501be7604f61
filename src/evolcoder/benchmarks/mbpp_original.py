"""The original MBPP test set (500 problems), scored through its ``test_list`` asserts."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, ClassVar

from evolcoder.benchmarks import harness
from evolcoder.benchmarks.base import Benchmark, Dataset, JobContext, dataset_path
from evolcoder.benchmarks.postprocess import process_mbpp
from evolcoder.benchmarks.verdicts import limits_for
from evolcoder.errors import DataError
from evolcoder.io import read_jsonl
from evolcoder.sandbox.jobs import Job

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

    def load(self, data_path: str | None) -> Dataset:
        path = dataset_path(self.name, self.data_key, data_path)
        tasks = [dict(r) for r in _read(path)]
        return Dataset(tasks, path, f"original-{len(tasks)}")

    def problem_text(self, task: dict, template: PromptTemplate | None = None) -> str:
        # WizardCoder mbpp_gen.py: "\n{text}\nTest examples:" + each assert on its own line
        prompt = f"\n{task['text']}\nTest examples:"
        if task["task_id"] == "493":
            prompt += "\ncalculate_polygons(startx, starty, endx, endy, radius)"
        else:
            for test in task["test_list"]:
                prompt += f"\n{test}"
        return prompt

    def program(self, task: dict, text: str, source: str) -> str:
        """WizardCoder: ``process_mbpp.py --add_prompt``, the extracted code is the program (the harness
        appends the asserts); a completion is the program too (no prompt to prepend)."""
        if source == "wizardcoder":
            return process_mbpp(text)
        return text if source == "completion" else super().program(task, text, source)

    def make_job(self, jc: JobContext) -> Job:
        """The solution and setup code, then each assert's sample-side values (see :meth:`check`)."""
        limit = jc.settings.timeout_s * jc.time_factor
        tests = tuple(jc.task["test_list"])
        _plan(tests)  # a test the checker cannot split is a data error, raised here
        return Job(
            harness.run_assert_leaves,
            (jc.sample.solution, jc.task.get("test_setup_code", ""), list(tests), limit, jc.settings.sem()),
            limits_for(jc.settings, limit),
        )

    def check(self, jc: JobContext, output: dict) -> dict:
        return harness.check_asserts(output, jc.task["test_list"], plan_of=_plan)


@functools.lru_cache(maxsize=4096)
def _plan(tests: tuple[str, ...], shadowed: tuple[str, ...] = ()) -> list:
    try:
        return harness.plan_asserts(list(tests), shadowed)
    except (SyntaxError, ValueError) as exc:
        raise DataError(f"mbpp-original: a test cannot be checked: {exc}") from None
