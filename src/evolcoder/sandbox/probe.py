"""What an interpreter is: its version, executable and library versions (the score files record it)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path


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


# variables a worker keeps from the caller's environment; nothing else (API keys, tokens) reaches it
_WORKER_ENV = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "TF_CPP_MIN_LOG_LEVEL",
    "MPLBACKEND",
    "HUMANEVAL_OVERRIDE_PATH",
    "MBPP_OVERRIDE_PATH",
    "EVOLCODER_SANDBOX_NO_BWRAP",
)


def child_env() -> dict[str, str]:
    """Environment of a worker (or probe) process: an allow-list of the caller's variables, with
    ``PYTHONPATH`` holding only the directory of the ``evolcoder`` package (every other import
    resolves in the interpreter's own environment)."""
    env = {k: os.environ[k] for k in _WORKER_ENV if k in os.environ}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return env
