"""Evolution through the `openai` backend against a real `transformers serve` (offline SmolLM2-135M).

- two rounds end to end: records, ledger (checked against the server's own access log) and stats;
- a round killed with SIGKILL mid-way and rerun: no completed request is sent again (server log and
  ledger), no torn cache line, and the outputs are byte-identical to an uninterrupted run.

Greedy decoding and small ``max_tokens`` keep it deterministic and around a minute on 2 CPU cores.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from evolcoder.evolve.cache import iter_cache_lines
from evolcoder.seed import seed_record

REPO = Path(__file__).resolve().parents[1]
TRANSFORMERS = Path(sys.executable).parent / "transformers"

pytestmark = pytest.mark.slow

SEEDS = [
    "Write a Python function that returns the factorial of n.",
    "Write a function to check whether a string is a palindrome.",
    "Create a function that counts the vowels in a string.",
    "Write a function that returns the largest number in a list.",
    "Write a function to reverse the words in a sentence.",
    "Write a function that removes duplicates from a list while keeping order.",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _posts(log: Path) -> int:
    return log.read_text(errors="replace").count('"POST /v1/chat/completions HTTP/1.1" 200')


def _wait_quiet(log: Path, quiet_s: float = 4.0, limit_s: float = 60.0) -> int:
    """Wait until the server has logged no new request for ``quiet_s`` (in-flight ones finished)."""
    t_end = time.monotonic() + limit_s
    last, since = _posts(log), time.monotonic()
    while time.monotonic() < t_end:
        time.sleep(0.5)
        n = _posts(log)
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            break
    return last


@pytest.fixture(scope="module")
def serve(tmp_path_factory):
    if not TRANSFORMERS.exists():
        pytest.skip("transformers CLI not installed")
    from evolcoder.models import resolve

    try:
        model_dir = resolve("smollm2-135m-instruct")
    except Exception as exc:
        pytest.skip(f"offline SmolLM2 not available: {exc}")
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log, "w") as fh:  # the server holds its own copy of the descriptor
        proc = subprocess.Popen(
            [
                str(TRANSFORMERS),
                "serve",
                model_dir,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--device",
                "cpu",
                "--log-level",
                "info",
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
            # one OpenMP thread: on a shared, oversubscribed CPU box spinning OpenMP workers make
            # generation ~4x slower (the server runs one request at a time anyway)
            env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
        )
    try:
        t_end = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited ({proc.returncode}): {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > t_end:
                pytest.fail("transformers serve did not come up in 180 s")
            time.sleep(1)
        yield {"base_url": f"http://127.0.0.1:{port}/v1", "model": model_dir, "log": log, "proc": proc}
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        fh.close()


def _settings(serve, **over) -> dict:
    s = {
        "rounds": 2,
        "seed": 11,
        "retry_eliminated": True,
        "methods": {
            "add_constraints": 1.0,
            "replace_requirement": 1.0,
            "add_reasoning_steps": 1.0,
            "erroneous_code": 1.0,
            "complexity": 0.25,
        },
        "backend": {
            "kind": "openai",
            "model": serve["model"],
            "base_url": serve["base_url"],
            "api_key_env": "EVOLCODER_SERVE_TEST_KEY",
            "concurrency": 2,
            "max_retries": 3,
            "timeout_s": 120,
            "cost_per_1m_prompt_tokens": 0.5,
            "cost_per_1m_completion_tokens": 1.5,
        },
        "evolve_params": {"temperature": 0.0, "max_tokens": 16},
        "answer_params": {"temperature": 0.0, "max_tokens": 16},
        "progress": False,
    }
    s.update(over)
    return s


def _write_seed(path: Path, n: int) -> Path:
    with open(path, "w") as fh:
        for i, text in enumerate(SEEDS[:n]):
            sid = f"seed-{i:012x}"
            fh.write(json.dumps(seed_record(sid, text, "", "pass")) + "\n")
    return path


def _cmd(pool: Path, k: int, out: Path, settings: dict, cache: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "evolcoder.cli",
        "evolve",
        "--pool",
        str(pool),
        "--round",
        str(k),
        "--out-dir",
        str(out),
        "--settings-json",
        json.dumps(settings),
        "--cache-dir",
        str(cache),
    ]


ENV = {**os.environ, "PYTHONPATH": str(REPO / "src"), "EVOLCODER_SERVE_TEST_KEY": "sk-serve-test-not-a-real-key"}


def test_two_rounds_through_transformers_serve(serve, tmp_path):
    seed = _write_seed(tmp_path / "seed.jsonl", 3)
    cache = tmp_path / "cache"
    settings = _settings(serve)
    pool = seed
    prev_pool: list[dict] = [json.loads(x) for x in seed.read_text().splitlines()]
    for k in (1, 2):
        before = _posts(serve["log"])
        out = tmp_path / f"round_{k}"
        p = subprocess.run(_cmd(pool, k, out, settings, cache), env=ENV, capture_output=True, text=True, timeout=400)
        assert p.returncode == 0, p.stderr[-3000:]
        evolved = [json.loads(x) for x in (out / "evolved.jsonl").read_text().splitlines()]
        rejects = [json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()]
        next_pool = [json.loads(x) for x in (out / "pool.jsonl").read_text().splitlines()]
        stats = json.loads((out / "stats.json").read_text())
        ledger = json.loads((out / "ledger.json").read_text())
        manifest = json.loads((out / "manifest.json").read_text())

        # records
        parents = {r["id"]: r for r in prev_pool}
        assert len(evolved) + len(rejects) == len(prev_pool)
        for rec in evolved + rejects:
            assert rec["round"] == k and rec["id"].startswith(f"r{k}-")
            assert rec["parent_id"] in parents and rec["root_id"] == parents[rec["parent_id"]]["root_id"]
            assert rec["model"] == serve["model"] and rec["method"] in settings["methods"]
            assert parents[rec["parent_id"]]["instruction"] in rec["evol_prompt"]
            assert "#Rewritten Test#" in rec["evol_prompt"]
            assert rec["gen_params"]["evolve"]["max_tokens"] == 16
            assert rec["usage"]["prompt_tokens"] > 0 and rec["usage"]["completion_tokens"] > 0
        for rec in evolved:
            assert rec["instruction"].strip() and rec["output"].strip()
        for rec in rejects:
            assert rec["reject_reason"] and rec["retried"] is True
        assert len(next_pool) == len(prev_pool)  # retry_eliminated: every parent is either evolved or retried

        # ledger vs. the server's own access log
        sent = _posts(serve["log"]) - before
        t = ledger["total"]
        assert t["sent"] == sent and t["cache_hits"] == 0 and t["failed"] == 0
        assert t["requests"] == len(evolved) * 2 + sum(1 + ("answer" in r["cache_keys"]) for r in rejects)
        assert t["prompt_tokens"] == sum(r["usage"]["prompt_tokens"] for r in evolved + rejects)
        assert t["completion_tokens"] == sum(r["usage"]["completion_tokens"] for r in evolved + rejects)
        assert t["cost_usd"] == pytest.approx((t["prompt_tokens"] * 0.5 + t["completion_tokens"] * 1.5) / 1e6, abs=1e-6)
        assert "sk-serve-test" not in json.dumps(ledger) + json.dumps(manifest) + p.stdout + p.stderr

        # stats
        assert stats["round"] == k and stats["items_in"] == len(prev_pool)
        assert stats["evolved"] == len(evolved) and stats["rejected"] == len(rejects)
        assert sum(stats["rejects_by_reason"].values()) == len(rejects)
        assert sum(stats["methods_chosen"].values()) == len(prev_pool)
        assert stats["requests"]["sent"] == sent
        assert manifest["stage"] == "evolve" and manifest["round"] == k
        prev_pool, pool = next_pool, out / "pool.jsonl"

    from evolcoder.evolve.stats import plot_stats

    png = plot_stats(
        [tmp_path / "round_1" / "stats.json", tmp_path / "round_2" / "stats.json"], tmp_path / "difficulty.png"
    )
    assert png.stat().st_size > 10_000


def test_sigkill_mid_round_then_rerun_resends_nothing_and_matches_uninterrupted(serve, tmp_path):
    seed = _write_seed(tmp_path / "seed.jsonl", 5)
    settings = _settings(serve, seed=5)
    cache = tmp_path / "cache"
    out = tmp_path / "round_1"
    log = serve["log"]
    _wait_quiet(log, quiet_s=1.0)

    # 1. start the round, SIGKILL it once some (not all) requests are completed and cached
    start_posts = _posts(log)
    proc = subprocess.Popen(
        _cmd(seed, 1, out, settings, cache), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    cache_file = None
    t_end = time.monotonic() + 300
    while time.monotonic() < t_end and proc.poll() is None:
        files = list(cache.glob("*.jsonl")) if cache.exists() else []
        if files:
            cache_file = files[0]
            if len(list(iter_cache_lines(cache_file))) >= 3:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "the round finished before it could be killed; raise the pool size"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "evolved.jsonl").exists()  # outputs are written atomically at the end only

    completed = [e["key"] for e in iter_cache_lines(cache_file)]
    assert len(completed) == len(set(completed)) >= 3
    raw = cache_file.read_bytes()
    # no torn line: either the file ends on a newline, or the reader skips the fragment (checked above)
    killed_posts = _wait_quiet(log) - start_posts  # requests that were in flight at the kill finish server-side
    assert killed_posts >= len(completed)

    # 2. rerun: completed requests come from the cache, only the rest is sent
    before = _posts(log)
    p = subprocess.run(_cmd(seed, 1, out, settings, cache), env=ENV, capture_output=True, text=True, timeout=400)
    assert p.returncode == 0, p.stderr[-3000:]
    rerun_posts = _posts(log) - before
    ledger = json.loads((out / "ledger.json").read_text())["total"]
    assert ledger["cache_hits"] == len(completed)
    assert ledger["sent"] == rerun_posts
    keys_after = [e["key"] for e in iter_cache_lines(cache_file)]
    assert len(keys_after) == len(set(keys_after))  # nothing was completed (and appended) twice
    assert keys_after[: len(completed)] == completed
    assert len(keys_after) == len(completed) + rerun_posts  # every request sent by the rerun was a new one
    text = cache_file.read_bytes()
    assert text.endswith(b"\n") and all(json.loads(x) for x in text.splitlines())
    assert text.startswith(raw[: raw.rfind(b"\n") + 1])  # the killed run's complete lines are untouched

    # 3. an uninterrupted run with the same seed (fresh cache) gives byte-identical outputs
    before = _posts(log)
    out2 = tmp_path / "uninterrupted"
    p2 = subprocess.run(
        _cmd(seed, 1, out2, settings, tmp_path / "cache2"), env=ENV, capture_output=True, text=True, timeout=400
    )
    assert p2.returncode == 0, p2.stderr[-3000:]
    ledger2 = json.loads((out2 / "ledger.json").read_text())["total"]
    assert ledger2["sent"] == _posts(log) - before == len(keys_after)
    for f in ("evolved.jsonl", "rejects.jsonl", "pool.jsonl"):
        assert (out / f).read_bytes() == (out2 / f).read_bytes(), f
    st1, st2 = (json.loads((d / "stats.json").read_text()) for d in (out, out2))
    st1.pop("requests"), st2.pop("requests")
    assert st1 == st2
    shutil.rmtree(tmp_path / "cache2")
