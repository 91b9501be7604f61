"""Check a (multi-)GPU allocation before a long training job: every rank joins the process group,
all-reduces its rank, and rank 0 prints one JSON line (world size, the sum, each rank's device).

    python -m evolcoder.launch --module evolcoder.train.gpucheck [--out FILE]

NCCL on GPUs, gloo otherwise (the CPU-only test cluster declares fake GPUs: gloo then).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from datetime import timedelta


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m evolcoder.train.gpucheck")
    parser.add_argument("--out", help="also write the JSON line to this file (rank 0)")
    ns = parser.parse_args(argv)

    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = f"cuda:{local_rank}" if cuda else "cpu"
    info = {
        "rank": rank,
        "local_rank": local_rank,
        "host": socket.gethostname(),
        "device": device,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    if world > 1:
        backend = "nccl" if cuda else "gloo"
        if cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, timeout=timedelta(minutes=5))
        total = torch.tensor([rank], device=device)
        dist.all_reduce(total)
        gathered: list = [None] * world
        dist.all_gather_object(gathered, info)
        dist.destroy_process_group()
    else:
        backend, total, gathered = None, torch.tensor([0]), [info]
    if rank == 0:
        line = json.dumps(
            {
                "world_size": world,
                "backend": backend,
                "rank_sum": int(total.item()),
                "expected_rank_sum": world * (world - 1) // 2,
                "ranks": gathered,
            }
        )
        print(line, flush=True)
        if ns.out:
            with open(ns.out, "w", encoding="utf-8") as fh:
                fh.write(line + "\n")
    sys.exit(0)


if __name__ == "__main__":
    main()
