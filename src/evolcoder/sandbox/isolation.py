"""How a worker isolates its jobs: user and mount namespaces, private temp dirs, a hidden project
tree, an empty network namespace, a sandbox uid per worker process (root), dropped capabilities."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

# Sandbox users when running as root (nonexistent uids are fine): each worker process claims its
# own from SANDBOX_UID_BASE .. SANDBOX_UID_BASE + SANDBOX_UIDS - 1 (see sandbox_uid).
SANDBOX_UID_BASE = 61000
SANDBOX_UIDS = 1000

_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
# mount(2) flags
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
_PRIVATE_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
# never hidden, whatever the working directory or $HOME
_SYSTEM_DIRS = {
    "/",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
    "/etc",
    "/proc",
    "/dev",
    "/sys",
    "/run",
    "/var",
    "/opt",
    "/tmp",
    "/var/tmp",
}


@dataclass
class Isolation:
    """How this worker process isolates its jobs (decided once, in :func:`init_worker`)."""

    mode: str = "none"  # "root" (uid switch), "userns" (unprivileged user namespace), "none"
    mounts: bool = False  # a mount namespace per job (private tmp dirs, hidden project tree)
    network: bool = False  # the worker sits in an empty network namespace
    hide: tuple[str, ...] = ()  # directories hidden under an empty tmpfs in each job
    keep: tuple[str, ...] = ()  # directories under ``hide`` bound back read-only (the interpreter)
    private: tuple[str, ...] = ()  # world-writable directories replaced by a private tmpfs
    bwrap: bool = False  # each job a fresh interpreter in its own bubblewrap sandbox
    plan: Any = None  # its filesystem view (evolcoder.sandbox.bwrap.Plan)
    allowed: tuple[str, ...] = ()  # packages the template imports (and jobs may)

    def missing(self) -> list[str]:
        """The protections this worker lacks, in words."""
        out = []
        if self.bwrap:
            return out
        out.append(
            "no bubblewrap: jobs are forked from the worker (its memory, the shared PID namespace, "
            "the machine's files readable by others)"
        )
        if self.mode == "none":
            out.append(
                "no separate uid (a sample can signal this user's processes and read their "
                "/proc files unless they are non-dumpable)"
            )
        elif self.mode == "userns":
            out.append("no separate uid (the /proc files of this user's other processes stay readable)")
        if not self.mounts:
            out.append("no private /tmp, /var/tmp, /dev/shm (a per-job TMPDIR only) and the project tree is readable")
        if not self.network:
            out.append("network reachable")
        return out


_ISO = Isolation()
_LIBC: list = []


def current() -> Isolation:
    """How this process isolates its jobs (set by :func:`setup_isolation`; none by default)."""
    return _ISO


def libc():
    if not _LIBC:
        import ctypes

        _LIBC.append(ctypes.CDLL(None, use_errno=True))
    return _LIBC[0]


def _errno_text() -> str:
    import ctypes

    return os.strerror(ctypes.get_errno())


def mount(src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def enc(s):
        return s.encode() if s is not None else None

    if libc().mount(enc(src), enc(target), enc(fstype), flags, enc(data)) != 0:
        raise OSError(f"mount {target}: {_errno_text()}")


def write_file(path: str, text: str) -> None:
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
    wanted = [
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        *keep,
    ]
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
    if libc().unshare(flags) != 0:
        return False
    try:
        write_file("/proc/self/setgroups", "deny")
        write_file("/proc/self/uid_map", f"0 {uid} 1")
        write_file("/proc/self/gid_map", f"0 {gid} 1")
    except OSError:
        return False
    return True


def setup_isolation(
    isolate_network: bool,
    hide: Sequence[str] = (),
    keep: Sequence[str] = (),
    allowed: Sequence[str] | None = None,
    probe: Callable[[], bool] | None = None,
) -> Isolation:
    """Once per worker process: decide and prepare how its jobs are isolated. ``allowed`` (the
    packages jobs may import) selects bubblewrap where ``probe`` (a trivial job run through the real
    launcher) succeeds under it; None: the forked-child sandbox."""
    global _ISO
    hidden, kept = plan_isolation(hide, keep)
    iso = Isolation(hide=hidden, keep=kept, private=private_dirs())
    if allowed is not None and probe is not None and _bwrap_works(allowed, probe):
        iso.mode = "root" if os.geteuid() == 0 else "userns"
        iso.bwrap = iso.mounts = iso.network = True

        iso.plan, iso.allowed = _ISO.plan, tuple(allowed)
        _ISO = iso
        return iso
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


def _bwrap_works(allowed: Sequence[str], probe: Callable[[], bool]) -> bool:
    """Whether a job can run under bubblewrap here (as this worker's sandbox uid when root): a
    trivial job through the real launcher, once per worker."""
    global _ISO
    from evolcoder.sandbox import bwrap

    if os.environ.get("EVOLCODER_SANDBOX_NO_BWRAP") or not bwrap.bwrap_path():
        return False
    saved = _ISO
    try:
        plan = bwrap.plan(list(allowed))
        if os.geteuid() == 0:
            _stage_binds(plan)
        _ISO = Isolation(mode="root" if os.geteuid() == 0 else "userns", bwrap=True, plan=plan, allowed=tuple(allowed))
        if probe():
            saved = Isolation(plan=plan)
            return True
        return False
    except Exception:
        return False
    finally:
        _ISO = saved


_STAGES = ("/mnt", "/srv", "/media")


def _stage_binds(plan) -> None:
    """Root: the sandbox uid may not reach the interpreter (under a 0700 ``/root``), so in this
    worker's own mount namespace each bind source is bound under an empty, world-traversable tmpfs
    (over ``/mnt``, seen by this worker only), from where bubblewrap binds it."""
    stage = next((d for d in _STAGES if os.path.isdir(d) and not os.path.islink(d)), None)
    if stage is None or libc().unshare(_CLONE_NEWNS) != 0:
        raise OSError("no mount namespace for the bubblewrap binds")
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", stage, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    for k, (src, dest) in enumerate(plan.binds):
        target = f"{stage}/b{k}"
        if os.path.isdir(src):
            os.mkdir(target, 0o755)
        else:
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
        mount(src, target, None, MS_BIND | MS_REC)
        with contextlib.suppress(OSError):
            mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
        plan.binds[k] = (target, dest)


def _probe_mounts() -> bool:
    """Whether a child can get its own mount namespace with a tmpfs (tried once, in a fork)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        ok = False
        try:
            if libc().unshare(_CLONE_NEWNS) == 0:
                mount(None, "/", None, MS_REC | MS_PRIVATE)
                mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=1m")
                ok = True
        except BaseException:
            pass
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def isolate_mounts(iso: Isolation, uid: int | None, size_mb: int) -> str:
    """In the child: a private mount namespace; returns the job's working directory."""
    if libc().unshare(_CLONE_NEWNS) != 0:
        raise OSError(f"unshare(mount): {_errno_text()}")
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    # opened in the new namespace, before anything is covered: bound back from these below
    keep_fds = [(k, os.open(k, os.O_PATH | os.O_DIRECTORY)) for k in iso.keep]
    opts = f"size={max(1, int(size_mb))}m,nr_inodes=4096"
    for d in iso.private:
        mount("tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV, opts + ",mode=1777")
    for h in iso.hide:
        if os.path.isdir(h):
            mount("tmpfs", h, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    for k, fd in keep_fds:
        os.makedirs(k, exist_ok=True)
        mount(f"/proc/self/fd/{fd}", k, None, MS_BIND | MS_REC)
        with contextlib.suppress(OSError):
            mount(None, k, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
        os.close(fd)
    for h in iso.hide:  # the tmpfs over a hidden tree becomes read-only once the binds are in place
        with contextlib.suppress(OSError):
            mount(None, h, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    workdir = "/tmp/job"
    os.mkdir(workdir, 0o700)
    if uid is not None:
        os.chown(workdir, uid, uid)
    return workdir


def drop_capabilities() -> None:
    """User-namespace mode: the sample keeps uid 0 of the namespace but no capability."""
    import ctypes

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    lib = libc()
    lib.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
    for cap in range(64):
        lib.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP
    hdr = Header(0x20080522, 0)
    data = (Data * 2)()
    if lib.capset(ctypes.byref(hdr), data) != 0:
        raise OSError(f"capset: {_errno_text()}")


def set_dumpable(value: bool) -> None:
    """``PR_SET_DUMPABLE``: a non-dumpable process's /proc memory and environ are closed to its uid."""
    with contextlib.suppress(Exception):
        libc().prctl(4, 1 if value else 0, 0, 0, 0)


def unshare_network() -> bool:
    """Put this process into an empty network namespace (root only); False when impossible."""
    try:
        return libc().unshare(_CLONE_NEWNET) == 0
    except Exception:
        return False


def describe_isolation(iso: Isolation) -> dict:
    return {
        "mode": iso.mode,
        "bwrap": iso.bwrap,
        "private_tmp": iso.mounts,
        "network_isolated": iso.network,
        "hidden": list(iso.hide) if iso.mounts and not iso.bwrap else [],
        "visible": sorted(dest for _src, dest in iso.plan.binds) if iso.bwrap else [],
        "missing": iso.missing(),
    }


_CLAIMED_UID: list = []  # (uid, lock fd) held for this process's lifetime


def sandbox_uid() -> int:
    """This process's own sandbox uid (root only): the first of ``SANDBOX_UID_BASE + k`` whose lock
    no other live process holds. Two scorers on one machine never share a uid, so one's cleanup
    (``kill(-1)`` as that uid) never kills the other's jobs."""
    if _CLAIMED_UID:
        return _CLAIMED_UID[0][0]
    for k in range(SANDBOX_UIDS):
        uid = SANDBOX_UID_BASE + k
        fd = _try_lock(uid)
        if fd is not None:
            _CLAIMED_UID.append((uid, fd))
            return uid
    raise RuntimeError(f"all {SANDBOX_UIDS} sandbox uids from {SANDBOX_UID_BASE} are in use")


def _lock_dir() -> str:
    lock_dir = "/run/evolcoder-sandbox"
    try:
        os.makedirs(lock_dir, 0o700, exist_ok=True)
    except OSError:
        lock_dir = os.path.join(tempfile.gettempdir(), f"evolcoder-sandbox-{os.getuid()}")
        os.makedirs(lock_dir, 0o700, exist_ok=True)
    return lock_dir


def _try_lock(uid: int) -> int | None:
    """The fd holding ``uid``'s lock, or None when a live process holds it."""
    import fcntl

    fd = os.open(os.path.join(_lock_dir(), f"{uid}.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def uid_claimed(uid: int) -> bool:
    """Whether a live scorer's worker holds sandbox ``uid`` (its processes are that scorer's jobs,
    not leftovers)."""
    if any(u == uid for u, _ in _CLAIMED_UID):
        return True
    fd = _try_lock(uid)
    if fd is None:
        return True
    os.close(fd)
    return False
