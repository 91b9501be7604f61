"""Check a (multi-)GPU, multi-node allocation before a long training job: every rank joins the
process group, all ranks see each other (each one's host and device gathered), an all-reduce of
known values comes out right, and a timed all-reduce gives a bandwidth figure. Rank 0 prints one
JSON line; any other outcome exits non-zero with a line saying what is wrong.

    python -m evolcoder.launch --module evolcoder.train.gpucheck [--out FILE] [--bandwidth-mb 64]

Run inside the allocation (``srun``/``sbatch`` with the job's ``--nodes``): the launcher then starts
one process per GPU on every node. NCCL on GPUs, gloo otherwise (the CPU-only test cluster).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from datetime import timedelta


def _bandwidth(dist, torch, device: str, world: int, mbytes: float, iters: int) -> dict:
    """Bus bandwidth of an all-reduce of ``mbytes`` MB (the nccl-tests convention: algbw x 2(n-1)/n)."""
    n = max(1, int(mbytes * 2**20 / 4))
    buf = torch.ones(n, dtype=torch.float32, device=device)
    dist.all_reduce(buf)  # warm-up (connections, NCCL rings)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(iters):
        dist.all_reduce(buf)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / iters
    algbw = n * 4 / dt / 1e9
    return {
        "bytes": n * 4,
        "iters": iters,
        "seconds_per_allreduce": round(dt, 6),
        "algbw_GBps": round(algbw, 3),
        "busbw_GBps": round(algbw * 2 * (world - 1) / world, 3),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m evolcoder.train.gpucheck")
    parser.add_argument("--out", help="also write the JSON line to this file (rank 0)")
    parser.add_argument("--bandwidth-mb", type=float, default=None, help="all-reduce size (default 64 GPU, 8 CPU)")
    parser.add_argument("--iters", type=int, default=5, help="timed all-reduces")
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
    problems: list[str] = []
    bandwidth = None
    if world > 1:
        backend = "nccl" if cuda else "gloo"
        if cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, timeout=timedelta(minutes=5))
        total = torch.tensor([rank], device=device)
        dist.all_reduce(total)
        # known values: rank r contributes (r + 1) * [1, 2, 3, 4]; the sum is n(n+1)/2 * [1, 2, 3, 4]
        vec = (rank + 1) * torch.arange(1, 5, dtype=torch.float64, device=device)
        dist.all_reduce(vec)
        want = world * (world + 1) / 2 * torch.arange(1, 5, dtype=torch.float64)
        if not torch.equal(vec.cpu(), want):
            problems.append(f"all-reduce of known values gave {vec.tolist()}, expected {want.tolist()}")
        gathered: list = [None] * world
        dist.all_gather_object(gathered, info)
        missing = sorted(set(range(world)) - {g["rank"] for g in gathered if g})
        if missing:
            problems.append(f"ranks {missing} did not answer")
        mb = ns.bandwidth_mb if ns.bandwidth_mb is not None else (64 if cuda else 8)
        bandwidth = _bandwidth(dist, torch, device, world, mb, ns.iters) if mb > 0 else None
        dist.destroy_process_group()
    else:
        backend, total, gathered = None, torch.tensor([0]), [info]
    if int(total.item()) != world * (world - 1) // 2:
        problems.append(f"rank sum {int(total.item())} != {world * (world - 1) // 2}")
    if rank == 0:
        line = json.dumps(
            {
                "world_size": world,
                "nodes": sorted({g["host"] for g in gathered}),
                "backend": backend,
                "rank_sum": int(total.item()),
                "expected_rank_sum": world * (world - 1) // 2,
                "allreduce_ok": not problems,
                "bandwidth": bandwidth,
                "ranks": gathered,
            }
        )
        print(line, flush=True)
        if ns.out:
            with open(ns.out, "w", encoding="utf-8") as fh:
                fh.write(line + "\n")
    if problems:
        print(f"gpucheck: error: rank {rank}: " + "; ".join(problems), file=sys.stderr, flush=True)
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
