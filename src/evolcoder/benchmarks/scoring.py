"""The scoring side shared by the benchmark adapters: evaluator semantics per evalplus release, the
score settings, sandbox limits of a job, and the verdict of a job the harness reported itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from evolcoder.config import Settings
from evolcoder.config import default_factory as _default
from evolcoder.errors import EvolcoderError
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
    """Execution settings of ``evolcoder score`` (``--settings-json``): the config's
    ``evaluation.execution`` (defaults and documentation: the schema), plus ``ks`` and ``timings``."""

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
    ds1000_preimport: list[str] = _default(SECTION, "ds1000_preimport")
    ds1000_python: str | None = _default(SECTION, "ds1000_python")
    ds1000_timeout_s: float = _default(SECTION, "ds1000_timeout_s")
    # not config keys: the rule derives them
    ks: list[int] = field(default_factory=lambda: [1, 2, 5, 10, 20, 50, 100])  # those <= n reported
    timings: str | None = None  # reference timings file (read, or written when missing)

    @classmethod
    def from_dict(cls, d: dict | None) -> ScoreSettings:
        d = dict(d or {})
        # the score rule passes the config's `evaluation.execution` block as it is
        execution = d.pop("execution", None)
        if isinstance(execution, dict):
            d = {**execution, **d}
        d.pop("limit", None)  # a generation setting; scoring covers every predicted task
        return super().from_dict(d)

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
    return Limits(
        wall_s=cpu_budget * settings.wall_factor + 2.0,
        cpu_s=cpu_budget + 1.0,
        memory_mb=memory_mb or settings.memory_mb,
        nproc=settings.nproc,
        fsize_mb=settings.fsize_mb,
    )
