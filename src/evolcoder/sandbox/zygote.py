"""Inside a worker's bubblewrap sandbox: the pristine template that forks each job.

``python -S -B -m evolcoder.sandbox.zygote PREIMPORT_JSON`` with a unix socket on fd 3. It imports
what jobs need, says ``ready``, then for each request (limits as JSON, with the job's two pipe
ends as SCM_RIGHTS) forks a job and reports its exit status. It never receives a job, an input or
a result: the job reads its pickle from its own pipe and writes its result to the other, both
ends held by the worker outside. So a job never inherits memory that held another job's data.

Each job (:func:`_job`) gets, below the bubblewrap sandbox every job of the worker shares:

- its own user, PID, mount and IPC namespaces: it runs as PID 1 of a namespace that dies, with
  every process the sample started, when it exits (or is killed by the worker); its ``/proc``
  shows only that namespace; its ``/tmp`` and ``/dev/shm`` are its own tmpfs, gone with it;
  SysV IPC objects die with its IPC namespace;
- no capability (dropped after the mounts), ``no_new_privs`` (bwrap's, inherited);
- ``setrlimit``: address space (on top of the template's), CPU seconds, file size, no core
  files, a process count.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import signal
import socket
import struct
import sys

from evolcoder.sandbox.child import vm_bytes
from evolcoder.sandbox.isolation import (
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_REC,
    drop_capabilities,
    mount,
    write_file,
)

_CLONE_NEWNS, _CLONE_NEWIPC, _CLONE_NEWUSER, _CLONE_NEWPID = 0x00020000, 0x08000000, 0x10000000, 0x20000000
_LIBC = ctypes.CDLL(None, use_errno=True)


def _job(job_r: int, res_w: int, lim: dict) -> None:
    """PID 1 of the job's namespaces; never returns."""
    write, exit_ = os.write, os._exit
    try:
        _LIBC.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: dies with its parent
        os.setsid()
        mount(None, "/", None, MS_REC | MS_PRIVATE)
        tmp_opts = f"size={max(1, int(lim['fsize_mb']))}m,nr_inodes=4096,mode=1777"
        for d in ("/tmp", "/dev/shm"):
            if os.path.isdir(d):
                mount("tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV, tmp_opts)
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        drop_capabilities()
        os.chdir("/tmp")
        mem = int(lim["memory_mb"]) * 1024 * 1024 + vm_bytes()
        for what, value in (
            (resource.RLIMIT_AS, mem),
            (resource.RLIMIT_CPU, int(lim["cpu_s"])),
            (resource.RLIMIT_FSIZE, int(lim["fsize_mb"]) * 1024 * 1024),
            (resource.RLIMIT_CORE, 0),
            (resource.RLIMIT_NPROC, int(lim["nproc"]) or resource.RLIM_INFINITY),
        ):
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(what, (value, value))
        import pickle

        chunks = []
        while True:
            block = os.read(job_r, 1 << 20)
            if not block:
                break
            chunks.append(block)
        os.close(job_r)
        job = pickle.loads(b"".join(chunks))
        del chunks
        result = job.fn(*job.args)
        out = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
    except BaseException as exc:  # the harness itself failed (bad input, MemoryError, ...)
        try:
            import pickle

            out = pickle.dumps({"harness_error": f"{type(exc).__name__}: {exc}"[:500]})
        except BaseException:
            exit_(3)
    try:
        view = memoryview(len(out).to_bytes(8, "little") + out)
        while view:
            view = view[write(res_w, view) :]
    finally:
        exit_(0)


def _fork_job(job_r: int, res_w: int, lim: dict) -> None:
    """The job's parent: new namespaces for the job, fork it as their PID 1, exit with its status."""
    try:
        _LIBC.prctl(4, 1, 0, 0, 0)  # dumpable: the id maps are written through /proc/self
        uid, gid = os.getuid(), os.getgid()
        if _LIBC.unshare(_CLONE_NEWUSER | _CLONE_NEWPID | _CLONE_NEWNS | _CLONE_NEWIPC) != 0:
            os._exit(90)
        write_file("/proc/self/setgroups", "deny")
        write_file("/proc/self/uid_map", f"{uid} {uid} 1")
        write_file("/proc/self/gid_map", f"{gid} {gid} 1")
        pid = os.fork()
        if pid == 0:
            _job(job_r, res_w, lim)
        os.close(job_r)
        os.close(res_w)
        _, status = os.waitpid(pid, 0)
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
    except BaseException:
        code = 91
    os._exit(code)


JOB_MODULE = "evolcoder.benchmarks.harness"


def main() -> None:
    preimport = json.loads(sys.argv[1]) if len(sys.argv) > 1 else []
    sock = socket.socket(fileno=3)
    import site

    for d in filter(None, os.environ.pop("EVOLCODER_SITE_DIRS", "").split(":")):
        site.addsitedir(d)  # an execution environment bound whole (DS-1000's), with its .pth files
    import importlib

    # what every job runs: unpickling a job imports it anyway; importing it here, by name, does it once
    # for all jobs and keeps the sandbox package free of a static dependency on the adapters
    importlib.import_module(JOB_MODULE)
    import evolcoder.sandbox.jobs  # noqa: F401

    for name in preimport:
        try:
            if name == "matplotlib":
                import matplotlib

                matplotlib.use("Agg")
            __import__(name)
        except BaseException:
            pass
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    sock.send(b"ready")
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 4096, 2)
        except OSError:
            break
        if not msg or len(fds) != 2:
            break
        pid = os.fork()
        if pid == 0:
            sock.close()
            _fork_job(fds[0], fds[1], json.loads(msg))
        for fd in fds:
            os.close(fd)
        _, status = os.waitpid(pid, 0)
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
        sock.send(struct.pack("<i", code))
    os._exit(0)


if __name__ == "__main__":
    main()
