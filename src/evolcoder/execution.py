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
    memory_mb: int = 2048         # RLIMIT_AS on top of the worker's own address space
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
    # run only when this job's harness reported {"status": "pass"} (e.g. plus tests after base)
    then: "Job | None" = None


@dataclass
class JobResult:
    status: str                     # "ok" (harness returned), "timeout", "crash"
    result: dict | None             # what fn returned (only when status == "ok")
    detail: str = ""
    wall_s: float = 0.0


# ----------------------------------------------------------------------------- the child

def _vm_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def _set_limits(limits: Limits) -> None:
    # memory_mb on top of what the (forked) process already maps: the workers hold the dataset and
    # expected outputs, which must not eat into the sample's allowance
    mem = int(limits.memory_mb) * 1024 * 1024 + _vm_bytes()
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
        view = memoryview(len(data).to_bytes(8, "little") + data)
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


def _set_subreaper() -> None:
    """Orphans of sandboxed jobs get re-parented to this process, which reaps them."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except Exception:
        pass


def _reap_uid(uid: int) -> None:
    """Wait for our (re-parented) children that ran as ``uid``."""
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.stat(f"/proc/{name}").st_uid != uid:
                continue
            with open(f"/proc/{name}/stat", "rb") as fh:
                ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == me:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(int(name), 0)


def _uid_has_processes(uid: int) -> bool:
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid == uid:
                    return True
            except OSError:
                continue
    return False


def _kill_uid(uid: int) -> None:
    """Kill every process of ``uid`` (kill(-1) from a helper that runs as that uid), reap them."""
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
    _reap_uid(uid)


def run_job(job: Job, slot: int = 0) -> JobResult:
    """Run one job in a sandboxed child and wait for it (wall-clock guarded)."""
    is_root = os.geteuid() == 0
    uid = SANDBOX_UID_BASE + slot if (is_root and job.limits.drop_privileges) else None
    if uid is not None and not _SUBREAPER:
        prepare_process_for_sandbox()
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
    buf = bytearray()
    need: int | None = None
    timed_out = False
    deadline = start + job.limits.wall_s
    try:
        # a length-prefixed message: grandchildren holding the pipe open cannot stall us
        while need is None or len(buf) < need + 8:
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
            buf += block
            if need is None and len(buf) >= 8:
                need = int.from_bytes(buf[:8], "little")
    finally:
        os.close(rfd)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        _, wstatus = _waitpid(pid)
        if uid is not None and _uid_has_processes(uid):
            _kill_uid(uid)
        shutil.rmtree(workdir, ignore_errors=True)
    wall = time.monotonic() - start
    complete = need is not None and len(buf) >= need + 8
    if timed_out and not complete:
        return JobResult(TIMEOUT, None, f"wall-clock limit {job.limits.wall_s:.1f}s", wall)
    data = bytes(buf[8:8 + need]) if complete else b""
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


_SUBREAPER: list = []  # set once per process
_STDLIB_LOADED: list = []

# stdlib modules never pre-imported (side effects, GUI, test suites, platform-specific)
_STDLIB_SKIP = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "ensurepip", "venv",
                "lib2to3", "test", "__phello__", "_tkinter", "pydoc_data", "msvcrt", "winreg", "winsound",
                "_winapi", "nt", "_msi", "msilib", "_overlapped", "asyncio.windows_events",
                "asyncio.windows_utils", "multiprocessing.popen_spawn_win32", "encodings.mbcs",
                "encodings.oem", "distutils.command.bdist_msi", "readline", "rlcompleter"}


def stdlib_readable_by_others() -> bool:
    """Whether an unprivileged uid can import the standard library (not so under a 0700 /root)."""
    import stat
    import sysconfig

    path = os.path.realpath(sysconfig.get_paths()["stdlib"])
    parts = path.split(os.sep)
    for i in range(2, len(parts) + 1):
        d = os.sep.join(parts[:i]) or os.sep
        try:
            mode = os.stat(d).st_mode
        except OSError:
            return False
        if not mode & stat.S_IXOTH or (d == path and not mode & stat.S_IROTH):
            return False
    return True


def preload_stdlib() -> int:
    """Import the whole standard library once (children of an unprivileged uid find it loaded)."""
    if _STDLIB_LOADED:
        return 0
    import importlib
    import pkgutil
    import sys
    import warnings

    import importlib.util
    import sysconfig

    stdlib = os.path.realpath(sysconfig.get_paths()["stdlib"])
    n = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        names = sorted(getattr(sys, "stdlib_module_names", ()))
        for name in names:
            if name in _STDLIB_SKIP or name.startswith(("_test", "__main__")):
                continue
            try:
                spec = importlib.util.find_spec(name)
                origin = getattr(spec, "origin", None) or ""
                if spec is None or (origin not in ("built-in", "frozen")
                                    and not os.path.realpath(origin).startswith(stdlib)):
                    continue  # absent, or shadowed by a file of the same name outside the stdlib
                mod = importlib.import_module(name)
                n += 1
            except BaseException:
                continue
            if hasattr(mod, "__path__"):
                for info in pkgutil.walk_packages(mod.__path__, name + ".", onerror=lambda _: None):
                    sub = info.name
                    if (sub in _STDLIB_SKIP or sub.split(".")[0] in _STDLIB_SKIP or ".test" in sub
                            or sub.endswith("__main__")):
                        continue
                    try:
                        importlib.import_module(sub)
                        n += 1
                    except BaseException:
                        continue
    _STDLIB_LOADED.append(True)
    log.debug("pre-imported %d standard-library modules for the sandbox uid", n)
    return n


def prepare_process_for_sandbox() -> None:
    """Once per process that forks sandboxed children as an unprivileged uid."""
    if not _SUBREAPER:
        _set_subreaper()
        _SUBREAPER.append(True)
        if not stdlib_readable_by_others():
            preload_stdlib()

# ----------------------------------------------------------------------------- the pool

_POOL_JOBS: Sequence[Job] = ()
_POOL_SLOT = 0


def _worker_init(slot_counter, preimport: Sequence[str], isolate_network: bool) -> None:
    with slot_counter.get_lock():
        slot = slot_counter.value
        slot_counter.value += 1
    init_worker(slot, preimport, isolate_network)


def init_worker(slot: int, preimport: Sequence[str], isolate_network: bool) -> None:
    """Set up a worker process: its sandbox slot, thread caps, pre-imports, network namespace."""
    global _POOL_SLOT
    _POOL_SLOT = slot
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ.setdefault(var, "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("MPLBACKEND", "Agg")
    preload(preimport)
    if os.geteuid() == 0:
        prepare_process_for_sandbox()
    if isolate_network:
        unshare_network()


def _worker_run(index: int) -> tuple[int, list[JobResult | None]]:
    return index, run_chain(_POOL_JOBS[index], slot=_POOL_SLOT)


def _worker_run_pickled(item: tuple[int, Job]) -> tuple[int, list[JobResult | None]]:
    index, job = item
    return index, run_chain(job, slot=_POOL_SLOT)


def run_chain(job: Job, slot: int = 0) -> list[JobResult | None]:
    """Run ``job`` and its ``then`` jobs while each passes; None for the jobs not run."""
    out: list[JobResult | None] = []
    cur: Job | None = job
    ok = True
    while cur is not None:
        if ok:
            res = run_job(cur, slot)
            ok = res.status == "ok" and bool(res.result) and res.result.get("status") == PASS
            out.append(res)
        else:
            out.append(None)
        cur = cur.then
    return out


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


def same_interpreter(python: str) -> bool:
    """Whether ``python`` names this process's own interpreter (then no foreign workers are needed).

    Paths are compared without resolving links: every virtual environment's ``python`` links to
    the same base binary, and what tells them apart is the path (its ``pyvenv.cfg``).
    """
    import sys

    return os.path.abspath(python) == os.path.abspath(sys.executable)


def describe_interpreter(modules: Sequence[str], imported: bool = True) -> dict:
    """This interpreter and the versions of ``modules`` (top-level names; None when absent).

    ``imported=True`` reads ``__version__`` of modules already imported (a worker after its
    pre-imports); otherwise only looks them up, without importing anything heavy.
    """
    import importlib.util
    import platform
    import sys

    from importlib import metadata

    versions: dict[str, str | None] = {}
    dists: dict[str, list[str]] | None = None  # module -> distributions, read once when needed
    for name in dict.fromkeys(m.split(".")[0] for m in modules):
        mod = sys.modules.get(name)
        if mod is None and not imported:
            try:
                found = importlib.util.find_spec(name) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                versions[name] = None
                continue
            if dists is None:
                dists = metadata.packages_distributions()
            try:
                versions[name] = metadata.version((dists.get(name) or [name])[0])
            except metadata.PackageNotFoundError:
                versions[name] = "unknown"
            continue
        versions[name] = getattr(mod, "__version__", None) if mod is not None else None
    return {"python": platform.python_version(), "executable": sys.executable, "versions": versions}


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
    return [chain[0] for chain in run_chains(jobs, workers, preimport, isolate_network, progress)]


def run_chains(jobs: Sequence[Job], workers: int = 1, preimport: Sequence[str] = (),
               isolate_network: bool = False, progress: Callable[[int, int], None] | None = None,
               transport: str = "fork", python: str | None = None,
               env_info: dict | None = None) -> list[list[JobResult | None]]:
    """Like :func:`run_jobs`, with each job's ``then`` chain: one result list per job.

    ``transport="fork"``: workers are forked from this process and find the jobs in memory (any
    callable works). ``"spawn"``: fresh, small worker processes receive each job pickled (module-level
    functions only); forking a sandbox child from a small worker is much cheaper than from a
    scoring process that holds a whole dataset and its expected outputs.

    ``python``: run the workers under another interpreter (a pinned execution environment such as
    DS-1000's, see :mod:`evolcoder.worker`); jobs travel pickled, as with ``"spawn"``. ``env_info``
    (a dict) receives what the first worker reports of its interpreter and pre-imported libraries.
    """
    global _POOL_JOBS
    if python is not None and not same_interpreter(python):
        from evolcoder.worker import run_foreign

        return run_foreign(jobs, python, workers, preimport, isolate_network, progress, env_info)
    if env_info is not None:
        env_info.update(describe_interpreter(preimport, imported=False))
        env_info["preimported"] = [m for m in preimport if env_info["versions"].get(m.split(".")[0])]
    if transport == "spawn":
        return _run_spawned(jobs, workers, preimport, isolate_network, progress)
    results: list = [None] * len(jobs)
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


@contextlib.contextmanager
def _main_hidden() -> Iterator[None]:
    """Spawned workers must not re-run the caller's script (``__main__`` without a guard would
    start scoring again in every worker): hide its path while the workers start; they only need
    evolcoder's own module-level functions."""
    import sys

    main = sys.modules.get("__main__")
    saved = {k: getattr(main, k) for k in ("__file__", "__spec__") if main is not None and hasattr(main, k)}
    spec = saved.get("__spec__")
    hide = main is not None and "__file__" in saved and (spec is None or not getattr(spec, "name", None)
                                                         or spec.name == "__main__")
    if hide:
        del main.__file__
    try:
        yield
    finally:
        if hide:
            main.__file__ = saved["__file__"]


def _run_spawned(jobs, workers, preimport, isolate_network, progress) -> list:
    results: list = [None] * len(jobs)
    if not jobs:
        return []
    workers = max(1, min(int(workers), len(jobs)))
    ctx = multiprocessing.get_context("spawn")
    counter = ctx.Value("i", 0)
    with _main_hidden():
        pool = ctx.Pool(workers, initializer=_worker_init,
                        initargs=(counter, tuple(preimport), isolate_network))
    with pool:
        items = ((i, job) for i, job in enumerate(jobs))
        for done, (i, res) in enumerate(pool.imap_unordered(_worker_run_pickled, items), 1):
            results[i] = res
            if progress:
                progress(done, len(jobs))
    return results


def iter_chunks(seq: Sequence[Any], n: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


__all__ = ["Job", "JobResult", "Limits", "run_job", "run_chain", "run_jobs", "run_chains", "preload",
           "PASS", "FAIL", "TIMEOUT"]
