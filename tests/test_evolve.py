"""Evolution engine: methods, seeded choices, cache, retries, elimination in a round, CLI outputs.

Uses a scripted in-process backend (pure logic) and the fixed-latency fake OpenAI endpoint of
``tests/fakeserver.py`` (a real HTTP server on 127.0.0.1, driven by the real ``openai`` client).
The tests against a real ``transformers serve`` are in ``test_evolve_serve.py``.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from evolcoder.errors import BackendError, EvolcoderError
from evolcoder.evolve import eliminate as el
from evolcoder.evolve import methods as M
from evolcoder.evolve.backends import Completion, backoff_delay, retry_after_s
from evolcoder.evolve.cache import ResponseCache, iter_cache_lines, request_key
from evolcoder.evolve.engine import EvolutionSettings, run_round
from evolcoder.seed import seed_record

from fakeserver import FakeOpenAIServer

REPO = Path(__file__).resolve().parents[1]


def seed_records(n: int, marker: dict[int, str] | None = None) -> list[dict]:
    out = []
    for i in range(n):
        sid = f"seed-{i:012x}"
        text = f"Write a Python function number {i} that sums a list of integers."
        if marker and i in marker:
            text += " " + marker[i]
        out.append(seed_record(sid, text, "", "def f(xs):\n    return sum(xs)"))
    return out


class ScriptedBackend:
    """Deterministic in-process backend: behaviour chosen by markers in the seed instruction."""

    kind = "scripted"

    def __init__(self):
        self.model = "scripted"
        self.calls = collections.Counter()

    async def complete(self, req, key, on_attempt):
        on_attempt(False)
        self.calls[req.purpose] += 1
        content = req.messages[-1]["content"]
        if req.purpose == "evolve":
            given = content.split("#Given Test#")[-1].split("#Rewritten Test#")[0].strip()
            if "COPYME" in given:
                text = "#Rewritten Test#\n" + given
            elif "SAMEME" in given:
                text = given
            else:
                text = given + " Handle empty lists and raise ValueError on non-integers."
        elif req.purpose == "judge":
            text = "Equal" if "JUDGEME" in content else "Not Equal"
        else:
            if "SORRYME" in content:
                text = "I'm sorry, I cannot help with that."
            elif "DOTSME" in content:
                text = "... !!! ..."
            else:
                text = "```python\ndef f(xs):\n    if not xs:\n        return 0\n    return sum(xs)\n```"
        return Completion(text=text, finish_reason="stop", usage={"prompt_tokens": 10, "completion_tokens": 5}, key=key)

    async def aclose(self):
        pass


def settings(**over) -> EvolutionSettings:
    base = {"seed": 7, "backend": {"kind": "openai", "model": "scripted", "concurrency": 4}, "progress": False}
    base.update(over)
    return EvolutionSettings.from_dict(base)


# ---------------------------------------------------------------- methods


def test_every_method_has_a_template_that_embeds_the_instruction():
    for name in M.ALL_METHODS:
        m = M.load_method(name)
        text = m.render("Sort {a} list.", "input: [3, 1]")
        assert "Sort {a} list.\ninput: [3, 1]" in text and "{instruction}" not in text
    assert "approximately 10 additional words" in M.load_method("add_constraints").template
    assert "erroneous code" in M.load_method("erroneous_code").template
    assert "#Created Prompt#" in M.load_method("general_breadth").template


def test_weights_presets_and_errors():
    assert M.normalise_weights(None) == M.PRESETS["code"]
    assert set(M.normalise_weights("wizardlm")) == set(M.DEPTH_METHODS + M.BREADTH_METHODS)
    assert M.normalise_weights({"add_constraints": 1, "complexity": 0}) == {"add_constraints": 1.0}
    for bad in ({"nope": 1}, {"complexity": -1}, {"complexity": 0}, "nope"):
        with pytest.raises(EvolcoderError):
            M.normalise_weights(bad)


def test_method_choice_is_seeded_per_item_and_follows_weights():
    w = M.normalise_weights("code")
    a = [M.choose_method(w, M.item_rng(42, 1, f"id{i}")) for i in range(4000)]
    b = [M.choose_method(w, M.item_rng(42, 1, f"id{i}")) for i in range(4000)]
    c = [M.choose_method(w, M.item_rng(42, 2, f"id{i}")) for i in range(4000)]
    assert a == b and a != c
    counts = collections.Counter(a)
    assert set(counts) == set(M.CODE_METHODS)
    assert 0.15 < counts["complexity"] / counts["add_constraints"] < 0.4  # "rarely": weight 0.25
    # independent of the other items in the pool
    assert M.choose_method(w, M.item_rng(42, 1, "id17")) == a[17]


# ---------------------------------------------------------------- cache


def test_cache_ignores_and_repairs_a_torn_last_line(tmp_path):
    c = ResponseCache(tmp_path, "m")
    c.append({"key": "k1", "response": {"text": "a"}})
    c.append({"key": "k2", "response": {"text": "b"}})
    with open(c.path, "ab") as fh:
        fh.write(b'{"key": "k3", "response": {"te')  # SIGKILL mid-write
    c2 = ResponseCache(tmp_path, "m")
    assert len(c2) == 2 and "k3" not in c2
    c2.append({"key": "k4", "response": {"text": "d"}})
    lines = c2.path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and all(json.loads(x) for x in lines[:-1])
    assert [e["key"] for e in iter_cache_lines(c2.path)] == ["k1", "k2", "k4"]


def test_cache_concurrent_appends_never_interleave(tmp_path):
    c = ResponseCache(tmp_path, "m")
    big = "x" * 20000

    def work(t):
        for i in range(25):
            c.append({"key": f"{t}-{i}", "response": {"text": big}})

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({e["key"] for e in iter_cache_lines(c.path)}) == 100


def test_request_key_covers_model_messages_and_params():
    m = [{"role": "user", "content": "hi"}]
    k = request_key("a", m, {"temperature": 0.0, "max_tokens": 5})
    assert k == request_key("a", m, {"max_tokens": 5, "temperature": 0.0})
    assert k != request_key("b", m, {"temperature": 0.0, "max_tokens": 5})
    assert k != request_key("a", m, {"temperature": 0.1, "max_tokens": 5})
    assert k != request_key("a", [{"role": "user", "content": "hi!"}], {"temperature": 0.0, "max_tokens": 5})


# ---------------------------------------------------------------- retry helpers


def test_retry_after_parsing_and_backoff():
    import email.utils

    assert retry_after_s({"retry-after": "3"}) == 3.0
    assert retry_after_s({"retry-after-ms": "250"}) == 0.25
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < retry_after_s({"retry-after": future}) <= 30
    assert retry_after_s({}) is None and retry_after_s({"retry-after": "soon"}) is None
    import random

    rng = random.Random(0)
    delays = [backoff_delay(a, 1.0, 8.0, rng) for a in range(10)]
    assert all(0 <= d <= 8.0 for d in delays) and max(delays[5:]) > 1.0
    assert backoff_delay(0, 1.0, 8.0, rng, retry_after=5.0) >= 5.0
    assert backoff_delay(0, 1.0, 8.0, rng, retry_after=5000.0, retry_after_cap=60) == 60


# ---------------------------------------------------------------- a round, scripted backend


def test_round_eliminates_with_reasons_and_retries_parents(tmp_path):
    pool = seed_records(8, {1: "COPYME", 2: "SAMEME", 3: "SORRYME", 4: "DOTSME"})
    be = ScriptedBackend()
    res = run_round(pool, 1, settings(), str(tmp_path / "cache"), backend=be)
    reasons = {r["parent_id"]: r["reject_reason"] for r in res.rejects}
    assert reasons == {
        pool[1]["id"]: el.COPIED_EVOL_PROMPT,
        pool[2]["id"]: el.NO_INFORMATION_GAIN,
        pool[3]["id"]: el.SORRY_SHORT_RESPONSE,
        pool[4]["id"]: el.PUNCTUATION_STOPWORDS_ONLY,
    }
    assert len(res.evolved) == 4
    # failed instructions are not answered (no cost for them)
    assert be.calls == {"evolve": 8, "answer": 6}
    # next pool: evolved children in place of their parents, retried parents unchanged
    assert [r["id"] for r in res.pool] == [
        (res.evolved[[e["parent_id"] for e in res.evolved].index(p["id"])]["id"] if p["id"] not in reasons else p["id"])
        for p in pool
    ]
    rec = res.evolved[0]
    for k in (
        "id",
        "parent_id",
        "root_id",
        "round",
        "method",
        "instruction",
        "input",
        "output",
        "evol_prompt",
        "model",
        "gen_params",
        "usage",
    ):
        assert k in rec
    assert rec["round"] == 1 and rec["id"].startswith("r1-") and rec["root_id"] == rec["parent_id"]
    assert rec["usage"] == {"prompt_tokens": 20, "completion_tokens": 10}
    assert rec["gen_params"]["evolve"]["seed"] != rec["gen_params"]["answer"]["seed"]
    assert pool[0]["instruction"] in rec["evol_prompt"]
    st = res.stats
    assert st["items_in"] == 8 and st["evolved"] == 4 and st["rejected"] == 4 and st["retried_parents"] == 4
    assert st["elimination_rate"] == 0.5 and sum(st["rejects_by_reason"].values()) == 4
    assert sum(st["methods_chosen"].values()) == 8
    assert st["mean_instruction_tokens"] > st["parent_mean_instruction_tokens"]

    # retry off: eliminated parents leave the pool
    res2 = run_round(pool, 1, settings(retry_eliminated=False), str(tmp_path / "cache"), backend=ScriptedBackend())
    assert [r["id"] for r in res2.pool] == [r["id"] for r in res.evolved]
    # same seed -> same records; the cache served everything
    assert res2.evolved == res.evolved and res2.ledger["total"]["sent"] == 0


def test_round_two_chains_ids_and_root(tmp_path):
    pool = seed_records(3)
    r1 = run_round(pool, 1, settings(), str(tmp_path / "c"), backend=ScriptedBackend())
    r2 = run_round(r1.pool, 2, settings(), str(tmp_path / "c"), backend=ScriptedBackend())
    for rec in r2.evolved:
        parent = next(p for p in r1.pool if p["id"] == rec["parent_id"])
        assert rec["round"] == 2 and rec["root_id"] == parent["root_id"]
        assert rec["id"] == M.evolved_id(parent["id"], rec["method"], 2)


def test_optional_llm_judge(tmp_path):
    pool = seed_records(4, {0: "JUDGEME"})
    be = ScriptedBackend()
    res = run_round(pool, 1, settings(judge={"enabled": True}), str(tmp_path / "c"), backend=be)
    assert [(r["parent_id"], r["reject_reason"]) for r in res.rejects] == [(pool[0]["id"], el.NO_INFORMATION_GAIN)]
    assert be.calls["judge"] == 4 and be.calls["answer"] == 3
    be2 = ScriptedBackend()
    run_round(pool, 1, settings(), str(tmp_path / "c2"), backend=be2)
    assert be2.calls["judge"] == 0  # off by default


def test_settings_errors_are_one_line():
    with pytest.raises(EvolcoderError, match="unknown key"):
        EvolutionSettings.from_dict({"roundz": 3})
    with pytest.raises(EvolcoderError, match=r"backend\.kind"):
        EvolutionSettings.from_dict({"backend": {"kind": "carrier-pigeon"}})
    with pytest.raises(EvolcoderError, match="evolve_params"):
        EvolutionSettings.from_dict({"evolve_params": {"temprature": 1}})
    with pytest.raises(EvolcoderError, match="unknown method"):
        EvolutionSettings.from_dict({"methods": {"add_constraint": 1}})


# ---------------------------------------------------------------- fake OpenAI endpoint (real HTTP + openai client)


@pytest.fixture
def fake_server():
    srv = FakeOpenAIServer(latency_s=0.02).start_in_thread()
    yield srv
    srv.stop()


def openai_settings(srv, **over):
    backend = {
        "kind": "openai",
        "model": "fake-model",
        "base_url": srv.base_url,
        "concurrency": 4,
        "api_key_env": "EVOLCODER_TEST_KEY",
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "cost_per_1m_prompt_tokens": 2.0,
        "cost_per_1m_completion_tokens": 8.0,
    }
    backend.update(over.pop("backend", {}))
    return {"seed": 3, "backend": backend, "progress": False, **over}


def test_retries_429_and_5xx_honouring_retry_after(fake_server, tmp_path, monkeypatch):
    monkeypatch.setenv("EVOLCODER_TEST_KEY", "sk-test")
    fake_server.fail_plan = [(429, 0.4), (503, None), (500, None), (502, None)]
    t0 = time.monotonic()
    res = run_round(seed_records(3), 1, openai_settings(fake_server), str(tmp_path / "c"))
    assert time.monotonic() - t0 >= 0.4  # Retry-After: 0.4 was honoured
    t = res.ledger["total"]
    assert t["retries"] == 4 and t["completed"] == 6 and t["sent"] == 6 and t["attempts"] == 10
    assert len(fake_server.requests) == 10 and len(res.evolved) == 3
    assert t["cost_usd"] == pytest.approx((t["prompt_tokens"] * 2 + t["completion_tokens"] * 8) / 1e6, abs=1e-6)


def test_retries_exhausted_is_a_backend_error_and_keeps_completed_work(fake_server, tmp_path, monkeypatch):
    monkeypatch.setenv("EVOLCODER_TEST_KEY", "sk-test")
    s = openai_settings(fake_server, backend={"max_retries": 1, "concurrency": 1})
    run_round(seed_records(1), 1, s, str(tmp_path / "c"))  # 2 requests completed and cached
    fake_server.fail_plan = [(503, None)] * 50
    with pytest.raises(BackendError, match="HTTP 503 after 2 attempts"):
        run_round(seed_records(2), 1, s, str(tmp_path / "c"))
    assert len(ResponseCache(tmp_path / "c", "fake-model")) == 2


def test_auth_error_is_fatal_and_bad_request_rejects_the_item(fake_server, tmp_path, monkeypatch):
    monkeypatch.setenv("EVOLCODER_TEST_KEY", "sk-test")
    fake_server.fail_plan = [(401, None)]
    with pytest.raises(BackendError, match="HTTP 401"):
        run_round(seed_records(1), 1, openai_settings(fake_server), str(tmp_path / "c"))
    fake_server.fail_plan = [(400, None)]
    res = run_round(seed_records(1), 1, openai_settings(fake_server, backend={"concurrency": 1}), str(tmp_path / "c2"))
    assert [r["reject_reason"] for r in res.rejects] == [el.API_ERROR] and res.pool == seed_records(1)


def test_missing_key_for_openai_is_an_error(monkeypatch, tmp_path):
    monkeypatch.delenv("EVOLCODER_TEST_KEY", raising=False)
    s = {"backend": {"kind": "openai", "model": "gpt-4o-mini", "api_key_env": "EVOLCODER_TEST_KEY"}}
    with pytest.raises(BackendError, match="EVOLCODER_TEST_KEY is not set"):
        run_round(seed_records(1), 1, s, str(tmp_path / "c"))


def _cli(args, env=None, **kw):
    return subprocess.run(
        [sys.executable, "-m", "evolcoder.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "src"), **(env or {})},
        **kw,
    )


def test_cli_outputs_rerun_identical_and_key_never_written(fake_server, tmp_path):
    secret = "sk-evolcoder-SECRET-123456"
    seed = tmp_path / "seed.jsonl"
    seed.write_text("".join(json.dumps(r) + "\n" for r in seed_records(5)))
    s = json.dumps(openai_settings(fake_server, rounds=1))
    args = ["evolve", "--pool", str(seed), "--round", "1", "--settings-json", s, "--cache-dir", str(tmp_path / "cache")]
    p1 = _cli([*args, "--out-dir", str(tmp_path / "a")], env={"EVOLCODER_TEST_KEY": secret})
    assert p1.returncode == 0, p1.stderr
    assert fake_server.auth_headers and all(h == f"Bearer {secret}" for h in fake_server.auth_headers)
    out = tmp_path / "a"
    for f in ("evolved.jsonl", "rejects.jsonl", "pool.jsonl", "stats.json", "ledger.json", "manifest.json"):
        assert (out / f).exists(), f
    ledger = json.loads((out / "ledger.json").read_text())
    assert ledger["total"]["sent"] == 10 and ledger["total"]["cost_usd"] > 0
    n_sent = len(fake_server.requests)
    p2 = _cli([*args, "--out-dir", str(tmp_path / "b")], env={"EVOLCODER_TEST_KEY": secret})
    assert p2.returncode == 0, p2.stderr
    assert len(fake_server.requests) == n_sent  # all from the cache
    assert json.loads((tmp_path / "b" / "ledger.json").read_text())["total"]["cache_hits"] == 10
    for f in ("evolved.jsonl", "rejects.jsonl", "pool.jsonl"):
        assert (out / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    # the key is nowhere: outputs, cache, manifest, logs
    blobs = [p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()]
    blobs += [p1.stdout.encode(), p1.stderr.encode(), p2.stdout.encode(), p2.stderr.encode()]
    assert not any(secret.encode() in b for b in blobs)


def test_cli_bad_input_is_one_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x"}\n')
    p = _cli(
        [
            "evolve",
            "--pool",
            str(bad),
            "--round",
            "1",
            "--out-dir",
            str(tmp_path / "o"),
            "--settings-json",
            "{}",
            "--cache-dir",
            str(tmp_path / "c"),
        ]
    )
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0
    assert "no string 'instruction'" in p.stderr


def test_plot_stats(tmp_path):
    from evolcoder.evolve.stats import plot_stats

    paths = []
    pool = seed_records(6, {2: "SORRYME"})
    for k in (1, 2, 3):
        res = run_round(pool, k, settings(), str(tmp_path / "c"), backend=ScriptedBackend())
        p = tmp_path / f"stats{k}.json"
        p.write_text(json.dumps(res.stats))
        paths.append(p)
        pool = res.pool
    out = plot_stats(paths, tmp_path / "difficulty.png")
    assert out.exists() and out.stat().st_size > 10_000


# ---------------------------------------------------------------- local backend (in-process transformers)


@pytest.mark.slow
def test_local_backend_batched_greedy_is_deterministic(tmp_path):
    pytest.importorskip("transformers")
    from evolcoder.evolve.backends import BackendSettings, LocalBackend

    try:
        be = LocalBackend(BackendSettings(kind="local", model="smollm2-135m-instruct", concurrency=3))
    except EvolcoderError as exc:
        pytest.skip(f"offline SmolLM2 not available: {exc}")
    calls = []
    orig = be._generate
    be._generate = lambda reqs, keys: (calls.append(len(reqs)), orig(reqs, keys))[1]
    s = settings(
        backend={"kind": "local", "model": "smollm2-135m-instruct", "concurrency": 3},
        evolve_params={"temperature": 0.0, "max_tokens": 8},
        answer_params={"temperature": 0.0, "max_tokens": 8},
    )
    pool = seed_records(3)
    r1 = run_round(pool, 1, s, str(tmp_path / "c1"), backend=be)
    assert calls and max(calls) >= 2  # batched, despite per-request seeds
    assert len(r1.evolved) + len(r1.rejects) == 3
    for rec in r1.evolved + r1.rejects:
        assert rec["usage_by_call"]["evolve"]["completion_tokens"] > 0 and rec["backend"] == "local"
    r2 = run_round(pool, 1, s, str(tmp_path / "c2"), backend=be)  # fresh cache: greedy -> same records
    assert r2.evolved == r1.evolved and r2.rejects == r1.rejects
    assert r1.ledger["total"]["sent"] == r2.ledger["total"]["sent"] > 0


def test_error_messages_never_carry_the_key():
    from evolcoder.evolve.backends import redact

    key = "sk-proj-AbCdEf1234567890"
    assert key not in redact(f"Incorrect API key provided: {key}", key)
    assert "7890" not in redact("Incorrect API key provided: sk-proj-***********7890.")
    assert redact("Incorrect API key provided: sk-abc123**********wxyz.") == "Incorrect API key provided: sk-***."
