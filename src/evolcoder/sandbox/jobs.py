"""What a sandbox job is: the function to run, its limits, and what comes back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

PASS = "pass"
FAIL = "fail"
TIMEOUT = "timeout"


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed job."""

    wall_s: float = 10.0  # no-progress guard: wall time spent neither running nor runnable
    idle_s: float = 3.0  # ... at most this long (a sleeping or blocked program is stopped quickly)
    cpu_s: float | None = None  # RLIMIT_CPU (default: wall_s + 1)
    memory_mb: int = 2048  # RLIMIT_AS on top of the worker's own address space
    nproc: int = 32  # RLIMIT_NPROC (as the sandbox uid when root)
    fsize_mb: int = 64  # RLIMIT_FSIZE, and the size of each private tmpfs
    drop_privileges: bool = True  # root only: run as a dedicated unprivileged uid


@dataclass
class Job:
    """``fn(*args)`` runs in the sandboxed child and returns a dict of plain data."""

    fn: Callable[..., dict]
    args: tuple = ()
    limits: Limits = field(default_factory=Limits)


@dataclass
class JobResult:
    status: str  # "ok" (the harness returned), "timeout", "crash"
    result: dict | None  # what fn returned (only when status == "ok")
    detail: str = ""
    wall_s: float = 0.0
    cause: str = ""  # timeouts: "cpu" (CPU budget spent) or "stall" (no progress)
