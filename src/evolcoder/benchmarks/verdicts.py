"""Verdicts and their aggregation: the settings and evaluator semantics (per evalplus release) a
sample is judged under, the sandbox limits of its job, the verdict of a job (what its harness reported,
or what the sandbox stopped), and the per-task verdicts and pass@k of a score file.

The stage command is :mod:`evolcoder.score` (it runs the loop); what runs inside the sandbox, and the
adapters' checks of its output, is :mod:`evolcoder.benchmarks.harness`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from evolcoder.config import Settings
from evolcoder.config import default_factory as _default
from evolcoder.errors import EvolcoderError
from evolcoder.passk import pass_at_k_table
from evolcoder.sandbox.jobs import FAIL, PASS, TIMEOUT, JobResult, Limits

# Scoring semantics of evalplus releases ("era pinning"). The default is the current release.
SEMANTICS: dict[str, dict[str, Any]] = {
    "evalplus-0.3.1": {
        "min_time_limit": 1.0,
        "gt_time_limit_factor": 4.0,
        "task_time_cap": 60.0,
        "mbpp_set_eq": True,
        "mbpp_not_none_bool": True,
        "mbpp_extra_oracles": True,
        "allclose_type_check": True,
        "find_zero_quirk": True,
    },
    # Current when WizardCoder-33B-V1.1 (Jan 2024) reported 78.9/66.9 on MBPP/MBPP+ (v0.1.0):
    # 0.2 s time floor, outputs compared as lists, regex tasks only checked for "not None".
    "evalplus-0.2.0": {
        "min_time_limit": 0.2,
        "gt_time_limit_factor": 4.0,
        "task_time_cap": 60.0,
        "mbpp_set_eq": False,
        "mbpp_not_none_bool": False,
        "mbpp_extra_oracles": False,
        "allclose_type_check": False,
        "find_zero_quirk": True,
    },
}
DEFAULT_SEMANTICS = "evalplus-0.3.1"


@dataclass
class ScoreSettings(Settings):
    """Settings of ``evolcoder score`` (``--settings-json``), flat: the config's ``evaluation.execution``
    (defaults and documentation: the schema) but ``jobs`` (the rule's threads, ``--jobs``: it changes no
    verdict), ``evaluation.postprocess``, the benchmark's own ``options`` (its block of
    ``evaluation.benchmark_options``; the adapter declares them and their defaults,
    :meth:`~evolcoder.benchmarks.base.Benchmark.resolve_options`) and in sampled mode
    ``evaluation.sampling.ks`` (:func:`evolcoder.workflow.settings_for`)."""

    SECTION: ClassVar[str] = "evaluation.execution"
    WHERE: ClassVar[str] = "score settings"

    jobs: int = _default(SECTION, "jobs")  # parallel sandbox workers
    timeout_s: float = _default(SECTION, "timeout_s")  # per-program limit (mbpp-original)
    memory_mb: int = _default(SECTION, "memory_mb")
    nproc: int = _default(SECTION, "nproc")
    fsize_mb: int = _default(SECTION, "fsize_mb")
    semantics: str = _default(SECTION, "semantics")  # evalplus-0.3.1 | evalplus-0.2.0
    clock: str = _default(SECTION, "clock")  # per-test limits on CPU time or "wall"
    min_time_limit: float | None = _default(SECTION, "min_time_limit")
    gt_time_limit_factor: float | None = _default(SECTION, "gt_time_limit_factor")
    wall_factor: float = _default(SECTION, "wall_factor")  # no-progress guard (see the schema)
    retries: int = _default(SECTION, "retries")  # re-runs of a timed-out sample, alone
    retry_time_factor: float = _default(SECTION, "retry_time_factor")
    reference_repeats: int = _default(SECTION, "reference_repeats")
    semantics_overrides: dict = _default(SECTION, "semantics_overrides")
    isolate_network: bool = _default(SECTION, "isolate_network")
    # keys of other sections
    postprocess: str = _default("evaluation", "postprocess")  # raw outputs -> programs (wizardcoder | evalplus)
    options: dict = field(default_factory=dict)  # the benchmark's own (evaluation.benchmark_options.<name>)
    ks: list[int] = _default("evaluation.sampling", "ks")  # k of pass@k, those <= n reported
    timings: str | None = None  # reference timings file (read, or written when missing): --timings

    def check(self) -> None:
        if self.semantics not in SEMANTICS:
            raise EvolcoderError(
                f"score settings: unknown semantics {self.semantics!r} (one of {', '.join(SEMANTICS)})"
            )
        if self.clock not in ("cpu", "wall"):
            raise EvolcoderError(f"score settings: clock must be 'cpu' or 'wall', not {self.clock!r}")

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


def harness_verdict(output: dict) -> dict:
    """The verdict a harness function reported itself (a job that ran to its end)."""
    st = output.get("status")
    if st not in (PASS, FAIL, TIMEOUT):
        return {"status": FAIL, "reason": "bad harness result"}
    v = {"status": st, "reason": str(output.get("reason", ""))[:300], "failed": output.get("failed")}
    if st == TIMEOUT:
        v["cause"] = "cpu"
    return v


def stopped_verdict(r: JobResult) -> dict:
    """The verdict of a job the sandbox stopped or that sent nothing back: decided by the sandbox's
    guard, never by the sample (a timeout, with its cause, or a failure)."""
    if r.status == TIMEOUT:
        return {"status": TIMEOUT, "reason": r.detail, "cause": r.cause or "cpu"}
    return {"status": FAIL, "reason": r.detail}


def task_order(task_id: str):
    """Sort key of task ids: numeric tails in numeric order (HumanEval/2 before HumanEval/10)."""
    tail = str(task_id).rsplit("/", 1)[-1]
    return (0, int(tail), "") if tail.isdigit() else (1, 0, str(task_id))


def evaluator_version() -> str:
    try:
        from importlib.metadata import version

        return version("evolcoder")
    except Exception:
        return "0+unknown"


def time_limit_policy(settings: ScoreSettings, per_program: str = "") -> str:
    """The score file's ``evaluator.time_limit_policy``: ``per_program`` (default: ``timeout_s`` on
    the configured clock), then the retries."""
    per_program = per_program or f"{settings.timeout_s:g}s per program ({settings.clock} time)"
    return f"{per_program}; timeouts retried {settings.retries}x alone at x{settings.retry_time_factor:g}"


def limits_for(settings: ScoreSettings, cpu_budget: float, memory_mb: int | None = None) -> Limits:
    """Sandbox limits of a job whose tests may use ``cpu_budget`` CPU seconds in total."""
    return Limits(
        wall_s=cpu_budget * settings.wall_factor + 2.0,
        cpu_s=cpu_budget + 1.0,
        memory_mb=memory_mb or settings.memory_mb,
        nproc=settings.nproc,
        fsize_mb=settings.fsize_mb,
    )


# ----------------------------------------------------------------------------- aggregation


def aggregate(
    bench: Any,
    samples: list,
    keys: list[tuple[int, str]],
    verdicts: list[dict],
    retried: dict[str, list],
    *,
    settings: ScoreSettings,
    prepared: Any,
    data_path: str | None,
    all_tasks: list[dict],
    elapsed: float,
) -> dict:
    """The score record of a run: per-task verdicts (``keys[i]`` = (sample index, split) of
    ``verdicts[i]``), pass@k per split, status and timeout counts, retries; ``bench`` is the adapter,
    ``prepared`` what its ``prepare`` returned."""
    per_sample: dict[tuple[str, int], dict] = {}
    for (si, split), v in zip(keys, verdicts, strict=True):
        s = samples[si]
        per_sample.setdefault((s.task_id, s.sample_idx), {})[split] = v
    per_task: dict[str, dict] = {}
    for (tid, idx), splits in sorted(per_sample.items(), key=lambda kv: (task_order(kv[0][0]), kv[0][1])):
        entry = per_task.setdefault(tid, {"n": 0, "base": [], "base_correct": 0})
        entry["n"] += 1
        b = splits["base"]["status"]
        entry["base"].append(b)
        entry["base_correct"] += b == PASS
        if "plus" in splits:
            p = (
                splits["plus"]["status"]
                if b == PASS
                else (FAIL if splits["plus"]["status"] == PASS else splits["plus"]["status"])
            )
            entry.setdefault("plus", []).append(p)
            entry["plus_correct"] = entry.get("plus_correct", 0) + (b == PASS and p == PASS)
        reasons = {k: v.get("reason") for k, v in splits.items() if v["status"] != PASS and v.get("reason")}
        if reasons:
            entry.setdefault("reasons", {})[str(idx)] = reasons
    ns = [e["n"] for e in per_task.values()]
    out: dict[str, Any] = {
        "benchmark": bench.name,
        "labels": dict(bench.labels),
        "n_samples_per_task": max(ns) if ns else 0,
        "n_tasks": len(per_task),
        "complete": len(per_task) == len(all_tasks),
        "dataset": bench.dataset_info(data_path, all_tasks),
        "evaluator": {
            "name": "evolcoder",
            "version": evaluator_version(),
            "semantics": settings.semantics,
            "time_limit_policy": prepared.time_limit_policy or time_limit_policy(settings),
            **prepared.evaluator,
        },
        "base": pass_at_k_table(ns, [e["base_correct"] for e in per_task.values()], settings.ks),
    }
    if bench.has_plus:
        out["plus"] = pass_at_k_table(ns, [e.get("plus_correct", 0) for e in per_task.values()], settings.ks)
    out["status_counts"] = status_counts(per_task)
    # why each timeout that survived the retries timed out: "cpu" (a CPU limit: the test's or
    # the job's budget spent) or "stall" (no progress: sleeping, blocked or stopped)
    causes: dict[str, int] = {}
    for v in verdicts:
        if v["status"] == TIMEOUT:
            causes[v.get("cause", "cpu")] = causes.get(v.get("cause", "cpu"), 0) + 1
    out["timeout_causes"] = causes
    out["retried"] = sorted(retried, key=task_order)
    out["retries"] = {k: retried[k] for k in out["retried"]}
    out["elapsed_s"] = round(elapsed, 2)
    out["per_task"] = per_task
    return out


def status_counts(per_task: dict) -> dict:
    counts: dict[str, dict[str, int]] = {}
    for e in per_task.values():
        for split in ("base", "plus"):
            for st in e.get(split, []):
                counts.setdefault(split, {}).setdefault(st, 0)
                counts[split][st] += 1
    return counts
