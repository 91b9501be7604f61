"""The benchmark adapter's base class: dataset, prompts, post-processing, prediction import, and the
hooks the scoring loop (``evolcoder.score``) calls. The scoring side shared by adapters is
:mod:`evolcoder.benchmarks.scoring`; post-processing is :mod:`evolcoder.benchmarks.postprocess`;
prompt templates :mod:`evolcoder.benchmarks.prompts`."""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from evolcoder.benchmarks.postprocess import POSTPROCESS_METHODS, evalplus_sanitize, process_humaneval, strip_response
from evolcoder.errors import DataError, EvolcoderError
from evolcoder.io import iter_jsonl, sha256_file

if TYPE_CHECKING:
    from evolcoder.benchmarks.prompts import PromptTemplate
    from evolcoder.benchmarks.scoring import ScoreSettings
    from evolcoder.sandbox.jobs import Job, JobResult

log = logging.getLogger(__name__)


@dataclass
class Sample:
    task_id: str
    sample_idx: int
    solution: str


# ----------------------------------------------------------------------------- the adapter


class Benchmark:
    """One benchmark: dataset, prompts, post-processing and scorer (registered in
    :data:`evolcoder.benchmarks.BENCHMARKS`; what the workflow reads is the class attributes)."""

    name: str = ""
    labels: ClassVar[dict[str, str]] = {}  # display names of the splits: {"base": ..., "plus": ...}
    has_plus: bool = False  # a second, harder split ("plus") of the same tasks
    stop_sequences: tuple[str, ...] = ("\n### Instruction", "\n### Input:", "\n### Response:")
    data_key: str = ""  # key under config `data:` of the dataset file
    data_options: ClassVar[dict[str, str]] = {}  # constructor option -> `data:` key of the file it takes
    needs_timings: bool = False  # per-test limits from reference timings (`evolcoder timings`)
    decontamination_fields: tuple[str, ...] = ("prompt",)  # task fields merge checks for overlap

    # --- dataset -------------------------------------------------------------------------
    def default_path(self) -> str | None:
        return None

    def resolve_path(self, data_path: str | None) -> str | None:
        if data_path and Path(data_path).exists():
            return str(data_path)
        if data_path:
            log.warning("%s: %s not found; falling back to the official download", self.name, data_path)
        return self.default_path()

    def load_tasks(self, data_path: str | None = None) -> list[dict]:
        raise NotImplementedError

    def dataset_version(self, path: str, tasks: list[dict]) -> str:
        m = re.search(r"v\d+(?:\.\d+)+", Path(path).name)
        return m.group(0) if m else "unknown"

    def dataset_info(self, data_path: str | None = None, tasks: list[dict] | None = None) -> dict:
        path = self.resolve_path(data_path)
        if path is None or not Path(path).exists():
            raise DataError(f"{self.name}: dataset not found ({data_path})")
        tasks = tasks if tasks is not None else self.load_tasks(path)
        return {
            "name": self.name,
            "version": self.dataset_version(path, tasks),
            "path": str(path),
            "sha256": sha256_file(path),
            "n_tasks": len(tasks),
        }

    def decontamination_texts(self, data_path: str | None) -> list[tuple[str, str, str]]:
        """(task_id, field, text) of every text merge's decontamination checks for overlap."""
        return [
            (str(t["task_id"]), f, t.get(f) or "")
            for t in self.load_tasks(data_path)
            for f in self.decontamination_fields
        ]

    # --- prompts ---------------------------------------------------------------------------
    def problem_text(self, task: dict, template: PromptTemplate | None = None) -> str:
        return task["prompt"]

    def build_prompt(self, task: dict, template: str = "wizardcoder") -> str:
        """The prompt sent to the model (tabs substituted where the template says so)."""
        from evolcoder.benchmarks.prompts import prompt_template

        tpl = prompt_template(template, self.name)
        return tpl.fill(self.problem_text(task, tpl))

    # --- post-processing ---------------------------------------------------------------------
    def postprocess(self, task: dict, raw: str, method: str = "wizardcoder") -> str:
        """Raw model output (answer only, or prompt + answer; tabs already undone) -> a complete
        program. ``wizardcoder``: the benchmark's WizardCoder process script (:meth:`wizardcoder_program`);
        ``evalplus``: evalplus's ``sanitize``."""
        answer = strip_response(raw)
        if method == "evalplus":
            return evalplus_sanitize(answer, task.get("prompt", ""), task.get("entry_point"))
        if method != "wizardcoder":
            raise EvolcoderError(f"unknown post-processing {method!r} (one of {', '.join(POSTPROCESS_METHODS)})")
        return self.wizardcoder_program(task, answer)

    def wizardcoder_program(self, task: dict, answer: str) -> str:
        """HumanEval (``process_humaneval.py --add_prompt`` + the scorer): prompt + extracted code, always."""
        return task["prompt"] + process_humaneval(answer)

    def solution_from_record(self, task: dict, rec: dict, method: str = "wizardcoder") -> str:
        """Accepted prediction formats, in order: solution, completion (+ prompt), all_code, raw.
        ``raw`` records written by ``evolcoder generate`` with a tab-substituting template carry
        ``"tabs": true``: their tabs are turned back into 4 spaces first (``all_code`` has that done)."""
        if isinstance(rec.get("solution"), str):
            return rec["solution"]
        if isinstance(rec.get("completion"), str):
            return task.get("prompt", "") + rec["completion"]
        if isinstance(rec.get("all_code"), str):
            return self.postprocess(task, rec["all_code"], method)
        if isinstance(rec.get("raw"), str):
            raw = rec["raw"].replace("\t", "    ") if rec.get("tabs") else rec["raw"]
            return self.postprocess(task, raw, method)
        raise DataError("prediction has none of solution, completion, all_code, raw")

    def load_predictions(
        self, path: str, tasks: list[dict], method: str = "wizardcoder", report: dict | None = None
    ) -> list[Sample]:
        """The samples of a predictions file. Several lines per task are samples (n). Lines for tasks the
        dataset does not have are skipped with one warning (as official evalplus does) and listed in
        ``report["not_in_dataset"]``; uneven n per task is warned about and listed in
        ``report["uneven_samples"]``. An error only when no line matches a task."""
        by_id = {str(t["task_id"]): t for t in tasks}
        alias = {self.short_id(k): k for k in by_id}
        # "HumanEval/3" or "3" name HumanEval/3; "Mbpp/3" does not (another benchmark's file)
        prefixes = {str(k).rsplit("/", 1)[0].lower() for k in by_id if "/" in str(k)}
        counter: dict[str, int] = defaultdict(int)
        samples: list[Sample] = []
        unknown: dict[str, int] = {}
        lines = 0
        for lineno, rec in enumerate(iter_jsonl(path), 1):
            lines += 1
            if "task_id" not in rec:
                raise DataError(f"{path}:{lineno}: prediction without task_id")
            tid = str(rec["task_id"])
            if tid not in by_id and (not prefixes or "/" not in tid or tid.rsplit("/", 1)[0].lower() in prefixes):
                tid = alias.get(self.short_id(tid), tid)
            if tid not in by_id:
                unknown[str(rec["task_id"])] = unknown.get(str(rec["task_id"]), 0) + 1
                continue
            try:
                sol = self.solution_from_record(by_id[tid], rec, method)
            except DataError as exc:
                raise DataError(f"{path}:{lineno}: {exc}") from None
            samples.append(Sample(tid, counter[tid], sol))
            counter[tid] += 1
        if not lines:
            raise DataError(f"{path}: no predictions")
        if not samples:
            example = ", ".join(list(unknown)[:3])
            raise DataError(
                f"{path}: none of its {len(unknown)} task ids is in {self.name} "
                f"({len(tasks)} tasks; e.g. {example}): wrong --benchmark or dataset version?"
            )
        if unknown:
            n_lines = sum(unknown.values())
            log.warning(
                "%s: skipped %d prediction line(s) for %d task(s) not in the %s dataset (%s%s); "
                "scoring the %d task(s) it has",
                path,
                n_lines,
                len(unknown),
                self.name,
                ", ".join(list(unknown)[:5]),
                ", ..." if len(unknown) > 5 else "",
                len(counter),
            )
        ns = sorted(set(counter.values()))
        if len(ns) > 1:
            mode = max(ns, key=lambda n: sum(1 for v in counter.values() if v == n))
            odd = {t: n for t, n in counter.items() if n != mode}
            log.warning(
                "%s: uneven number of samples per task (%s; %d task(s) differ from n=%d): "
                "pass@k uses each task's own n",
                path,
                "/".join(map(str, ns)),
                len(odd),
                mode,
            )
        if report is not None:
            report["not_in_dataset"] = {
                "count": len(unknown),
                "lines": sum(unknown.values()),
                "task_ids": sorted(unknown, key=_order),
            }
            if len(ns) > 1:
                report["uneven_samples"] = {
                    "min": ns[0],
                    "max": ns[-1],
                    "most_common": mode,
                    "tasks": {t: odd[t] for t in sorted(odd, key=_order)},
                }
        return samples

    @staticmethod
    def short_id(task_id: str) -> str:
        return str(task_id).rsplit("/", 1)[-1]

    # --- scoring ---------------------------------------------------------------------------
    def splits(self) -> tuple[str, ...]:
        return ("base", "plus") if self.has_plus else ("base",)

    def prepare(self, tasks: list[dict], data_path: str | None, settings: ScoreSettings) -> Any:
        """Per-run context (expected outputs, reference timings); None by default."""
        return None

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
        """The sandbox job of one sample on one split; ``start``: first test to run (retries)."""
        raise NotImplementedError

    def preimport(self, settings: ScoreSettings) -> list[str]:
        return ["numpy"]

    def evaluator_info(self, settings: ScoreSettings, ctx: Any) -> dict:
        from evolcoder.benchmarks.scoring import _version

        return {
            "name": "evolcoder",
            "version": _version(),
            "semantics": settings.semantics,
            "time_limit_policy": self.time_limit_policy(settings, ctx),
        }

    def time_limit_policy(self, settings: ScoreSettings, ctx: Any) -> str:
        return (
            f"{settings.timeout_s:g}s per program ({settings.clock} time); timeouts retried "
            f"{settings.retries}x alone at x{settings.retry_time_factor:g}"
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
        """The verdict of one job, decided in the scoring process (default: what the harness reported)."""
        from evolcoder.benchmarks.scoring import _verdict

        return _verdict(result)

    def execution_python(self, settings: ScoreSettings) -> str | None:
        """The interpreter whose workers run the programs; None: this process's own."""
        return None

    def select(
        self, samples: list[Sample], data_path: str | None, settings: ScoreSettings
    ) -> tuple[list[Sample], ScoreSettings, Any]:
        """Before scoring: the samples that can be scored, the settings to score them with (a copy
        where they change) and anything :meth:`finalize` needs. Default: all of them, unchanged."""
        return samples, settings, None

    def finalize(self, result: dict, extra: Any) -> dict:
        """After scoring: the benchmark's own fields added to the score record."""
        return result


def _order(task_id: str):
    tail = str(task_id).rsplit("/", 1)[-1]
    return (0, int(tail), "") if tail.isdigit() else (1, 0, str(task_id))
