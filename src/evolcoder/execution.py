"""Sandboxed execution of generated code.

Every job (one sample against one test group) runs in a freshly forked child process:

- new session (``setsid``) so the whole process group is killed on timeout;
- a throw-away working directory (``HOME``/``TMPDIR`` point there too), removed afterwards;
- ``setrlimit``: address space, CPU seconds, file size, number of processes, no core files;
- when the scorer runs as root (containers), the child drops to a dedicated unprivileged uid per
  worker slot: it cannot delete or overwrite the machine's files, ``RLIMIT_NPROC`` applies to it,
  and every process it leaves behind (even ones that escaped the process group) is killed with
  ``kill(-1)`` from that uid afterwards;
- stdin/stdout/stderr are ``/dev/null``;
- the child reports its result over a pipe only when the harness function has returned, i.e. after
  all tests ran: ``sys.exit``/``os._exit`` before that, a crash, a memory blow-up or a kill all read
  as "no result" and score as a failure.

Workers are forked from the scoring process (which holds the dataset and expected outputs, so
nothing big is pickled) and may pre-import heavy libraries once (DS-1000).
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import resource
import select
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

PASS = "pass"
FAIL = "fail"
TIMEOUT = "timeout"

# First uid of the per-slot sandbox users when running as root (nonexistent uids are fine).
SANDBOX_UID_BASE = 61000


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed job."""

    wall_s: float = 10.0          # wall-clock guard; the process group is killed after it
    cpu_s: float | None = None    # RLIMIT_CPU (default: wall_s + 1)
    memory_mb: int = 2048         # RLIMIT_AS
    nproc: int = 32               # RLIMIT_NPROC (as the sandbox uid when root)
    fsize_mb: int = 64            # RLIMIT_FSIZE: largest file the job may write
    drop_privileges: bool = True  # root only: run as a dedicated unprivileged uid


@dataclass
class Job:
    """``fn(*args)`` runs in the sandboxed child and returns a JSON-able dict."""

    fn: Callable[..., dict]
    args: tuple = ()
    limits: Limits = field(default_factory=Limits)
    trusted: bool = False  # trusted code (reference solutions): result travels as pickle


@dataclass
class JobResult:
    status: str                     # "ok" (harness returned), "timeout", "crash"
    result: dict | None             # what fn returned (only when status == "ok")
    detail: str = ""
    wall_s: float = 0.0


# ----------------------------------------------------------------------------- the child

def _set_limits(limits: Limits) -> None:
    mem = int(limits.memory_mb) * 1024 * 1024
    cpu = int(limits.cpu_s if limits.cpu_s is not None else limits.wall_s + 1) + 1
    settings = [
        (resource.RLIMIT_AS, mem),
        (resource.RLIMIT_CPU, cpu),
        (resource.RLIMIT_FSIZE, int(limits.fsize_mb) * 1024 * 1024),
        (resource.RLIMIT_CORE, 0),
    ]
    for what, value in settings:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(what, (value, value))


def _child(job: Job, wfd: int, workdir: str, uid: int | None) -> None:
    """Runs in the forked child; never returns."""
    write = os.write
    dumps = _pickle_dumps if job.trusted else _json_dumps
    exit_ = os._exit
    try:
        os.setsid()
        os.chdir(workdir)
        os.environ.update({"HOME": workdir, "TMPDIR": workdir, "TMP": workdir, "TEMP": workdir})
        tempfile.tempdir = workdir
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        _set_limits(job.limits)
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NPROC, (job.limits.nproc, job.limits.nproc))
            os.setuid(uid)
        elif job.limits.nproc:
            # not root: RLIMIT_NPROC counts all of this user's processes, so allow what is there
            with contextlib.suppress(ValueError, OSError):
                n = _count_user_procs() + job.limits.nproc
                resource.setrlimit(resource.RLIMIT_NPROC, (n, n))
        result = job.fn(*job.args)
        data = dumps(result)
    except BaseException as exc:  # the harness itself failed (bad input, MemoryError, ...)
        try:
            data = dumps({"harness_error": f"{type(exc).__name__}: {exc}"[:500]})
        except BaseException:
            exit_(3)
    try:
        view = memoryview(data)
        while view:
            n = write(wfd, view)
            view = view[n:]
    finally:
        exit_(0)


_JSON_DUMPS = json.dumps  # bound at import: a sample that patches json.dumps cannot forge a result


def _json_dumps(obj: Any) -> bytes:
    return _JSON_DUMPS(obj).encode()


def _pickle_dumps(obj: Any) -> bytes:
    import pickle

    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def _count_user_procs() -> int:
    uid = os.getuid()
    n = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{name}").st_uid == uid:
                    n += 1
    return n


def _kill_uid(uid: int) -> None:
    """Kill every process of ``uid`` (kill(-1) from a helper that runs as that uid)."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            for _ in range(3):
                with contextlib.suppress(OSError):
                    os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def run_job(job: Job, slot: int = 0) -> JobResult:
    """Run one job in a sandboxed child and wait for it (wall-clock guarded)."""
    is_root = os.geteuid() == 0
    uid = SANDBOX_UID_BASE + slot if (is_root and job.limits.drop_privileges) else None
    workdir = tempfile.mkdtemp(prefix="evolcoder-sbx-")
    if uid is not None:
        os.chown(workdir, uid, uid)
    rfd, wfd = os.pipe()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(rfd)
        _child(job, wfd, workdir, uid)
    os.close(wfd)
    chunks: list[bytes] = []
    timed_out = False
    deadline = start + job.limits.wall_s
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([rfd], [], [], left)
            if not ready:
                continue
            block = os.read(rfd, 1 << 16)
            if not block:
                break
            chunks.append(block)
    finally:
        os.close(rfd)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        _, wstatus = _waitpid(pid)
        if uid is not None:
            _kill_uid(uid)
        shutil.rmtree(workdir, ignore_errors=True)
    wall = time.monotonic() - start
    if timed_out:
        return JobResult(TIMEOUT, None, f"wall-clock limit {job.limits.wall_s:.1f}s", wall)
    data = b"".join(chunks)
    if not data:
        if os.WIFSIGNALED(wstatus) and os.WTERMSIG(wstatus) in (signal.SIGXCPU, signal.SIGKILL):
            return JobResult(TIMEOUT, None, f"killed by signal {os.WTERMSIG(wstatus)} (CPU limit)", wall)
        code = os.WEXITSTATUS(wstatus) if os.WIFEXITED(wstatus) else -os.WTERMSIG(wstatus)
        return JobResult("crash", None, f"no result (exit status {code})", wall)
    try:
        if job.trusted:
            import pickle

            result = pickle.loads(data)
        else:
            result = json.loads(data)
    except Exception:
        return JobResult("crash", None, "unreadable result", wall)
    if not isinstance(result, dict):
        return JobResult("crash", None, "unreadable result", wall)
    if "harness_error" in result:
        return JobResult("crash", None, result["harness_error"], wall)
    return JobResult("ok", result, "", wall)


def _waitpid(pid: int) -> tuple[int, int]:
    while True:
        try:
            return os.waitpid(pid, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            return pid, 0


# ----------------------------------------------------------------------------- the pool

_POOL_JOBS: Sequence[Job] = ()
_POOL_SLOT = 0


def _worker_init(slot_counter, preimport: Sequence[str], isolate_network: bool) -> None:
    global _POOL_SLOT
    with slot_counter.get_lock():
        _POOL_SLOT = slot_counter.value
        slot_counter.value += 1
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    preload(preimport)
    if isolate_network:
        unshare_network()


def _worker_run(index: int) -> tuple[int, JobResult]:
    return index, run_job(_POOL_JOBS[index], slot=_POOL_SLOT)


def preload(modules: Sequence[str]) -> None:
    """Import heavy libraries once in the worker, so each forked child finds them loaded."""
    for name in modules:
        try:
            if name == "matplotlib":
                import matplotlib

                matplotlib.use("Agg")
            __import__(name)
        except Exception as exc:  # optional libraries (tensorflow) may be absent
            log.debug("pre-import of %s failed: %s", name, exc)


def unshare_network() -> bool:
    """Put this process into an empty network namespace (root only); False when impossible."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        clone_newnet = 0x40000000
        if libc.unshare(clone_newnet) != 0:
            return False
        return True
    except Exception:
        return False


def run_jobs(jobs: Sequence[Job], workers: int = 1, preimport: Sequence[str] = (),
             isolate_network: bool = False, progress: Callable[[int, int], None] | None = None
             ) -> list[JobResult]:
    """Run jobs on ``workers`` forked worker processes; results in job order."""
    global _POOL_JOBS
    results: list[JobResult | None] = [None] * len(jobs)
    if not jobs:
        return []
    workers = max(1, min(int(workers), len(jobs)))
    _POOL_JOBS = jobs
    ctx = multiprocessing.get_context("fork")
    counter = ctx.Value("i", 0)
    try:
        with ctx.Pool(workers, initializer=_worker_init,
                      initargs=(counter, tuple(preimport), isolate_network)) as pool:
            for done, (i, res) in enumerate(pool.imap_unordered(_worker_run, range(len(jobs))), 1):
                results[i] = res
                if progress:
                    progress(done, len(jobs))
    finally:
        _POOL_JOBS = ()
    return results  # type: ignore[return-value]


def iter_chunks(seq: Sequence[Any], n: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


__all__ = ["Job", "JobResult", "Limits", "run_job", "run_jobs", "preload", "PASS", "FAIL", "TIMEOUT"]
