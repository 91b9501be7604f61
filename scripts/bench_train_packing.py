#!/usr/bin/env python
"""Training throughput, padding vs packing (padding-free batches), on the same data and steps.

    PYTHONPATH=src python scripts/bench_train_packing.py [--data results/merged/train.jsonl]
        [--model smollm2-135m-instruct] [--steps 8] [--micro-batch 4] [--max-length 512]

Both modes run the real `evolcoder train` code path (HF Trainer, same seed, same data order) on
CPU and print training tokens/s, counting real (non-padding) tokens only, from the logging steps
after the first (warm-up). Without --data the Code Alpaca seed set is used (instruction + input +
output records with a realistic length spread); point it at results/merged/train.jsonl for the
evolved data.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from evolcoder.io import read_json, write_jsonl  # noqa: E402
from evolcoder.train.settings import parse_settings  # noqa: E402


def _default_data(tmp: Path, n: int) -> Path:
    shared = Path(os.environ.get("EVOLCODER_SHARED_DATA", REPO.parent / "shared" / "data"))
    src = shared / "seeds" / "code_alpaca_2k.json"
    if not src.exists():
        sys.exit(f"no --data given and {src} is missing (set EVOLCODER_SHARED_DATA)")
    items = json.loads(src.read_text())[:n]
    path = tmp / "code_alpaca.jsonl"
    write_jsonl(path, ({"instruction": r["instruction"], "input": r.get("input", ""), "output": r["output"]}
                       for r in items))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--records", type=int, default=256, help="records taken from the default data")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from evolcoder.models import resolve
    from evolcoder.train.data import load_tokenized
    from evolcoder.train.run import run_tokenize, run_training

    with tempfile.TemporaryDirectory(prefix="bench_packing_") as tmp_:
        tmp = Path(tmp_)
        data = args.data or _default_data(tmp, args.records)
        model = resolve(args.model)
        base = {"base_model": args.model, "model_max_length": args.max_length,
                "global_batch_size": args.micro_batch, "micro_batch_size": args.micro_batch,
                "learning_rate": 2e-5, "num_epochs": 1, "max_steps": args.steps, "warmup_steps": 1,
                "save_steps": 10_000, "seed": 42, "checkpoint_on_sigterm": False}
        tok_path = tmp / "tok.pt"
        stats = run_tokenize(str(data), model, str(tok_path), base)
        lengths = load_tokenized(tok_path).lengths()
        print(f"data: {data} - {stats['examples']} examples, length mean {statistics.mean(lengths):.0f}, "
              f"median {statistics.median(lengths):.0f}, min {min(lengths)}, max {max(lengths)} "
              f"(max_length {args.max_length})")
        results = {}
        for mode in ("padding", "packing"):
            raw = {**base, "packing": mode == "packing"}
            t0 = time.time()
            man = run_training(data=str(data), tokenized=str(tok_path), base_model=model,
                               out_dir=str(tmp / mode), s=parse_settings(raw), raw_settings=raw)
            wall = time.time() - t0
            hist = read_json(tmp / mode / "log_history.json")
            tps = [h["tokens_per_s"] for h in hist if "tokens_per_s" in h][1:]  # skip the warm-up step
            results[mode] = statistics.mean(tps)
            print(f"{mode:8s}: {results[mode]:8.1f} training tokens/s (real tokens; steps 2-{args.steps}), "
                  f"final loss {man['final_loss']:.4f}, peak RSS {man['peak_mem_mb']:.0f} MiB, wall {wall:.0f}s")
        print(f"packing / padding = {results['packing'] / results['padding']:.2f}x "
              f"(model {args.model}, micro-batch {args.micro_batch}, {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
