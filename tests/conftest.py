"""Shared fixtures: where the repository and the shared data are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return Path(os.environ.get("EVOLCODER_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.exists():
        pytest.skip(f"shared data not found at {path} (set EVOLCODER_SHARED_DATA)")
    return path


def test_timings(benchmark: str, data: Path) -> str:
    """Reference timings shared by the scoring tests: measured once per (dataset, machine class)
    with one repeat and kept across runs, beside (not in) the cache that user runs read."""
    from evolcoder.benchmarks.timings import machine_info
    from evolcoder.io import cache_dir, sha256_file

    folder = cache_dir() / "test-timings"
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / f"{benchmark}-{sha256_file(data)[:16]}-{machine_info()['machine_class']}.pkl")


test_timings.__test__ = False  # a helper, not a test


def score_argv(benchmark: str, predictions, data, out, settings: dict | None = None) -> list[str]:
    """The ``evolcoder score`` command line the scoring tests run (as a user would, in a subprocess)."""
    import json
    import sys

    argv = [sys.executable, "-m", "evolcoder.cli", "score", "--benchmark", benchmark]
    argv += ["--predictions", str(predictions), "--data", str(data), "--out", str(out)]
    return argv + (["--settings-json", json.dumps(settings)] if settings is not None else [])


def files_containing(needle: str, roots: list[str]) -> list[str]:
    """Files under ``roots`` whose bytes contain ``needle`` (leak checks: a secret, a sandbox uid's data)."""
    hits = []
    raw = needle.encode()
    for root in roots:
        for dirpath, _dirs, files in os.walk(root):
            for f in files:
                p = os.path.join(dirpath, f)
                try:
                    if os.path.islink(p) or not os.path.isfile(p) or os.path.getsize(p) > 256 << 20:
                        continue
                    with open(p, "rb") as fh:
                        if raw in fh.read():
                            hits.append(p)
                except OSError:
                    continue
    return hits
