"""Multi-GPU launch: `evolcoder train` re-executes itself under torchrun or the deepspeed launcher
(one node, inside one SLURM job)."""

from __future__ import annotations

import json
import os
import sys

from evolcoder.launch import visible_gpus as _granted_gpus
from evolcoder.train.settings import TrainSettings

LAUNCHED_ENV = "LOCAL_RANK"  # set by torchrun / deepspeed in every worker


def visible_gpus(env: dict[str, str] | None = None) -> int:
    """GPUs this job may use: what the allocation grants (evolcoder.launch.visible_gpus:
    CUDA_VISIBLE_DEVICES, which SLURM sets even where SLURM_JOB_GPUS is unset), else what CUDA reports."""
    granted = _granted_gpus(os.environ if env is None else env)
    if granted is not None:
        return granted
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:  # pragma: no cover
        return 0


def num_processes(s: TrainSettings, env: dict[str, str] | None = None) -> int:
    if isinstance(s.num_gpus, int):
        return s.num_gpus
    return max(1, visible_gpus(env))


def needs_launch(s: TrainSettings, env: dict[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    if LAUNCHED_ENV in env:
        return False
    return s.launcher != "none" or (s.num_gpus not in (None, "auto") and num_processes(s, env) > 1)


def launch_command(s: TrainSettings, train_args: list[str], env: dict[str, str] | None = None
                   ) -> tuple[list[str], dict[str, str]]:
    """(argv, env) that runs ``evolcoder train <train_args>`` on every GPU of this node."""
    env = dict(os.environ if env is None else env)
    n = num_processes(s, env)
    launcher = s.launcher if s.launcher != "none" else "torchrun"
    inner = ["-m", "evolcoder.cli", "train", *train_args]
    if launcher == "torchrun":
        argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", *inner]
    else:
        argv = [sys.executable, "-m", "deepspeed.launcher.runner", "--no_local_rank"]
        cvd = env.get("CUDA_VISIBLE_DEVICES")
        if cvd is not None:
            # the deepspeed launcher ignores CUDA_VISIBLE_DEVICES when --num_gpus is given: narrow it instead
            env["CUDA_VISIBLE_DEVICES"] = ",".join([d for d in cvd.split(",") if d.strip()][:n])
        else:
            argv.append(f"--num_gpus={n}")
        argv += ["--master_port", str(_port(env)), "--module", *inner[1:]]
    env.setdefault("DS_BUILD_OPS", "0")
    return argv, env


def _port(env: dict[str, str]) -> int:
    if env.get("MASTER_PORT"):
        return int(env["MASTER_PORT"])
    from evolcoder.train.run import _free_port

    return _free_port()


def train_argv(data: str | None, tokenized: str | None, base_model: str, out_dir: str, settings: dict) -> list[str]:
    argv = []
    if data:
        argv += ["--data", data]
    if tokenized:
        argv += ["--tokenized", tokenized]
    return argv + ["--base-model", base_model, "--out-dir", out_dir, "--settings-json", json.dumps(settings)]
