#!/usr/bin/env python
"""Local generation throughput: evolcoder's two in-process generation paths against a plain batched
``model.generate`` loop on the same model, prompts and settings.

- ``evolve``: the local evolver backend (``evolcoder.evolve.backends.LocalBackend`` through the
  ``Runner``: request queue, micro-batching, response cache with fsync) on chat requests built from
  the evolution templates, sampled as the demo's ``evolve_params``;
- ``generate``: the HF backend of benchmark generation (``evolcoder.generate.run_generation``: plan,
  batches, stop sequences, resumable partial file) on HumanEval prompts, greedy.

Each is timed against the plain loop: the same prompts, ``tokenizer(...)`` + ``model.generate`` in
batches of the same size (generation: with transformers' own ``stop_strings`` for the benchmark's
stops). Tokens are new non-pad tokens; tokens/s is over wall time and over CPU time of this process
(the CPU figure is the one to read on a loaded machine). Target: ratio >= 0.8 for both.

    PYTHONPATH=src OMP_NUM_THREADS=1 python scripts/bench_generate.py [--items 16] [--tasks 12]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

DATA = Path(os.environ.get("EVOLCODER_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


class Clock:
    def __enter__(self):
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.w, time.process_time() - self.c


def plain_loop(tok, model, prompts: list[str], batch: int, gen: dict, encode=None) -> tuple[int, Clock]:
    """The reference: left-padded batches through ``model.generate``, nothing else (``encode``: how the
    path under test tokenises its prompts, so both run the same tokens)."""
    import torch

    encode = encode or (lambda ps: tok(ps, return_tensors="pt", padding=True, add_special_tokens=False))
    n = 0
    with Clock() as c:
        for b in range(0, len(prompts), batch):
            enc = encode(prompts[b : b + batch])
            if gen.get("do_sample"):
                torch.manual_seed(b)
            with torch.inference_mode():
                out = model.generate(**enc, **gen, pad_token_id=tok.pad_token_id)
            n += int((out[:, enc["input_ids"].shape[1] :] != tok.pad_token_id).sum())
    return n, c


def row(name: str, tokens: int, c: Clock) -> str:
    return f"{name:<28} {tokens:>7} {c.wall:>8.1f} {c.cpu:>8.1f} {tokens / c.wall:>9.1f} {tokens / c.cpu:>9.1f}"


def bench_evolve(items: int, max_tokens: int) -> tuple[float, float]:
    from evolcoder.evolve.backends import BackendSettings, Ledger, LocalBackend, Request, Runner
    from evolcoder.evolve.cache import ResponseCache
    from evolcoder.evolve.methods import load_method

    s = BackendSettings.from_dict({"kind": "local", "model": "smollm2-135m-instruct", "concurrency": items})
    backend = LocalBackend(s)
    methods = ["add_constraints", "replace_requirement", "add_reasoning_steps", "erroneous_code", "complexity"]
    params = {"temperature": 0.7, "top_p": 0.95, "max_tokens": max_tokens}
    reqs = []
    for i in range(items):
        instruction = f"Write a Python function number {i} that returns the sorted unique values of a list."
        text = load_method(methods[i % len(methods)]).render(instruction)
        reqs.append(Request([{"role": "user", "content": text}], {**params, "seed": i}))

    async def run_all(cache_dir: str):
        ledger = Ledger(model=backend.model, backend="local")
        runner = Runner(backend, ResponseCache(cache_dir, backend.model), ledger, items)
        return await asyncio.gather(*(runner.run(r) for r in reqs))

    with tempfile.TemporaryDirectory() as d, Clock() as c_ours:
        comps = asyncio.run(run_all(d))
    ours = sum(int(x.usage.get("completion_tokens", 0)) - (x.finish_reason == "stop") for x in comps)
    prompts = [backend.tok.apply_chat_template(r.messages, tokenize=False, add_generation_prompt=True) for r in reqs]
    gen = {"max_new_tokens": max_tokens, "do_sample": True, "temperature": 0.7, "top_p": 0.95}
    plain, c_plain = plain_loop(backend.tok, backend.lm, prompts, items, gen)
    print(f"\nlocal evolver: {items} requests in one batch, sampled, max_tokens {max_tokens}")
    print(f"{'':<28} {'tokens':>7} {'wall s':>8} {'cpu s':>8} {'tok/s':>9} {'tok/cpu-s':>9}")
    print(row("LocalBackend + Runner", ours, c_ours))
    print(row("plain model.generate", plain, c_plain))
    return ours / c_ours.wall / (plain / c_plain.wall), ours / c_ours.cpu / (plain / c_plain.cpu)


def bench_hf(tasks: int, batch: int, max_new_tokens: int) -> tuple[float, float]:
    from evolcoder.benchmarks import get_benchmark
    from evolcoder.generate import GenSettings, HFBackend, plan, prompt_batch, run_generation

    data = DATA / "evalplus" / "HumanEvalPlus-v0.1.10.jsonl.gz"
    s = GenSettings.from_dict({"limit": tasks, "batch_size": batch, "max_new_tokens": max_new_tokens})
    backend = HFBackend("smollm2-135m-instruct", s)
    with tempfile.TemporaryDirectory() as d, Clock() as c_ours:
        run_generation("smollm2-135m-instruct", "humaneval", f"{d}/out.jsonl", s, str(data), backend=backend)
    ours = backend.generated_tokens
    prompts = sorted((it["prompt"] for it in plan(get_benchmark("humaneval"), str(data), s, 0, 1)), key=len)
    gen = {"max_new_tokens": max_new_tokens, "do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    # the same stops, the plain way: transformers' own stop_strings
    gen.update(stop_strings=list(get_benchmark("humaneval").stop_sequences), tokenizer=backend.tok)
    plain, c_plain = plain_loop(
        backend.tok, backend.model, prompts, batch, gen, lambda ps: prompt_batch(backend.tok, ps)
    )
    print(f"\nHF generation backend: {tasks} HumanEval tasks, batch {batch}, greedy, max_new_tokens {max_new_tokens}")
    print("(both stop a row at the benchmark's stop sequences: ours with its own criterion, plain with stop_strings)")
    print(f"{'':<28} {'tokens':>7} {'wall s':>8} {'cpu s':>8} {'tok/s':>9} {'tok/cpu-s':>9}")
    print(row("run_generation (HF)", ours, c_ours))
    print(row("plain model.generate", plain, c_plain))
    return ours / c_ours.wall / (plain / c_plain.wall), ours / c_ours.cpu / (plain / c_plain.cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=16, help="evolver requests (one batch, as the demo's round)")
    ap.add_argument("--max-tokens", type=int, default=96, help="evolver max_tokens (the demo's evolve_params)")
    ap.add_argument("--tasks", type=int, default=12, help="HumanEval tasks (the demo's evaluation.limit)")
    ap.add_argument("--batch", type=int, default=12, help="generation batch size (evaluation.greedy.batch_size)")
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--only", choices=["evolve", "generate"], default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}")
    ratios = {}
    if args.only in (None, "evolve"):
        ratios["local evolver"] = bench_evolve(args.items, args.max_tokens)
    if args.only in (None, "generate"):
        ratios["HF generation"] = bench_hf(args.tasks, args.batch, args.max_new_tokens)
    print()
    for name, (wall, cpu) in ratios.items():
        ok = "ok" if cpu >= 0.8 else "BELOW 0.8"
        print(f"{name}: tokens/s ratio vs plain model.generate = {wall:.2f} (wall), {cpu:.2f} (CPU)  {ok}")


if __name__ == "__main__":
    main()
