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
from typing import Any

from evolcoder.sandbox import isolation
from evolcoder.sandbox.isolation import (
    Isolation,
    drop_capabilities,
    isolate_mounts,
    libc,
    sandbox_uid,
    set_dumpable,
    setup_isolation,
)
from evolcoder.sandbox.jobs import TIMEOUT, Job, JobResult, Limits
from evolcoder.sandbox.values import UnsafeResult, safe_loads

log = logging.getLogger(__name__)

# Largest result a child may send: its memory allowance (it holds the pickle before sending it,
# so a larger claim is malformed); at least this many bytes.
MIN_RESULT_BYTES = 64 * 1024 * 1024


# thread pools of numerical libraries: one thread each in a worker (set in init_worker)
_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
)
_ENV_KEEP = (
    *_THREAD_VARS,
    "TF_CPP_MIN_LOG_LEVEL",
    "MPLBACKEND",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
)


def minimal_env(home: str) -> dict[str, str]:
    """The whole environment a sandboxed program sees (an allow-list, no caller variables)."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": home,
        "TMPDIR": home,
        "TMP": home,
        "TEMP": home,
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.update({k: os.environ[k] for k in _ENV_KEEP if k in os.environ})
    return env


def vm_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def _set_limits(limits: Limits) -> None:
    # memory_mb on top of what the (forked) process already maps: the workers hold the dataset and
    # inputs, which must not eat into the sample's allowance
    mem = int(limits.memory_mb) * 1024 * 1024 + vm_bytes()
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
    iso = isolation.current()
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
            workdir = isolate_mounts(iso, uid, job.limits.fsize_mb)
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
        elif iso.mode == "userns":
            drop_capabilities()
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


def _schedstat_ns(pid: int) -> dict[str, int]:
    """Nanoseconds each thread of ``pid`` spent running or waiting for a CPU (schedstat); {} once it is gone."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        tids = [str(pid)]
    out = {}
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as fh:
                run_ns, wait_ns = fh.read().split()[:2]
            out[tid] = int(run_ns) + int(wait_ns)
        except (OSError, ValueError):
            continue
    return out


def _active_seconds(pid: int) -> float | None:
    """Time ``pid`` spent running or waiting for a CPU (max over its threads), from schedstat."""
    ns = _schedstat_ns(pid)
    return max(ns.values()) / 1e9 if ns else None


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

    def mark_active(self, now: float) -> None:
        """The job made progress up to ``now`` that its scheduler counters may not show (it wrote
        its result into a pipe the worker was slow to drain)."""
        if self.schedstat:
            active = _active_seconds(self.pid)
            if active is not None:
                self.start = now - active  # no idle time accrued so far
                return
        self.last_cpu, self.last_t = None, now

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


class _Template:
    """The worker's bubblewrap sandbox holding the pristine template (:mod:`evolcoder.sandbox.zygote`)
    that forks each job; started once per worker (again if it dies)."""

    def __init__(self, uid: int | None):
        import json
        import socket

        from evolcoder.sandbox import bwrap

        iso = isolation.current()
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        cmd = bwrap.argv(
            iso.plan,
            minimal_env(bwrap.WORKDIR),
            1,
            [iso.plan.python, "-S", "-B", "-m", "evolcoder.sandbox.zygote", json.dumps(_template_imports())],
        )
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                os.setsid()
                devnull = os.open(os.devnull, os.O_RDWR)
                fd = os.dup2(theirs.fileno(), 16, inheritable=False)
                for k in range(3):
                    os.dup2(devnull, k)
                os.dup2(fd, 3)
                os.closerange(4, 1 << 16)
                if uid is not None:
                    os.setgroups([])
                    os.setgid(uid)
                    os.setuid(uid)
                os.execv(cmd[0], cmd)
            finally:
                os._exit(127)
        theirs.close()
        self.pid, self.sock = pid, mine
        self.pending = False  # a finished job's exit status not read yet
        mine.settimeout(120)
        try:
            ok = mine.recv(16) == b"ready"
        except OSError:
            ok = False
        if not ok:
            self.close()
            raise OSError("the bubblewrap template did not start")
        self.fixed = set(_tree(pid))  # bwrap, its PID 1, the template: never a job's

    def alive(self) -> bool:
        return _proc_ppid(str(self.pid)) is not None

    def start(self, limits: Limits, payload: bytes):
        """Fork a job: its pickle goes to it through a pipe (a thread writes it), its result comes
        back on another; returns (result read fd, feeder thread)."""
        import fcntl
        import json
        import socket
        import threading

        # a job that forged its result and lives on: kill it now
        if self.pending and self._status(0.5) is None and self.finish(wait=True) is None:
            raise OSError("the bubblewrap template is gone")
        job_r, job_w = os.pipe()
        res_r, res_w = os.pipe()
        lim = {
            "memory_mb": limits.memory_mb,
            "cpu_s": int(limits.cpu_s if limits.cpu_s is not None else limits.wall_s + 1) + 1,
            "fsize_mb": limits.fsize_mb,
            "nproc": limits.nproc,
        }
        try:
            socket.send_fds(self.sock, [json.dumps(lim).encode()], [job_r, res_w])
        finally:
            os.close(job_r)
            os.close(res_w)
        with contextlib.suppress(OSError):
            fcntl.fcntl(job_w, 1031, min(len(payload) + 16, 1 << 20))  # F_SETPIPE_SZ
        view = memoryview(payload)
        os.set_blocking(job_w, False)
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            while view:
                view = view[os.write(job_w, view) :]
        if not view:  # it all fit in the pipe
            os.close(job_w)
            return res_r, None
        os.set_blocking(job_w, True)

        def feed() -> None:
            try:
                rest = view
                while rest:
                    rest = rest[os.write(job_w, rest) :]
            except OSError:
                pass
            finally:
                os.close(job_w)

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        return res_r, feeder

    def finish(self, wait: bool, closed: bool = False) -> int | None:
        """Kill what is left of the job (its namespace dies with its PID 1), then its exit code as
        the template reports it (None: the template is gone). Without ``wait`` (the job sent its
        result and exits by itself) nothing is killed now: the code is read before the next job
        starts, and a job still alive then is killed. ``closed``: the job closed its result pipe
        (it has usually exited): its own exit code is awaited a moment before anything is killed,
        so that the kill's signal is not taken for the job's."""
        if not wait:
            self.pending = True
            return 0
        if closed:
            import struct

            with contextlib.suppress(OSError):
                self.sock.settimeout(0.5)
                data = self.sock.recv(16)
                if len(data) == 4:  # its PID 1 exited: the kernel ended its namespace's processes
                    self.pending = False
                    return struct.unpack("<i", data)[0]
        _kill_until_gone(lambda: [p for p in _tree(self.pid) if p not in self.fixed], 50, 0.002)
        self.pending = True
        return self._status()

    def _status(self, timeout: float = 30.0) -> int | None:
        import struct

        try:
            self.sock.settimeout(timeout)
            data = self.sock.recv(16)
        except OSError:
            return None
        self.pending = False
        return struct.unpack("<i", data)[0] if len(data) == 4 else None

    def close(self) -> None:
        """The template exits when its socket closes (so its CPU time is accounted); killed if not."""
        with contextlib.suppress(OSError):
            self.sock.close()
        gone = False
        for _ in range(200):
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(self.pid, os.WNOHANG)[0]:
                    gone = True
                    break
            time.sleep(0.01)
        if not gone:
            with contextlib.suppress(OSError):
                os.killpg(self.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)

        # bwrap's PID 1 and the template die with it (die-with-parent): wait until they are gone
        # (re-parented to this worker, a subreaper, which reaps them)
        def left() -> list[int]:
            with contextlib.suppress(ChildProcessError):
                while os.waitpid(-1, os.WNOHANG)[0]:
                    pass
            return [p for p in self.fixed if p != self.pid and _proc_ppid(str(p)) is not None]

        _kill_until_gone(left, 500, 0.01)


def _kill_until_gone(alive: Callable[[], list[int]], rounds: int, pause: float) -> None:
    """SIGKILL what ``alive()`` lists until it lists nothing (at most ``rounds`` times)."""
    for _ in range(rounds):
        left = alive()
        if not left:
            return
        for p in left:
            with contextlib.suppress(OSError):
                os.kill(p, signal.SIGKILL)
        time.sleep(pause)


_TEMPLATE: list = []


def shutdown() -> None:
    """End this worker's template (at the worker's exit)."""
    while _TEMPLATE:
        _TEMPLATE.pop().close()


# standard-library modules a sample commonly imports: loaded once in the template
_COMMON = [
    "typing",
    "re",
    "collections",
    "itertools",
    "functools",
    "math",
    "heapq",
    "string",
    "hashlib",
    "random",
    "bisect",
    "statistics",
    "fractions",
    "decimal",
    "datetime",
    "copy",
    "operator",
    "json",
    "shutil",
    "subprocess",
    "tempfile",
    "array",
    "cmath",
]


def _template_imports() -> list[str]:
    """What the template pre-imports: the allowed packages and common standard-library modules."""
    return list(dict.fromkeys([*isolation.current().allowed, *_COMMON]))


def _template(uid: int | None) -> _Template:
    if _TEMPLATE and not _TEMPLATE[0].alive():
        _TEMPLATE.pop().close()
    if not _TEMPLATE:
        _TEMPLATE.append(_Template(uid))
    return _TEMPLATE[0]


def _proc_table() -> dict[int, list[bytes]]:
    """pid -> its /proc stat fields after the command name."""
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as fh:
                    out[int(name)] = fh.read().rsplit(b")", 1)[1].split()
            except (OSError, IndexError):
                continue
    return out


def _tree(root: int, table: dict[int, list[bytes]] | None = None) -> list[int]:
    """``root`` and its live descendants (a bubblewrap job's whole PID namespace)."""
    table = _proc_table() if table is None else table
    kids: dict[int, list[int]] = {}
    for pid, f in table.items():
        with contextlib.suppress(ValueError, IndexError):
            kids.setdefault(int(f[1]), []).append(pid)
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        if p in table:
            out.append(p)
        todo += kids.get(p, [])
    return out


def _tree_cpu_seconds(root: int, skip: set = frozenset(), table: dict | None = None) -> float:
    table = _proc_table() if table is None else table
    ticks = 0
    for p in _tree(root, table):
        if p in skip:
            continue
        with contextlib.suppress(ValueError, IndexError):
            ticks += int(table[p][11]) + int(table[p][12])
    return ticks / os.sysconf("SC_CLK_TCK")


class _TreeProgress:
    """No-progress time of a job's process tree: polling intervals in which none of its threads
    ran or waited for a CPU (schedstat), so a starved program counts as progressing."""

    def __init__(self, root: int, start: float, skip: set = frozenset()):
        self.root, self.last_t, self.skip = root, start, skip
        self.seen: dict[tuple[int, str], int] = {}
        self.idle = 0.0
        self._active(None)

    def _active(self, table: dict | None) -> int:
        delta = 0
        for p in _tree(self.root, table):
            if p in self.skip:
                continue
            for tid, v in _schedstat_ns(p).items():
                delta += max(0, v - self.seen.get((p, tid), 0))
                self.seen[(p, tid)] = v
        return delta

    def mark_active(self, now: float) -> None:
        """The interval up to ``now`` counts as progress (the job wrote result bytes)."""
        self._active(None)
        self.last_t = now

    def idle_seconds(self, now: float, table: dict | None = None) -> float:
        dt = now - self.last_t
        if self._active(table) < 0.05 * dt * 1e9:
            self.idle += dt
        self.last_t = now
        return self.idle


def run_job(job: Job, slot: int = 0, payload: bytes | None = None) -> JobResult:
    """Run one job in a sandboxed child and wait for it (guarded: CPU limits and no-progress guard).

    With bubblewrap (:mod:`evolcoder.sandbox.bwrap`) the child is forked by the worker's pristine
    template into its own namespaces; without it, or for a callable that cannot be named by a
    pickle (tests' lambdas), a child forked from this worker.

    ``payload``: the job already pickled (a worker passes on what the pool sent, without unpickling
    its inputs; ``job`` then only carries the limits). ``slot`` is kept for callers' bookkeeping;
    the sandbox uid is this process's own (:func:`sandbox_uid`)."""
    iso = isolation.current()
    is_root = os.geteuid() == 0 and iso.mode != "userns"
    uid = sandbox_uid() if (is_root and job.limits.drop_privileges) else None
    if not _SUBREAPER:
        prepare_process_for_sandbox()
    if payload is not None and not iso.bwrap:
        job, payload = pickle.loads(payload), None
    if iso.bwrap and payload is None:
        with contextlib.suppress(Exception):
            payload = _pickle_dumps(job)
    workdir = None
    if payload is None and not iso.mounts:
        workdir = tempfile.mkdtemp(prefix="evolcoder-sbx-")
        if uid is not None:
            os.chown(workdir, uid, uid)
    start = time.monotonic()
    tpl = None
    skip: set = set()
    if payload is not None:
        tpl = _template(uid)
        pid, skip = tpl.pid, tpl.fixed
        rfd, feeder = tpl.start(job.limits, payload)
    else:
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            os.close(rfd)
            _child(job, wfd, workdir, uid)
        os.close(wfd)
        feeder = None
    tree = payload is not None  # account the job by its process tree (bwrap), else by uid/session
    buf = bytearray()
    need: int | None = None
    timed_out = False
    closed = False  # the job closed its result pipe
    too_big = False
    stall = min(job.limits.wall_s, job.limits.idle_s)
    cpu_budget = (job.limits.cpu_s if job.limits.cpu_s is not None else job.limits.wall_s + 1) + 1
    progress = None
    over_cpu = False
    max_bytes = max(MIN_RESULT_BYTES, int(job.limits.memory_mb) * 1024 * 1024)
    last_poll = -1.0
    flowing = False  # result bytes arrived since the last poll: the job is writing, not idle
    try:
        # a length-prefixed message: grandchildren holding the pipe open cannot stall us
        while need is None or len(buf) < need + 8:
            now = time.monotonic()
            # a long job is polled once a second (a /proc scan reads every process's stat), and
            # between polls the result pipe is drained without scanning
            wait = 1.0 if tree and now - start >= 2.0 else 0.25
            if last_poll >= 0 and now - last_poll < wait:
                wait -= now - last_poll  # between polls: only drain the pipe
            else:
                last_poll = now
                if flowing and progress is not None:
                    progress.mark_active(now)
                flowing = False
                table = _proc_table() if tree and now - start >= 0.5 else None  # one /proc scan per poll
                if (
                    now - start >= 0.5
                    and (_tree_cpu_seconds(pid, skip, table) if tree else _job_cpu_seconds(pid, uid)) > cpu_budget
                ):
                    over_cpu = True  # its processes together spent the budget (forks, threads)
                    break
                if tree and now - start >= 0.5:
                    progress = progress or _TreeProgress(pid, now, skip)
                    if progress.idle_seconds(now, table) >= stall:
                        timed_out = True
                        break
                elif now - start >= stall:
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
                closed = True
                break
            buf += block
            flowing = True
            if need is None and len(buf) >= 8:
                need = int.from_bytes(buf[:8], "little")
                if need > max_bytes:
                    too_big = True
                    break
    finally:
        os.close(rfd)
        if tpl is not None:
            code = tpl.finish(wait=not (need is not None and len(buf) >= need + 8), closed=closed)
            if code is None:
                _TEMPLATE.remove(tpl)
                tpl.close()
                code = 137
            wstatus = code << 8  # as waitpid reports an exit code
        else:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            _, wstatus = _waitpid(pid)
        if feeder is not None:
            feeder.join()
        if tpl is None and uid is not None:  # the template's own processes run as the sandbox uid
            if _uid_has_processes(uid):
                _kill_uid(uid)
        elif tpl is None:
            _kill_orphans()
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
    wall = time.monotonic() - start
    complete = need is not None and not too_big and len(buf) >= need + 8
    if too_big:
        return JobResult("crash", None, f"result larger than its memory limit ({max_bytes >> 20} MiB)", wall)
    if over_cpu and not complete:
        return JobResult(
            TIMEOUT,
            None,
            f"CPU budget spent ({cpu_budget:.1f}s CPU by the job's processes together)",
            wall,
            cause="cpu",
        )
    if timed_out and not complete:
        return JobResult(
            TIMEOUT,
            None,
            f"no progress for {stall:.1f}s of wall time (sleeping, blocked or stopped)",
            wall,
            cause="stall",
        )
    data = bytes(buf[8 : 8 + need]) if complete else b""
    if not data:
        if tree and os.WIFEXITED(wstatus) and os.WEXITSTATUS(wstatus) - 128 in (signal.SIGXCPU, signal.SIGKILL):
            wstatus = os.WEXITSTATUS(wstatus) - 128  # the template reports 128 + the job's signal
        if os.WIFSIGNALED(wstatus) and os.WTERMSIG(wstatus) in (signal.SIGXCPU, signal.SIGKILL):
            cpu = job.limits.cpu_s if job.limits.cpu_s is not None else job.limits.wall_s + 1
            return JobResult(
                TIMEOUT, None, f"CPU budget spent ({cpu:.1f}s CPU, signal {os.WTERMSIG(wstatus)})", wall, cause="cpu"
            )
        code = os.WEXITSTATUS(wstatus) if os.WIFEXITED(wstatus) else -os.WTERMSIG(wstatus)
        return JobResult("crash", None, f"no result (exit status {code})", wall)
    try:
        result = safe_loads(data)
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


def _set_subreaper() -> None:
    """Orphans of sandboxed jobs get re-parented to this process, which reaps them."""
    with contextlib.suppress(Exception):
        libc().prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


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
_STDLIB_SKIP = {
    "antigravity",
    "this",
    "idlelib",
    "tkinter",
    "turtle",
    "turtledemo",
    "ensurepip",
    "venv",
    "lib2to3",
    "test",
    "__phello__",
    "_tkinter",
    "pydoc_data",
    "msvcrt",
    "winreg",
    "winsound",
    "_winapi",
    "nt",
    "_msi",
    "msilib",
    "_overlapped",
    "asyncio.windows_events",
    "asyncio.windows_utils",
    "multiprocessing.popen_spawn_win32",
    "encodings.mbcs",
    "encodings.oem",
    "distutils.command.bdist_msi",
    "readline",
    "rlcompleter",
}


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
                if spec is None or (
                    origin not in ("built-in", "frozen") and not os.path.realpath(origin).startswith(stdlib)
                ):
                    continue  # absent, or shadowed by a file of the same name outside the stdlib
                mod = importlib.import_module(name)
                n += 1
            except BaseException:
                continue
            if hasattr(mod, "__path__"):
                for info in pkgutil.walk_packages(mod.__path__, name + ".", onerror=lambda _: None):
                    sub = info.name
                    if (
                        sub in _STDLIB_SKIP
                        or sub.split(".")[0] in _STDLIB_SKIP
                        or ".test" in sub
                        or sub.endswith("__main__")
                    ):
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
        if (
            os.geteuid() == 0
            and isolation.current().mode == "root"
            and not isolation.current().mounts
            and not stdlib_readable_by_others()
        ):
            preload_stdlib()


def _probe_job() -> dict:
    return {"ok": True}


def _bwrap_probe() -> bool:
    """Whether a trivial job runs under the isolation being set up (through :func:`run_job`)."""
    res = run_job(Job(_probe_job, (), Limits(wall_s=20.0, idle_s=20.0, cpu_s=20.0, memory_mb=256)))
    return res.status == "ok" and res.result == {"ok": True}


def init_worker(
    slot: int, preimport: Sequence[str], isolate_network: bool, hide: Sequence[str] = (), keep: Sequence[str] = ()
) -> Isolation:
    """Set up a worker process: thread caps, pre-imports, isolation, subreaper, non-dumpable."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for var in _THREAD_VARS:
        os.environ.setdefault(var, "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("MPLBACKEND", "Agg")
    # before any thread exists
    iso = setup_isolation(isolate_network, hide, keep, allowed=preimport, probe=_bwrap_probe)
    if not iso.bwrap:  # with bubblewrap the template imports them, not this worker
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
