"""Evolution at API scale: the estimate, the budget, batch mode and rate-limit pacing.

Driven by the real ``openai`` client against ``tests/fakebatch.py``, a local HTTP server speaking the
endpoints batch mode uses (files, batches, file content) and chat completions with ``x-ratelimit-*``
headers and 429s, with injected delays, failed lines, an expired batch and a restart.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evolcoder.evolve.budget import BudgetExhausted
from evolcoder.evolve.cache import ResponseCache, iter_cache_lines
from evolcoder.evolve.engine import run_round
from evolcoder.evolve.ratelimit import parse_duration
from evolcoder.seed import build_seed
from fakebatch import FakeBatchServer

from conftest import shared_data_dir

REPO = Path(__file__).resolve().parents[1]
MODEL = "gpt-3.5-turbo"  # tokens counted with tiktoken's cl100k_base, as the fake server counts them


def seed(n: int) -> list[dict]:
    recs, _ = build_seed(str(shared_data_dir() / "seeds" / "code_alpaca_2k.json"), n, 5, True)
    return recs


def settings(srv, mode="sync", **over) -> dict:
    backend = {
        "kind": "openai",
        "model": MODEL,
        "base_url": srv.base_url,
        "mode": mode,
        "concurrency": 8,
        "backoff_base_s": 0.05,
        "backoff_max_s": 0.3,
        "timeout_s": 3,
        "batch_poll_s": 0.1,
        "batch_poll_max_s": 0.3,
        "cost_per_1m_prompt_tokens": 0.5,
        "cost_per_1m_completion_tokens": 1.5,
    }
    backend.update(over.pop("backend", {}))
    return {
        "seed": 11,
        "progress": False,
        "judge": {"enabled": True},
        "evolve_params": {"temperature": 1.0, "max_tokens": 400},
        "answer_params": {"temperature": 1.0, "max_tokens": 800},
        "backend": backend,
        **over,
    }


def _cli(args, **kw):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")])}
    return subprocess.Popen(
        [sys.executable, "-m", "evolcoder.cli", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw
    )


def _evolve_args(pool: Path, k: int, out: Path, s: dict, cache: Path) -> list[str]:
    return ["evolve", "--pool", str(pool), "--round", str(k), "--out-dir", str(out), "--settings-json", json.dumps(s),
            "--cache-dir", str(cache)]  # fmt: skip


@pytest.fixture
def server(tmp_path):
    srv = FakeBatchServer(state_dir=str(tmp_path / "server"), batch_delay_s=0.3).start_in_thread()
    yield srv
    srv.stop()


def test_parse_ratelimit_durations():
    assert parse_duration("6m0s") == 360 and parse_duration("20ms") == pytest.approx(0.02)
    assert parse_duration("1h2m3.5s") == pytest.approx(3723.5) and parse_duration("1.5") == 1.5
    assert parse_duration("soon") is None and parse_duration(None) is None


def test_estimate_against_the_ledger_and_the_estimate_command(server, tmp_path):
    """Two rounds through the CLI: round 2's estimate (round 1's measured rates, round 2's real pool) is
    within 15 % of what round 2 used; `evolcoder estimate` shows both."""
    pool = tmp_path / "seed.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in seed(40)))
    s = settings(server)
    res = tmp_path / "results" / "evolve"
    for k in (1, 2):
        p = _cli(_evolve_args(pool, k, res / f"round_{k}", s, tmp_path / "cache"))
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
        assert b"estimate round %d" % k in err  # logged before the first request
        pool = res / f"round_{k}" / "pool.jsonl"
    ratios = [json.loads((res / f"round_{k}" / "ledger.json").read_text())["estimate"] for k in (1, 2)]
    r1, r2 = (r["actual_over_estimated"]["cost_usd"] for r in ratios)
    print(f"actual/estimated cost: round 1 (paper defaults) {r1:.3f}, round 2 (measured rates) {r2:.3f}")
    assert 0.85 <= r2 <= 1.15
    assert 0.85 <= ratios[1]["actual_over_estimated"]["requests"] <= 1.15
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(json.dumps({"seed": {"source": str(tmp_path / "seed.jsonl")}, "evolution": {"rounds": 3, **s}}))
    p = _cli(["estimate", "--configfile", str(cfg), "--results", str(res)], cwd=tmp_path)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err.decode()
    rows = [ln.split() for ln in out.decode().splitlines() if ln.strip()[:1] in "123"]
    assert [r[0] for r in rows] == ["1", "2", "3"] and rows[0][7] != "-" and rows[2][7] == "-"
    assert "measured (round_2)" in out.decode() and "tiktoken cl100k_base" in out.decode()


def test_budget_stops_mid_round_and_a_rerun_sends_nothing_twice(server, tmp_path):
    pool = seed(24)
    cache = tmp_path / "cache"
    s = settings(server, budget_usd=0.004, backend={"concurrency": 4})
    with pytest.raises(BudgetExhausted, match=r"budget_usd \$0.004 reached.*rerun to continue"):
        run_round(pool, 1, s, str(cache))
    first = {e["key"] for e in iter_cache_lines(cache / f"{MODEL}.jsonl")}
    spent = sum(
        (e["response"]["usage"]["prompt_tokens"] * 0.5 + e["response"]["usage"]["completion_tokens"] * 1.5) / 1e6
        for e in iter_cache_lines(cache / f"{MODEL}.jsonl")
    )
    assert 0 < len(first) < 3 * 24 and 0.003 < spent <= 0.004  # the budget held, and was used
    assert len(server.requests) == len(first)  # every request sent was completed and cached
    n = len(server.requests)
    s["budget_usd"] = 1.0
    done = run_round(pool, 1, s, str(cache))
    resent = [r for r in server.requests[n:] if _key(r) in first]
    assert resent == [] and done.ledger["total"]["cache_hits"] == len(first)
    assert done.ledger["total"]["sent"] == len(server.requests) - n
    # batch mode: the requests that fit go out as one batch, the round stops after it; a rerun re-sends none
    bcache = str(tmp_path / "batch-cache")
    with pytest.raises(BudgetExhausted, match="budget_usd"):
        run_round(pool, 1, {**settings(server, "batch"), "budget_usd": 0.004}, bcache)
    assert server.batches_created == 1
    done = run_round(pool, 1, {**settings(server, "batch"), "budget_usd": 1.0}, bcache)
    first_batch, *later = (_custom_ids(server, b) for b in server.batches.values())
    assert first_batch and not first_batch & set().union(*later)  # nothing of the first batch sent again
    assert done.ledger["total"]["cache_hits"] == len(first_batch)
    # max_requests: no request starts past it, counting the cache
    with pytest.raises(BudgetExhausted, match="max_requests"):
        run_round(seed(30), 1, {**s, "max_requests": len(ResponseCache(cache, MODEL)) + 3}, str(cache))


def _custom_ids(server, batch: dict) -> set[str]:
    return {json.loads(ln)["custom_id"] for ln in server.files[batch["input_file_id"]]["data"].splitlines()}


def _key(body: dict) -> str:
    from evolcoder.evolve.cache import request_key

    params = {k: v for k, v in body.items() if k not in ("model", "messages")}
    return request_key(body["model"], body["messages"], params)


def test_batch_mode_partial_failures_expiry_and_mode_switch(tmp_path):
    srv = FakeBatchServer(batch_delay_s=0.2, fail_every=5, expire_next=1).start_in_thread()
    try:
        pool = seed(20)
        res = run_round(pool, 1, settings(srv, "batch", backend={"batch_max_requests": 8}), str(tmp_path / "cache"))
        b, t = res.ledger["batch"], res.ledger["total"]
        assert b["batches_created"] == 9  # evolve, judge, answer: 20 requests each in files of at most 8 lines
        assert sum(bt["expire"] for bt in srv.batches.values()) == 1  # the first: half of it unanswered
        assert b["sync_fallback"] == len(srv.requests) > 0  # failed and expired lines went the sync way
        assert t["batch_requests"] == b["batch_requests"] and t["completed"] == t["sent"]
        cost = (t["prompt_tokens"] * 0.5 + t["completion_tokens"] * 1.5) / 1e6
        assert t["cost_usd"] < cost  # batch answers at half price
        sync = run_round(pool, 1, settings(srv, "sync"), str(tmp_path / "cache"))
        assert sync.ledger["total"]["sent"] == 0 and sync.evolved == res.evolved  # same keys: all cached
        n = srv.batches_created
        again = run_round(pool, 1, settings(srv, "batch"), str(tmp_path / "cache"))
        assert srv.batches_created == n and again.ledger["total"]["sent"] == 0
    finally:
        srv.stop()


def test_kill9_during_a_batch_then_rerun_reattaches(tmp_path):
    state = tmp_path / "server"
    srv = FakeBatchServer(state_dir=str(state), batch_delay_s=4.0).start_in_thread()
    pool = tmp_path / "seed.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in seed(16)))
    s = settings(srv, "batch", backend={"max_retries": 30})  # rides out the server restart
    journal = tmp_path / "cache" / "batches" / f"{MODEL}.jsonl"
    args = _evolve_args(pool, 1, tmp_path / "r1", s, tmp_path / "cache")
    p = _cli(args)
    try:
        t_end = time.monotonic() + 60
        while not (journal.exists() and b'"created"' in journal.read_bytes()):
            assert p.poll() is None and time.monotonic() < t_end, "no batch was created"
            time.sleep(0.1)
        os.kill(p.pid, signal.SIGKILL)  # kill -9 while the evolve batch runs
        p.wait()
        assert srv.batches_created == 1
        # the server restarts too (same port, its state on disk) while the rerun polls
        port = srv.port
        p = _cli(args)
        time.sleep(1.5)
        srv.stop()
        first = srv
        time.sleep(0.5)
        srv = FakeBatchServer(port=port, state_dir=str(state), batch_delay_s=0.5).start_in_thread()
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
        ledger = json.loads((tmp_path / "r1" / "ledger.json").read_text())
        assert ledger["batch"]["batches_attached"] == 1  # the evolve batch: re-attached, not resubmitted
        assert ledger["batch"]["batches_created"] == 2  # judge and answer
        evolve_jobs = [e for e in map(json.loads, filter(None, journal.read_text().splitlines()))
                       if e.get("event") == "created" and e["purpose"] == "evolve"]  # fmt: skip
        assert len(evolve_jobs) == 1  # 0 batches re-submitted
        assert first.requests == srv.requests == []  # 0 requests re-sent, none went the sync way
    finally:
        if p.poll() is None:
            p.kill()
        srv.stop()


@pytest.mark.parametrize("paced", [True, False])
def test_rate_limit_headers_pace_32_in_flight(tmp_path, paced):
    srv = FakeBatchServer(rate_limit=(20, 0.5), latency_s=0.01).start_in_thread()
    try:
        s = settings(
            srv, judge={"enabled": False}, backend={"concurrency": 32, "rate_limits": paced, "max_retries": 30}
        )
        pool = seed(40)  # 80 requests (32 with the builtin seed when the shared data is missing)
        res = run_round(pool, 1, s, str(tmp_path / "cache"))
        t = res.ledger["total"]
        assert t["completed"] == 2 * len(pool)
        if paced:
            assert srv.hits_429 <= 2 and t["rate_limit_wait_s"] > 0
        else:
            assert srv.hits_429 > 10  # what pacing avoids: a storm of 429s
    finally:
        srv.stop()
