"""Sandboxed execution of generated code: one job, one freshly forked child process.

What the child gets (``_child``), in this order:

- a new session (``setsid``) so its whole process group can be killed;
- no inherited file descriptor but the write end of its result pipe (the worker's protocol pipes,
  the caller's files and sockets are closed), stdin/stdout/stderr on ``/dev/null``;
- its own mount namespace, where the OS allows it (root, or an unprivileged user namespace set up
  by the worker, see :class:`Isolation`): private, size-limited tmpfs on ``/tmp``, ``/var/tmp``,
  ``/dev/shm`` and ``/run/lock``, so nothing it writes there outlives the job; the project tree
  and ``$HOME`` hidden under empty tmpfs, with only the interpreter's own directories bound back
  read-only;
- a minimal environment (an allow-list: ``PATH``, ``LANG``, a temporary ``HOME``/``TMPDIR``,
  thread caps), never the caller's variables, so API keys are not there to read;
- ``setrlimit``: address space (on top of what the worker maps), CPU seconds, file size, no core
  files; as root it then drops to a dedicated unprivileged uid per worker slot (it can neither
  read the scorer's ``/proc/<pid>/mem`` or ``environ`` nor touch the machine's files), in a user
  namespace it drops every capability.

Verdicts are not decided here. The child sends back *data* (a pickle read with
:func:`safe_loads`, which builds plain builtin, collections, decimal/fractions and numpy values
only); the comparison with the expected outputs happens in the scoring process, which the child
cannot reach and whose expected outputs never enter the child's address space (see
:mod:`evolcoder.benchmarks.harness`). Whatever a sample writes to its result pipe is therefore
at most a claim about its own outputs.

The guard (:func:`run_job`) judges a CPU-bound program by CPU time only: ``RLIMIT_CPU`` and the
per-test CPU timers stop a program that spends its budget, however crowded the machine. The
wall clock only stops a program that is *not making progress*: the time it spends neither
running nor waiting for a CPU (``/proc/<pid>/task/*/schedstat``: sleeping, blocked on I/O or a
lock, stopped) may not exceed ``Limits.wall_s``. A starved program is never killed for it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pickle
import resource
import select
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

PASS = "pass"
FAIL = "fail"
TIMEOUT = "timeout"

# Sandbox users when running as root (nonexistent uids are fine): each worker process claims its
# own from SANDBOX_UID_BASE .. SANDBOX_UID_BASE + SANDBOX_UIDS - 1 (see sandbox_uid).
SANDBOX_UID_BASE = 61000
SANDBOX_UIDS = 1000
# Largest result a child may send: its memory allowance (it holds the pickle before sending it,
# so a larger claim is malformed); at least this many bytes.
MIN_RESULT_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed job."""

    wall_s: float = 10.0          # no-progress guard: wall time spent neither running nor runnable
    cpu_s: float | None = None    # RLIMIT_CPU (default: wall_s + 1)
    memory_mb: int = 2048         # RLIMIT_AS on top of the worker's own address space
    nproc: int = 32               # RLIMIT_NPROC (as the sandbox uid when root)
    fsize_mb: int = 64            # RLIMIT_FSIZE, and the size of each private tmpfs
    drop_privileges: bool = True  # root only: run as a dedicated unprivileged uid


@dataclass
class Job:
    """``fn(*args)`` runs in the sandboxed child and returns a dict of plain data."""

    fn: Callable[..., dict]
    args: tuple = ()
    limits: Limits = field(default_factory=Limits)
    trusted: bool = False  # trusted code (reference solutions): the result is read with plain pickle


@dataclass
class JobResult:
    status: str                     # "ok" (the harness returned), "timeout", "crash"
    result: dict | None             # what fn returned (only when status == "ok")
    detail: str = ""
    wall_s: float = 0.0
    cause: str = ""                 # timeouts: "cpu" (CPU budget spent) or "stall" (no progress)


# ----------------------------------------------------------------------------- what crosses back

# Globals a result pickle may name: constructors of plain values, nothing that runs code.
_SAFE_GLOBALS = {
    ("builtins", n) for n in ("complex", "list", "dict", "set", "frozenset", "tuple", "int", "float", "str",
                              "bytes", "bool", "bytearray", "range", "slice", "Ellipsis", "NotImplemented")
} | {("collections", n) for n in ("OrderedDict", "deque", "Counter", "defaultdict")} | {
    ("decimal", "Decimal"), ("fractions", "Fraction"), ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy.core.numeric", "_frombuffer"),
}


class UnsafeResult(Exception):
    """A child's result names a type outside the plain-value allow-list (or is malformed)."""


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise UnsafeResult(f"untrusted output type {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeResult("persistent ids are not allowed")


def safe_loads(data: bytes) -> Any:
    """Unpickle data written by untrusted code: plain values only, or :class:`UnsafeResult`."""
    try:
        return _SafeUnpickler(io.BytesIO(data)).load()
    except UnsafeResult:
        raise
    except Exception as exc:  # truncated, malformed, or a constructor refusing its arguments
        raise UnsafeResult(f"unreadable result ({type(exc).__name__})") from None


# ----------------------------------------------------------------------------- isolation

_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = (
    1, 2, 4, 32, 4096, 16384, 1 << 18)
_PRIVATE_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
# never hidden, whatever the working directory or $HOME
_SYSTEM_DIRS = {"/", "/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc", "/proc", "/dev", "/sys", "/run", "/var",
                "/opt", "/tmp", "/var/tmp"}


@dataclass
class Isolation:
    """How this worker process isolates its jobs (decided once, in :func:`init_worker`)."""

    mode: str = "none"             # "root" (uid switch), "userns" (unprivileged user namespace), "none"
    mounts: bool = False           # a mount namespace per job (private tmp dirs, hidden project tree)
    network: bool = False          # the worker sits in an empty network namespace
    hide: tuple[str, ...] = ()     # directories hidden under an empty tmpfs in each job
    keep: tuple[str, ...] = ()     # directories under ``hide`` bound back read-only (the interpreter)
    private: tuple[str, ...] = ()  # world-writable directories replaced by a private tmpfs

    def missing(self) -> list[str]:
        """The protections this worker lacks, in words."""
        out = []
        if self.mode == "none":
            out.append("no separate uid (a sample can signal this user's processes and read their "
                       "/proc files unless they are non-dumpable)")
        elif self.mode == "userns":
            out.append("no separate uid (the /proc files of this user's other processes stay readable)")
        if not self.mounts:
            out.append("no private /tmp, /var/tmp, /dev/shm (a per-job TMPDIR only) and the project tree is readable")
        if not self.network:
            out.append("network reachable")
        return out


_ISO = Isolation()
_LIBC: list = []


def _libc():
    if not _LIBC:
        import ctypes

        _LIBC.append(ctypes.CDLL(None, use_errno=True))
    return _LIBC[0]


def _errno_text() -> str:
    import ctypes

    return os.strerror(ctypes.get_errno())


def _mount(src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = (lambda s: s.encode() if s is not None else None)
    if _libc().mount(enc(src), enc(target), enc(fstype), flags, enc(data)) != 0:
        raise OSError(f"mount {target}: {_errno_text()}")


def _write_file(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def private_dirs() -> tuple[str, ...]:
    return tuple(d for d in _PRIVATE_DIRS if os.path.isdir(d) and not os.path.islink(d))


def plan_isolation(hide: Sequence[str] = (), keep: Sequence[str] = ()) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Directories to hide (project tree, $HOME) and to bind back (this interpreter's prefixes,
    also where they lie under a private tmp directory)."""
    hidden: list[str] = []
    for p in hide:
        if not p:
            continue
        rp = os.path.realpath(p)
        if rp in _SYSTEM_DIRS or not os.path.isdir(rp) or any(_under(rp, h) for h in hidden):
            continue
        hidden = [h for h in hidden if not _under(h, rp)] + [rp]
    wanted = [sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.dirname(__file__)),
              *keep]
    kept: list[str] = []
    for p in wanted:
        rp = os.path.realpath(p)
        covered = any(_under(rp, h) for h in (*hidden, *private_dirs()))
        if os.path.isdir(rp) and covered and not any(_under(rp, k) for k in kept):
            kept = [k for k in kept if not _under(k, rp)] + [rp]
    return tuple(hidden), tuple(kept)


def _enter_user_namespace(network: bool) -> bool:
    """Unprivileged: a user namespace (this uid mapped to 0) and optionally an empty network one."""
    uid, gid = os.getuid(), os.getgid()
    flags = _CLONE_NEWUSER | (_CLONE_NEWNET if network else 0)
    set_dumpable(True)  # the id maps are written through /proc/self, which a non-dumpable process does not own
    if _libc().unshare(flags) != 0:
        return False
    try:
        _write_file("/proc/self/setgroups", "deny")
        _write_file("/proc/self/uid_map", f"0 {uid} 1")
        _write_file("/proc/self/gid_map", f"0 {gid} 1")
    except OSError:
        return False
    return True


def setup_isolation(isolate_network: bool, hide: Sequence[str] = (), keep: Sequence[str] = ()) -> Isolation:
    """Once per worker process: decide and prepare how its jobs are isolated."""
    global _ISO
    hidden, kept = plan_isolation(hide, keep)
    iso = Isolation(hide=hidden, keep=kept, private=private_dirs())
    if os.geteuid() == 0:
        iso.mode = "root"
        iso.network = bool(isolate_network) and unshare_network()
    elif _enter_user_namespace(bool(isolate_network)):
        iso.mode = "userns"
        iso.network = bool(isolate_network)
    if iso.mode != "none":
        iso.mounts = _probe_mounts()
    _ISO = iso
    return iso


def _probe_mounts() -> bool:
    """Whether a child can get its own mount namespace with a tmpfs (tried once, in a fork)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        ok = False
        try:
            if _libc().unshare(_CLONE_NEWNS) == 0:
                _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
                _mount("tmpfs", "/tmp", "tmpfs", _MS_NOSUID | _MS_NODEV, "size=1m")
                ok = True
        except BaseException:
            pass
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def _isolate_mounts(iso: Isolation, uid: int | None, size_mb: int) -> str:
    """In the child: a private mount namespace; returns the job's working directory."""
    if _libc().unshare(_CLONE_NEWNS) != 0:
        raise OSError(f"unshare(mount): {_errno_text()}")
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    # opened in the new namespace, before anything is covered: bound back from these below
    keep_fds = [(k, os.open(k, os.O_PATH | os.O_DIRECTORY)) for k in iso.keep]
    opts = f"size={max(1, int(size_mb))}m,nr_inodes=4096"
    for d in iso.private:
        _mount("tmpfs", d, "tmpfs", _MS_NOSUID | _MS_NODEV, opts + ",mode=1777")
    for h in iso.hide:
        if os.path.isdir(h):
            _mount("tmpfs", h, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=1m,mode=755")
    for k, fd in keep_fds:
        os.makedirs(k, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", k, None, _MS_BIND | _MS_REC)
        with contextlib.suppress(OSError):
            _mount(None, k, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY)
        os.close(fd)
    for h in iso.hide:  # the tmpfs over a hidden tree becomes read-only once the binds are in place
        with contextlib.suppress(OSError):
            _mount(None, h, None, _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV, "size=1m,mode=755")
    workdir = "/tmp/job"
    os.mkdir(workdir, 0o700)
    if uid is not None:
        os.chown(workdir, uid, uid)
    return workdir


def _drop_capabilities() -> None:
    """User-namespace mode: the sample keeps uid 0 of the namespace but no capability."""
    import ctypes

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    libc = _libc()
    libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
    for cap in range(64):
        libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP
    hdr = Header(0x20080522, 0)
    data = (Data * 2)()
    if libc.capset(ctypes.byref(hdr), data) != 0:
        raise OSError(f"capset: {_errno_text()}")


def set_dumpable(value: bool) -> None:
    """``PR_SET_DUMPABLE``: a non-dumpable process's /proc memory and environ are closed to its uid."""
    with contextlib.suppress(Exception):
        _libc().prctl(4, 1 if value else 0, 0, 0, 0)


# ----------------------------------------------------------------------------- the child

_ENV_KEEP = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
             "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "TF_CPP_MIN_LOG_LEVEL", "MPLBACKEND",
             "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def minimal_env(home: str) -> dict[str, str]:
    """The whole environment a sandboxed program sees (an allow-list, no caller variables)."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": home,
           "TMPDIR": home, "TMP": home, "TEMP": home, "PYTHONDONTWRITEBYTECODE": "1"}
    env.update({k: os.environ[k] for k in _ENV_KEEP if k in os.environ})
    return env


def _vm_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def _set_limits(limits: Limits) -> None:
    # memory_mb on top of what the (forked) process already maps: the workers hold the dataset and
    # inputs, which must not eat into the sample's allowance
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


def _child(job: Job, wfd: int, workdir: str | None, uid: int | None) -> None:
    """Runs in the forked child; never returns."""
    write = os.write
    dumps = _pickle_dumps
    exit_ = os._exit
    iso = _ISO
    try:
        os.setsid()
        os.closerange(3, wfd)
        os.closerange(wfd + 1, 1 << 16)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        if devnull > 2:
            os.close(devnull)
        if workdir is None:
            workdir = _isolate_mounts(iso, uid, job.limits.fsize_mb)
        os.chdir(workdir)
        env = minimal_env(workdir)
        os.environ.clear()
        os.environ.update(env)
        tempfile.tempdir = workdir
        _set_limits(job.limits)
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NPROC, (job.limits.nproc, job.limits.nproc))
            os.setuid(uid)
        elif iso.mode == "userns" and not job.trusted:
            _drop_capabilities()
        elif job.limits.nproc and iso.mode == "none":
            # RLIMIT_NPROC counts all of this user's processes, so allow what is there
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


_PICKLE_DUMPS = pickle.dumps  # bound at import


def _pickle_dumps(obj: Any) -> bytes:
    return _PICKLE_DUMPS(obj, protocol=pickle.HIGHEST_PROTOCOL)


def _count_user_procs() -> int:
    uid = os.getuid()
    n = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{name}").st_uid == uid:
                    n += 1
    return n


# ----------------------------------------------------------------------------- the guard

def _active_seconds(pid: int) -> float | None:
    """Time ``pid`` spent running or waiting for a CPU (max over its threads), from schedstat."""
    best = None
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        tids = [str(pid)]
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as fh:
                run_ns, wait_ns = fh.read().split()[:2]
        except (OSError, ValueError):
            continue
        t = (int(run_ns) + int(wait_ns)) / 1e9
        best = t if best is None or t > best else best
    return best


def _cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _job_cpu_seconds(pid: int, uid: int | None) -> float:
    """CPU time of every live process of a job: those of its sandbox uid (root), else those in its
    session (the child's ``setsid``), so a sample cannot outrun its budget by forking or threading."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if uid is not None and os.stat(f"/proc/{name}").st_uid != uid:
                continue
            with open(f"/proc/{name}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except (OSError, ValueError, IndexError):
            continue
        if uid is None and (len(fields) < 4 or int(fields[3]) != pid):  # session id
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


class _Progress:
    """Wall time a job spent without progress: neither running nor runnable (schedstat), or, where
    schedstat is missing, the polling intervals in which its CPU time did not advance."""

    def __init__(self, pid: int, start: float):
        self.pid, self.start = pid, start
        self.schedstat = _active_seconds(pid) is not None
        self.last_cpu: float | None = None
        self.last_t = start
        self.idle = 0.0

    def idle_seconds(self, now: float) -> float:
        if self.schedstat:
            active = _active_seconds(self.pid)
            if active is not None:
                return max(0.0, (now - self.start) - active)
        cpu = _cpu_seconds(self.pid)
        if cpu is None:
            return now - self.start
        if self.last_cpu is not None and cpu <= self.last_cpu:
            self.idle += now - self.last_t
        self.last_cpu, self.last_t = cpu, now
        return self.idle


_CLAIMED_UID: list = []  # (uid, lock fd) held for this process's lifetime


def sandbox_uid() -> int:
    """This process's own sandbox uid (root only): the first of ``SANDBOX_UID_BASE + k`` whose lock
    no other live process holds. Two scorers on one machine never share a uid, so one's cleanup
    (``kill(-1)`` as that uid) never kills the other's jobs."""
    if _CLAIMED_UID:
        return _CLAIMED_UID[0][0]
    import fcntl

    lock_dir = "/run/evolcoder-sandbox"
    try:
        os.makedirs(lock_dir, 0o700, exist_ok=True)
    except OSError:
        lock_dir = os.path.join(tempfile.gettempdir(), f"evolcoder-sandbox-{os.getuid()}")
        os.makedirs(lock_dir, 0o700, exist_ok=True)
    for k in range(SANDBOX_UIDS):
        uid = SANDBOX_UID_BASE + k
        fd = os.open(os.path.join(lock_dir, f"{uid}.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        _CLAIMED_UID.append((uid, fd))
        return uid
    raise RuntimeError(f"all {SANDBOX_UIDS} sandbox uids from {SANDBOX_UID_BASE} are in use")


def run_job(job: Job, slot: int = 0) -> JobResult:
    """Run one job in a sandboxed child and wait for it (guarded: CPU limits and no-progress guard).

    ``slot`` is kept for callers' bookkeeping; the sandbox uid is this process's own (:func:`sandbox_uid`)."""
    iso = _ISO
    is_root = os.geteuid() == 0 and iso.mode != "userns"
    uid = sandbox_uid() if (is_root and job.limits.drop_privileges) else None
    if uid is not None and not _SUBREAPER:
        prepare_process_for_sandbox()
    workdir = None
    if not (iso.mounts and not job.trusted):
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
    too_big = False
    stall = job.limits.wall_s
    cpu_budget = (job.limits.cpu_s if job.limits.cpu_s is not None else job.limits.wall_s + 1) + 1
    progress = None
    over_cpu = False
    max_bytes = max(MIN_RESULT_BYTES, int(job.limits.memory_mb) * 1024 * 1024)
    try:
        # a length-prefixed message: grandchildren holding the pipe open cannot stall us
        while need is None or len(buf) < need + 8:
            now = time.monotonic()
            wait = 0.25
            if now - start >= 0.5 and _job_cpu_seconds(pid, uid) > cpu_budget:
                over_cpu = True  # its processes together spent the budget (forks, threads)
                break
            if now - start >= stall:
                progress = progress or _Progress(pid, start)
                if progress.idle_seconds(now) >= stall:
                    timed_out = True
                    break
            else:
                wait = min(wait, stall - (now - start) + 0.01)
            ready, _, _ = select.select([rfd], [], [], wait)
            if not ready:
                continue
            block = os.read(rfd, 1 << 16)
            if not block:
                break
            buf += block
            if need is None and len(buf) >= 8:
                need = int.from_bytes(buf[:8], "little")
                if need > max_bytes:
                    too_big = True
                    break
    finally:
        os.close(rfd)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        _, wstatus = _waitpid(pid)
        if uid is not None:
            if _uid_has_processes(uid):
                _kill_uid(uid)
        else:
            _kill_orphans()
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
    wall = time.monotonic() - start
    complete = need is not None and not too_big and len(buf) >= need + 8
    if too_big:
        return JobResult("crash", None, f"result larger than its memory limit ({max_bytes >> 20} MiB)", wall)
    if over_cpu and not complete:
        return JobResult(TIMEOUT, None, f"CPU budget spent ({cpu_budget:.1f}s CPU by the job's processes together)",
                         wall, cause="cpu")
    if timed_out and not complete:
        return JobResult(TIMEOUT, None, f"no progress for {stall:.1f}s of wall time (sleeping, blocked or stopped)",
                         wall, cause="stall")
    data = bytes(buf[8:8 + need]) if complete else b""
    if not data:
        if os.WIFSIGNALED(wstatus) and os.WTERMSIG(wstatus) in (signal.SIGXCPU, signal.SIGKILL):
            cpu = job.limits.cpu_s if job.limits.cpu_s is not None else job.limits.wall_s + 1
            return JobResult(TIMEOUT, None, f"CPU budget spent ({cpu:.1f}s CPU, signal {os.WTERMSIG(wstatus)})",
                             wall, cause="cpu")
        code = os.WEXITSTATUS(wstatus) if os.WIFEXITED(wstatus) else -os.WTERMSIG(wstatus)
        return JobResult("crash", None, f"no result (exit status {code})", wall)
    try:
        result = pickle.loads(data) if job.trusted else safe_loads(data)
    except UnsafeResult as exc:
        return JobResult("crash", None, str(exc), wall)
    except Exception:
        return JobResult("crash", None, "unreadable result", wall)
    if not isinstance(result, dict):
        return JobResult("crash", None, "unreadable result", wall)
    if "harness_error" in result:
        return JobResult("crash", None, str(result["harness_error"]), wall)
    return JobResult("ok", result, "", wall)


def _waitpid(pid: int) -> tuple[int, int]:
    while True:
        try:
            return os.waitpid(pid, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            return pid, 0


# ----------------------------------------------------------------------------- cleanup

def _set_subreaper() -> None:
    """Orphans of sandboxed jobs get re-parented to this process, which reaps them."""
    with contextlib.suppress(Exception):
        _libc().prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def _proc_ppid(name: str) -> int | None:
    try:
        with open(f"/proc/{name}/stat", "rb") as fh:
            return int(fh.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _reap_uid(uid: int) -> None:
    """Wait for our (re-parented) children that ran as ``uid``."""
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.stat(f"/proc/{name}").st_uid != uid:
                continue
        except OSError:
            continue
        if _proc_ppid(name) == me:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(int(name), 0)


def _kill_orphans() -> None:
    """Not root: kill and reap every remaining child of this worker (a job's escaped descendants,
    re-parented here by the subreaper); the worker has no other children."""
    if not _SUBREAPER:
        return
    me = os.getpid()
    for _ in range(3):
        kids = [int(n) for n in os.listdir("/proc") if n.isdigit() and _proc_ppid(n) == me]
        if not kids:
            return
        for k in kids:
            with contextlib.suppress(OSError):
                os.kill(k, signal.SIGKILL)
        for k in kids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(k, 0)


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
    import importlib.util
    import pkgutil
    import sysconfig
    import warnings

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
    """Once per process that forks sandboxed children: subreaper; as root without private mounts,
    the standard library pre-imported (an unprivileged uid may not be able to read it)."""
    if not _SUBREAPER:
        _set_subreaper()
        _SUBREAPER.append(True)
        if os.geteuid() == 0 and _ISO.mode == "root" and not _ISO.mounts and not stdlib_readable_by_others():
            preload_stdlib()


# ----------------------------------------------------------------------------- worker set-up

def init_worker(slot: int, preimport: Sequence[str], isolate_network: bool, hide: Sequence[str] = (),
                keep: Sequence[str] = ()) -> Isolation:
    """Set up a worker process: thread caps, pre-imports, isolation, subreaper, non-dumpable."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ.setdefault(var, "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("MPLBACKEND", "Agg")
    iso = setup_isolation(isolate_network, hide, keep)  # before any thread exists (user namespaces)
    preload(preimport)
    prepare_process_for_sandbox()
    set_dumpable(False)  # a same-uid sample cannot read or write this worker's memory
    return iso


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
    """Whether ``python`` names this process's own interpreter.

    Paths are compared without resolving links: every virtual environment's ``python`` links to
    the same base binary, and what tells them apart is the path (its ``pyvenv.cfg``).
    """
    return os.path.abspath(python) == os.path.abspath(sys.executable)


def describe_interpreter(modules: Sequence[str], imported: bool = True) -> dict:
    """This interpreter and the versions of ``modules`` (top-level names; None when absent).

    ``imported=True`` reads ``__version__`` of modules already imported (a worker after its
    pre-imports); otherwise only looks them up, without importing anything heavy.
    """
    import importlib.util
    import platform
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
        return _libc().unshare(_CLONE_NEWNET) == 0
    except Exception:
        return False


def describe_isolation(iso: Isolation) -> dict:
    return {"mode": iso.mode, "private_tmp": iso.mounts, "network_isolated": iso.network,
            "hidden": list(iso.hide) if iso.mounts else [], "missing": iso.missing()}


__all__ = ["Job", "JobResult", "Limits", "Isolation", "run_job", "safe_loads", "UnsafeResult", "preload",
           "init_worker", "minimal_env", "PASS", "FAIL", "TIMEOUT"]
