"""evolcoder.launch: how many processes a job starts, and the command it runs (no GPU needed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from evolcoder.launch import build_command, process_count, split_argv, visible_gpus


@pytest.mark.parametrize(
    "env, n",
    [
        ({"CUDA_VISIBLE_DEVICES": "0,1"}, 2),
        ({"CUDA_VISIBLE_DEVICES": "3"}, 1),
        ({"CUDA_VISIBLE_DEVICES": "GPU-1a2b,GPU-3c4d,GPU-5e6f"}, 3),  # UUIDs, as some sites set them
        ({"CUDA_VISIBLE_DEVICES": ""}, 0),
        ({"CUDA_VISIBLE_DEVICES": "NoDevFiles"}, 0),
        ({"SLURM_GPUS_ON_NODE": "4"}, 4),  # no CUDA_VISIBLE_DEVICES
        ({"SLURM_JOB_GPUS": "0,1"}, None),  # not a count we trust
        ({}, None),
    ],
)
def test_visible_gpus(env, n):
    assert visible_gpus(env) == n


def test_process_count_is_one_per_gpu_at_least_one_and_can_be_forced():
    assert process_count({"CUDA_VISIBLE_DEVICES": "0,1,2,3"}) == 4
    assert process_count({"CUDA_VISIBLE_DEVICES": ""}) == 1
    assert process_count({}, probe_torch=False) == 1
    assert process_count({"CUDA_VISIBLE_DEVICES": "0,1", "EVOLCODER_NPROC": "1"}) == 1
    with pytest.raises(SystemExit, match="EVOLCODER_NPROC"):
        process_count({"EVOLCODER_NPROC": "two"})


def test_build_command():
    assert build_command(["train", "--data", "x"], 1, python="py") == [
        "py",
        "-m",
        "evolcoder.cli",
        "train",
        "--data",
        "x",
    ]
    assert build_command(["train"], 8, python="py") == [
        "py",
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes",
        "1",
        "--nproc-per-node",
        "8",
        "-m",
        "evolcoder.cli",
        "train",
    ]


def test_split_argv_stops_at_the_first_module_argument():
    assert split_argv(["--nproc", "2", "train", "--nproc", "9"]) == (
        {"nproc": "2", "module": "evolcoder.cli", "dry_run": False},
        ["train", "--nproc", "9"],
    )
    assert split_argv(["--module=m", "--dry-run", "--", "--x"]) == (
        {"nproc": "auto", "module": "m", "dry_run": True},
        ["--x"],
    )


def test_dry_run_prints_the_torchrun_command():
    proc = subprocess.run(
        [sys.executable, "-m", "evolcoder.launch", "--dry-run", "train", "--data", "d.jsonl"],
        capture_output=True,
        text=True,
        env={"CUDA_VISIBLE_DEVICES": "0,1", "PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)},
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        "torch.distributed.run --standalone --nnodes 1 --nproc-per-node 2 -m evolcoder.cli train --data d.jsonl"
        in proc.stdout
    )
    assert "2 process(es) (CUDA_VISIBLE_DEVICES=0,1)" in proc.stderr
