"""The benchmark adapter's base class and the records its hooks exchange with the pipeline.

An adapter (one file, registered in :data:`evolcoder.benchmarks.BENCHMARKS`) is a subclass of
:class:`Benchmark` that sets its class attributes (data) and overrides some of its eight hooks; every
other method is final (:func:`typing.final`, and checked when the subclass is defined). What the
hooks get and return: :class:`Dataset`, :class:`Sample`, :class:`Prepared`, :class:`JobContext`.
The scoring loop is :func:`evolcoder.score.score_samples`; settings, limits, verdicts and their
aggregation are :mod:`evolcoder.benchmarks.verdicts`; what runs in the sandbox is
:mod:`evolcoder.benchmarks.harness`; post-processing :mod:`evolcoder.benchmarks.postprocess`; prompt
templates :mod:`evolcoder.benchmarks.prompts`.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, final

from evolcoder.benchmarks.postprocess import (
    POSTPROCESS_METHODS,
    evalplus_sanitize,
    process_humaneval,
    strip_response,
)
from evolcoder.benchmarks.verdicts import harness_verdict, task_order
from evolcoder.errors import DataError, EvolcoderError
from evolcoder.io import iter_jsonl, sha256_file

if TYPE_CHECKING:
    from evolcoder.benchmarks.prompts import PromptTemplate
    from evolcoder.benchmarks.verdicts import ScoreSettings
    from evolcoder.sandbox.jobs import Job

log = logging.getLogger(__name__)


@dataclass
class Sample:
    task_id: str
    sample_idx: int
    solution: str


@dataclass
class Dataset:
    """What :meth:`Benchmark.load` returns: the tasks (dicts with a ``task_id``), the file they came
    from (its sha256 goes into the score file) and the dataset's version."""

    tasks: list[dict]
    path: str
    version: str


@dataclass
class Prepared:
    """What :meth:`Benchmark.prepare` returns, for one scoring run: the samples to score and what
    the run needs beyond the settings."""

    samples: list[Sample]  # those that can be scored (all by default)
    ctx: Any = None  # per-run data for make_job/check (expected outputs, reference timings)
    python: str | None = None  # interpreter of the sandbox workers; None: this process's own
    preimport: list[str] = field(default_factory=lambda: ["numpy"])  # modules each worker imports once
    time_limit_policy: str = ""  # the score file's evaluator.time_limit_policy ("" = the generic one)
    evaluator: dict = field(default_factory=dict)  # more fields of the score file's `evaluator`
    extra: Any = None  # anything finalize needs


@dataclass(frozen=True)
class JobContext:
    """One sample on one split, as :meth:`Benchmark.make_job` and :meth:`Benchmark.check` see it."""

    task: dict
    sample: Sample
    split: str  # "base" or "plus"
    ctx: Any  # Prepared.ctx
    settings: ScoreSettings  # with the adapter's options (settings.options) filled in
    time_factor: float = 1.0  # limits multiplied by this (retries)
    start: int = 0  # first test to run (a retry resumes at the test that timed out)

    @property
    def options(self) -> dict:
        return self.settings.options


# ----------------------------------------------------------------------------- the adapter

HOOKS = (
    "load",
    "problem_text",
    "program",
    "decontamination_texts",
    "prepare",
    "make_job",
    "check",
    "finalize",
)


class Benchmark:
    """One benchmark: dataset, prompts, post-processing and scorer.

    Data (class attributes; what the workflow reads without loading anything): ``name``, ``labels``,
    ``has_plus``, ``stop_sequences``, ``prompts`` (prompt text per template, where the generic
    ``templates/eval/<template>/template.txt`` does not fit), ``data_key``, ``data_options``,
    ``options`` (the adapter's own settings: ``evaluation.benchmark_options.<name>``), ``needs_timings``,
    ``decontamination_fields``, ``decontamination_needs_data``, ``completion_keys``.

    Hooks (:data:`HOOKS`, the only methods a subclass may override; the others are final):

    1. ``load(data_path) -> Dataset`` (required): the tasks, their file and its version.
    2. ``problem_text(task, template) -> str``: the ``{problem}`` of the prompt (default ``task["prompt"]``).
    3. ``program(task, text, source) -> str``: a prediction's text -> the complete program; ``source`` is
       ``solution`` (a program), ``completion`` (appended to the prompt), or a post-processing method
       (``wizardcoder``/``evalplus``: ``text`` is the model's answer).
    4. ``decontamination_texts(data_path)``: (task_id, field, text) merge checks for overlap (default: the
       ``decontamination_fields`` of every task).
    5. ``prepare(samples, tasks, data_path, settings) -> Prepared``: before scoring (which samples, the
       interpreter, reference data, the time-limit policy); default: every sample, nothing else.
    6. ``make_job(jc: JobContext) -> Job`` (required): the sandbox job of one sample on one split.
    7. ``check(jc, output) -> dict``: the verdict of a job that ran to its end, in the scoring process
       (``output``: what the harness function returned); default: the harness's own verdict. A job the
       sandbox stopped (timeout, crash) never reaches it: the scoring loop decides those.
    8. ``finalize(result, prepared) -> dict``: the benchmark's own fields added to the score record.
    """

    name: ClassVar[str] = ""
    labels: ClassVar[dict[str, str]] = {}  # display names of the splits: {"base": ..., "plus": ...}
    has_plus: ClassVar[bool] = False  # a second, harder split ("plus") of the same tasks
    stop_sequences: ClassVar[tuple[str, ...]] = ("\n### Instruction", "\n### Input:", "\n### Response:")
    # prompt text (with {problem}) per template name, where the template's generic text does not fit
    prompts: ClassVar[dict[str, str]] = {}
    data_key: ClassVar[str] = ""  # key under config `data:` of the dataset file
    data_options: ClassVar[dict[str, str]] = {}  # constructor option -> `data:` key of the file it takes
    # the adapter's own settings (evaluation.benchmark_options.<name>): name -> JSON schema (with a default
    # and a description); the config schema's block is filled in from here; hooks read jc.options
    options: ClassVar[dict[str, dict]] = {}
    needs_timings: ClassVar[bool] = False  # per-test limits from reference timings (`evolcoder timings`)
    decontamination_fields: ClassVar[tuple[str, ...]] = ("prompt",)  # task fields merge checks for overlap
    decontamination_needs_data: ClassVar[bool] = True  # False: its texts ship with a package (data file optional)
    completion_keys: ClassVar[tuple[str, ...]] = ("completion",)  # prediction keys read as completions

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        final_names = {n for n, v in vars(Benchmark).items() if callable(v) and not n.startswith("__")} - set(HOOKS)
        overridden = sorted(n for n in vars(cls) if n in final_names)
        if overridden:
            raise TypeError(
                f"{cls.__name__} overrides {', '.join(overridden)}: final in Benchmark "
                f"(an adapter overrides only its hooks: {', '.join(HOOKS)})"
            )

    # --- hooks -------------------------------------------------------------------------------
    def load(self, data_path: str | None) -> Dataset:
        raise NotImplementedError

    def problem_text(self, task: dict, template: PromptTemplate | None = None) -> str:
        return task["prompt"]

    def program(self, task: dict, text: str, source: str) -> str:
        """Default: a solution as it is, a completion after the prompt, evalplus's ``sanitize``, or
        HumanEval's WizardCoder script (``process_humaneval.py --add_prompt``: prompt + extracted code)."""
        if source == "solution":
            return text
        if source == "completion":
            return task.get("prompt", "") + text
        if source == "evalplus":
            return evalplus_sanitize(text, task.get("prompt", ""), task.get("entry_point"))
        return task["prompt"] + process_humaneval(text)

    def decontamination_texts(self, data_path: str | None) -> list[tuple[str, str, str]]:
        """(task_id, field, text) of every text merge's decontamination checks for overlap."""
        return [
            (str(t["task_id"]), f, t.get(f) or "")
            for t in self.load_tasks(data_path)
            for f in self.decontamination_fields
        ]

    def prepare(
        self, samples: list[Sample], tasks: list[dict], data_path: str | None, settings: ScoreSettings
    ) -> Prepared:
        return Prepared(samples)

    def make_job(self, jc: JobContext) -> Job:
        raise NotImplementedError

    def check(self, jc: JobContext, output: dict) -> dict:
        return harness_verdict(output)

    def finalize(self, result: dict, prepared: Prepared) -> dict:
        return result

    # --- final: dataset ---------------------------------------------------------------------
    @final
    def load_tasks(self, data_path: str | None = None) -> list[dict]:
        return self.load(data_path).tasks

    @final
    def dataset_info(self, data_path: str | None = None, tasks: list[dict] | None = None) -> dict:
        ds = self.load(data_path)
        if not Path(ds.path).exists():
            raise DataError(f"{self.name}: dataset not found ({data_path})")
        return {
            "name": self.name,
            "version": ds.version,
            "path": str(ds.path),
            "sha256": sha256_file(ds.path),
            "n_tasks": len(tasks if tasks is not None else ds.tasks),
        }

    @final
    def resolve_options(self, given: dict | None) -> dict:
        """The adapter's options (:attr:`options`): ``given`` over the declared defaults; an unknown
        name is an error naming it."""
        given = dict(given or {})
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            known = ", ".join([*self.options, *self.data_options]) or "none"
            raise EvolcoderError(f"benchmark {self.name}: unknown option(s) {', '.join(unknown)} (it takes {known})")
        return {k: given.get(k, spec.get("default")) for k, spec in self.options.items()}

    # --- final: prompts ---------------------------------------------------------------------
    @final
    def build_prompt(self, task: dict, template: str = "wizardcoder") -> str:
        """The prompt sent to the model (tabs substituted where the template says so)."""
        from evolcoder.benchmarks.prompts import prompt_template

        tpl = prompt_template(template, self)
        return tpl.fill(self.problem_text(task, tpl))

    # --- final: post-processing and predictions ----------------------------------------------
    @final
    def postprocess(self, task: dict, raw: str, method: str = "wizardcoder") -> str:
        """Raw model output (answer only, or prompt + answer; tabs already undone) -> a complete
        program (:meth:`program` of the answer): ``wizardcoder``, the benchmark's WizardCoder process
        script; ``evalplus``, evalplus's ``sanitize``."""
        if method not in POSTPROCESS_METHODS:
            raise EvolcoderError(f"unknown post-processing {method!r} (one of {', '.join(POSTPROCESS_METHODS)})")
        return self.program(task, strip_response(raw), method)

    @final
    def solution_from_record(self, task: dict, rec: dict, method: str = "wizardcoder") -> str:
        """Accepted prediction formats, in order: solution, completion (+ prompt; the keys of
        :attr:`completion_keys`), all_code, raw. ``raw`` records written by ``evolcoder generate`` with a
        tab-substituting template carry ``"tabs": true``: their tabs are turned back into 4 spaces
        first (``all_code`` has that done)."""
        if isinstance(rec.get("solution"), str):
            return self.program(task, rec["solution"], "solution")
        for key in self.completion_keys:
            if isinstance(rec.get(key), str):
                return self.program(task, rec[key], "completion")
        if isinstance(rec.get("all_code"), str):
            return self.postprocess(task, rec["all_code"], method)
        if isinstance(rec.get("raw"), str):
            raw = rec["raw"].replace("\t", "    ") if rec.get("tabs") else rec["raw"]
            return self.postprocess(task, raw, method)
        raise DataError("prediction has none of solution, completion, all_code, raw")

    @final
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
                "task_ids": sorted(unknown, key=task_order),
            }
            if len(ns) > 1:
                report["uneven_samples"] = {
                    "min": ns[0],
                    "max": ns[-1],
                    "most_common": mode,
                    "tasks": {t: odd[t] for t in sorted(odd, key=task_order)},
                }
        return samples

    @final
    @staticmethod
    def short_id(task_id: str) -> str:
        return str(task_id).rsplit("/", 1)[-1]

    @final
    def splits(self) -> tuple[str, ...]:
        return ("base", "plus") if self.has_plus else ("base",)


# ----------------------------------------------------------------------------- helpers of adapters


def version_in_name(path: str) -> str | None:
    """The release version in a data file's name (HumanEvalPlus-v0.1.10.jsonl.gz -> v0.1.10)."""
    m = re.search(r"v\d+(?:\.\d+)+", Path(path).name)
    return m.group(0) if m else None


def dataset_path(
    name: str, data_key: str, data_path: str | None, download: Callable[[], str | None] | None = None
) -> str:
    """``data_path`` where it exists, else the official download (``download()``; a warning when a
    given path is missing); a one-line error naming the config key when there is neither."""
    if data_path and Path(data_path).exists():
        return str(data_path)
    if download is not None:
        if data_path:
            log.warning("%s: %s not found; falling back to the official download", name, data_path)
        path = download()
        if path:
            return str(path)
        raise DataError(f"{name}: no dataset path and no download available (data.{data_key})")
    if data_path:
        raise DataError(f"{name}: dataset not found: {data_path} (data.{data_key})")
    raise DataError(f"{name}: dataset path required (data.{data_key})")
