#!/usr/bin/env python
"""Training throughput, padding vs packing (padding-free batches), on the same data.

    PYTHONPATH=src python scripts/bench_train_packing.py [--data results/merged/train.jsonl]
        [--model smollm2-135m-instruct] [--batches 8] [--micro-batch 4] [--max-length 512] [--repeats 3]

The data is tokenised exactly as `evolcoder train` does (WizardCoder prompt, masked prompt, EOS),
cut into the same micro-batches, and each micro-batch is run as one training step (forward,
backward, AdamW step, model in train mode without KV cache, as in the Trainer) once padded
(PaddingCollator) and once packed (transformers' DataCollatorWithFlattening, the collator
`packing: true` uses). The two modes alternate batch by batch and the best of --repeats timings
of every batch is kept, so a noisy shared machine penalises neither side. Printed: real
(non-padding) training tokens per second of each mode.

Without --data the Code Alpaca seed set is used (a realistic instruction/response length
spread); point --data at results/merged/train.jsonl for the evolved data.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from evolcoder.io import read_jsonl  # noqa: E402


def _records(data: Path | None, n: int) -> list[dict]:
    if data is not None:
        return read_jsonl(data)[:n]
    shared = Path(os.environ.get("EVOLCODER_SHARED_DATA", REPO.parent / "shared" / "data"))
    src = shared / "seeds" / "code_alpaca_2k.json"
    if not src.exists():
        sys.exit(f"no --data given and {src} is missing (set EVOLCODER_SHARED_DATA)")
    return json.loads(src.read_text())[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM

    from evolcoder.models import model_config, resolve
    from evolcoder.train.data import PaddingCollator, TrainDataset, packing_collator, tokenize_records
    from evolcoder.train.settings import template
    from evolcoder.train.tokens import load_tokenizer

    model_dir = resolve(args.model)
    tok = load_tokenizer(model_dir)
    n = args.batches * args.micro_batch
    tokd, _stats = tokenize_records(_records(args.data, 4 * n), tok, template("wizardcoder"), args.max_length)
    ds = TrainDataset(tokd)
    g = torch.Generator().manual_seed(args.seed)  # a random order, as the Trainer's sampler draws
    order = torch.randperm(len(ds), generator=g).tolist()[:n]
    feats = [[ds[i] for i in order[b * args.micro_batch : (b + 1) * args.micro_batch]] for b in range(args.batches)]
    lengths = [len(f["input_ids"]) for batch in feats for f in batch]
    real_tokens = sum(lengths)
    padded_tokens = sum(max(len(f["input_ids"]) for f in batch) * len(batch) for batch in feats)
    print(
        f"data: {args.data or 'Code Alpaca seeds'} - {args.batches} micro-batches of {args.micro_batch}, "
        f"sample length mean {statistics.mean(lengths):.0f}, median {statistics.median(lengths):.0f}, "
        f"min {min(lengths)}, max {max(lengths)} (max_length {args.max_length}); "
        f"padding efficiency {real_tokens / padded_tokens:.2f}"
    )

    model = AutoModelForCausalLM.from_pretrained(model_dir, config=model_config(model_dir), dtype=torch.float32)
    model.config.use_cache = False
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    collate = {"padding": PaddingCollator(tok.pad_token_id), "packing": packing_collator()}
    best: dict[str, list[float]] = {m: [float("inf")] * args.batches for m in collate}

    def step(batch: dict) -> tuple[float, float]:
        t0 = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t0, float(loss)

    step(collate["padding"](feats[0]))  # warm-up (allocator, kernels)
    for r in range(args.repeats):
        for b, batch in enumerate(feats):
            modes = ("padding", "packing") if (r + b) % 2 == 0 else ("packing", "padding")
            for mode in modes:
                dt, _loss = step(collate[mode](batch))
                best[mode][b] = min(best[mode][b], dt)
    tps = {m: real_tokens / sum(best[m]) for m in collate}
    for m in collate:
        print(f"{m:8s}: {tps[m]:8.1f} training tokens/s (real tokens, best of {args.repeats} per micro-batch)")
    print(
        f"packing / padding = {tps['packing'] / tps['padding']:.2f}x "
        f"(model {args.model}, micro-batch {args.micro_batch}, {torch.get_num_threads()} threads)"
    )


if __name__ == "__main__":
    main()
