#!/usr/bin/env python
"""Evolution throughput against an OpenAI-compatible endpoint with a fixed per-request latency.

Starts ``tests/fakeserver.py`` (plain asyncio HTTP, fixed latency) in its own process, runs
full evolution rounds (method choice, evolve request, elimination, answer request, cache append with
fsync, ledger) through the real ``openai`` client at several concurrency levels, and prints achieved
vs. ideal request throughput. Ideal = concurrency / latency requests per second (the endpoint is the
only bottleneck). Target: achieved / ideal >= 0.8 at concurrency 32. For reference it also measures the
bare ``openai`` client (same concurrency, no engine): the engine's ceiling on this machine.

    PYTHONPATH=src python scripts/bench_evolve_throughput.py [--latency 0.25 1.0] [--concurrency 1 8 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from evolcoder.evolve.engine import run_round
from evolcoder.seed import seed_record


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed_pool(n: int) -> list[dict]:
    text = "Write a Python function number {} that returns the sorted unique values of a list."
    return [
        seed_record(f"seed-{i:012x}", text.format(i), "", "def f(xs):\n    return sorted(set(xs))") for i in range(n)
    ]


async def raw_client_run(base_url: str, concurrency: int, n_requests: int) -> float:
    """The floor: the bare openai client at the same concurrency, no engine (wall seconds)."""
    import openai

    client = openai.AsyncOpenAI(api_key="x", base_url=base_url, max_retries=0)
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int):
        async with sem:
            return await client.post(
                "/chat/completions",
                cast_to=object,
                body={
                    "model": "fake",
                    "messages": [{"role": "user", "content": f"Write function {i}."}],
                    "max_tokens": 8,
                },
            )

    t0 = time.perf_counter()
    await asyncio.gather(*[one(i) for i in range(n_requests)])
    wall = time.perf_counter() - t0
    await client.close()
    return wall


def bench_latency(latency: float, concurrencies: list[int], waves: int, raw: bool) -> list[dict]:
    port = free_port()
    fake = Path(__file__).resolve().parents[1] / "tests" / "fakeserver.py"
    server = subprocess.Popen(
        [sys.executable, str(fake), "--port", str(port), "--latency", str(latency)],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    results = []
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        # warm-up (imports, first connection) outside the timed runs
        with tempfile.TemporaryDirectory() as tmp:
            run_round(
                seed_pool(2),
                1,
                {
                    "seed": 1,
                    "progress": False,
                    "backend": {
                        "kind": "openai",
                        "model": "fake",
                        "base_url": base_url,
                        "api_key_env": "EVOLCODER_BENCH_NO_KEY",
                    },
                },
                tmp,
            )
        print(
            f"\nendpoint: fake OpenAI-compatible, fixed latency {latency:.3f}s/request; client: evolcoder evolve "
            f"(openai AsyncOpenAI, cache fsync on); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
        )
        print(
            f"{'concurrency':>11} {'items':>6} {'requests':>9} {'wall_s':>8} {'req/s':>8} {'ideal':>8} "
            f"{'achieved/ideal':>15} {'client_lat_s':>12} {'raw_client/ideal':>17}"
        )
        for c in concurrencies:
            n_items = max(8, waves * c // 2)  # two requests (evolve + answer) per item
            with tempfile.TemporaryDirectory() as tmp:
                settings = {
                    "seed": 1,
                    "progress": False,
                    "backend": {
                        "kind": "openai",
                        "model": "fake",
                        "base_url": base_url,
                        "api_key_env": "EVOLCODER_BENCH_NO_KEY",
                        "concurrency": c,
                        "timeout_s": 60,
                    },
                }
                t0 = time.perf_counter()
                res = run_round(seed_pool(n_items), 1, settings, tmp)
                wall = time.perf_counter() - t0
            sent = res.ledger["total"]["sent"]
            mean_lat = res.ledger["total"]["latency_s"] / max(1, res.ledger["total"]["completed"])
            rps = sent / wall
            ideal = c / latency
            raw_ratio = None
            if raw:
                raw_wall = asyncio.run(raw_client_run(base_url, c, sent))
                raw_ratio = sent / raw_wall / ideal
            row = {
                "latency_s": latency,
                "concurrency": c,
                "items": n_items,
                "requests": sent,
                "wall_s": round(wall, 3),
                "req_per_s": round(rps, 2),
                "ideal_req_per_s": round(ideal, 2),
                "achieved_over_ideal": round(rps / ideal, 3),
                "evolved": len(res.evolved),
                "mean_client_latency_s": round(mean_lat, 4),
                "raw_client_over_ideal": round(raw_ratio, 3) if raw_ratio is not None else None,
            }
            results.append(row)
            print(
                f"{c:>11} {n_items:>6} {sent:>9} {wall:>8.2f} {rps:>8.2f} {ideal:>8.2f} {rps / ideal:>15.3f}"
                f" {mean_lat:>12.3f} {raw_ratio if raw_ratio is not None else float('nan'):>17.3f}"
            )
    finally:
        server.terminate()
        server.wait(10)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--latency",
        type=float,
        nargs="+",
        default=[0.25, 1.0],
        help="fixed seconds per request at the endpoint (one table per value)",
    )
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--waves", type=int, default=12, help="requests per run = waves x concurrency")
    ap.add_argument("--no-raw", action="store_true", help="skip the bare-openai-client floor measurement")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import openai  # noqa: F401  (import time is not throughput)

    results = []
    for latency in a.latency:
        results += bench_latency(latency, a.concurrency, a.waves, not a.no_raw)
    if a.json:
        Path(a.json).write_text(json.dumps({"results": results}, indent=2) + "\n")
    print()
    for r in results:
        if r["concurrency"] == 32:
            ok = r["achieved_over_ideal"] >= 0.8
            print(
                f"target achieved/ideal >= 0.8 at concurrency 32, latency {r['latency_s']}s: "
                f"{'MET' if ok else 'NOT MET'} ({r['achieved_over_ideal']:.3f}; bare openai client "
                f"{r['raw_client_over_ideal']})"
            )


if __name__ == "__main__":
    main()
