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
