"""evolcoder.launch: how many processes a job starts, and the command it runs (no GPU needed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from evolcoder.launch import (
    build_command,
    failure_line,
    failure_report,
    multinode_command,
    node_command,
    process_count,
    slurm_allocation,
    split_argv,
    visible_gpus,
)


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
    def main_opts(argv):
        opts, rest = split_argv(argv)
        return {k: opts[k] for k in ("nproc", "module", "dry_run", "node_agent")}, rest

    assert main_opts(["--nproc", "2", "train", "--nproc", "9"]) == (
        {"nproc": "2", "module": "evolcoder.cli", "dry_run": False, "node_agent": False},
        ["train", "--nproc", "9"],
    )
    assert main_opts(["--module=m", "--dry-run", "--", "--x"]) == (
        {"nproc": "auto", "module": "m", "dry_run": True, "node_agent": False},
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


# ---- several nodes --------------------------------------------------------------------------


def test_multinode_command_is_one_srun_task_per_node_running_the_node_agent():
    argv, env = multinode_command(
        ["train", "--out-dir", "o"],
        8,
        ["gpu-a01", "gpu-a02"],
        python="py",
        env={"SLURM_JOB_ID": "77", "EVOLCODER_RDZV_TIMEOUT": "120"},
        port=29555,
        cpus_per_task=64,
        report_dir="o/launch",
    )
    assert argv[: argv.index("py")] == [
        "srun",
        "--nodes=2",
        "--ntasks=2",
        "--ntasks-per-node=1",
        "--kill-on-bad-exit=1",
        "--overlap",
        "--unbuffered",
        "--cpus-per-task=64",
    ]
    agent = " ".join(argv[argv.index("py") :])
    assert agent == (
        "py -m evolcoder.launch --node-agent --nodes gpu-a01,gpu-a02 --nproc 8 --port 29555 --launcher torchrun "
        "--module evolcoder.cli --rdzv-timeout 120 --rdzv-id 77 --report-dir o/launch -- train --out-dir o"
    )
    opts, rest = split_argv(argv[argv.index("py") + 3 :])
    assert opts["node_agent"] and opts["nodes"] == "gpu-a01,gpu-a02" and opts["rdzv_id"] == "77"
    assert rest == ["train", "--out-dir", "o"]
    assert env["DS_BUILD_OPS"] == "0"


def test_node_command_torchrun_rendezvous_at_the_first_node_which_hosts_it():
    hosts = ["n1", "n2"]
    first = node_command(["train"], 4, hosts, 0, 29555, python="py", rdzv_id="77", timeout=60)
    assert " ".join(first) == (
        "py -m torch.distributed.run --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint n1:29555 "
        "--rdzv-id 77 --rdzv-conf is_host=1,join_timeout=60,read_timeout=60 --max-restarts 0 -m evolcoder.cli train"
    )
    second = node_command(["train"], 4, hosts, 1, 29555, python="py", rdzv_id="77", timeout=60)
    assert "is_host=0,join_timeout=60" in " ".join(second)


def test_node_command_deepspeed_per_node_launcher():
    import base64
    import json

    argv = node_command(["train"], 2, ["n1", "n2"], 1, 29555, launcher="deepspeed", python="py")
    assert argv[:3] == ["py", "-m", "deepspeed.launcher.launch"]
    world = next(a for a in argv if a.startswith("--world_info=")).split("=", 1)[1]
    assert json.loads(base64.urlsafe_b64decode(world)) == {"n1": [0, 1], "n2": [0, 1]}
    assert {"--node_rank=1", "--master_addr=n1", "--master_port=29555", "--module"} <= set(argv)


TORCHRUN_FAILURE = """\
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
evolcoder.cli FAILED
------------------------------------------------------------
Failures:
  <NO_OTHER_FAILURES>
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-12-03_16:50:47
  host      : evnode2
  rank      : 1 (local_rank: 0)
  exitcode  : -9 (pid: 4242)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 4242
============================================================
"""


def test_failure_line_names_the_node_and_rank():
    kw = dict(host="evnode2", node_rank=1, nnodes=2, rc=1, rdzv="evnode1:29555", timeout=300)
    lines = TORCHRUN_FAILURE.splitlines()
    assert failure_line(lines, **kw) == "rank 1 (local rank 0) on node evnode2 failed (killed by SIGKILL)"
    exited = [ln.replace("-9 (pid", "3 (pid") for ln in lines]
    assert failure_line(exited, **kw) == "rank 1 (local rank 0) on node evnode2 failed (exit code 3)"
    assert failure_line(["torch...RendezvousTimeoutError"], **kw).startswith(
        "node evnode2 (node 1 of 2): the rendezvous at evnode1:29555 did not complete within 300 s"
    )
    assert failure_line(["boom"], **kw) == "node evnode2 (node 1 of 2): the launcher exited with status 1"


def test_failure_report_prefers_the_node_that_failed_over_the_ones_stopped(tmp_path):
    import json

    assert failure_report(tmp_path / "none") is None
    (tmp_path / "node-0.json").write_text(json.dumps({"time": 1.0, "stopped": True, "line": "node a: stopped"}))
    (tmp_path / "node-1.json").write_text(json.dumps({"time": 2.0, "stopped": False, "line": "rank 1 failed"}))
    assert failure_report(tmp_path) == "rank 1 failed"


def test_slurm_allocation_outside_slurm_and_on_one_node():
    assert slurm_allocation({}) == ([], None)
    env = {"SLURM_JOB_ID": "5", "SLURM_JOB_NUM_NODES": "1", "SLURM_JOB_NODELIST": "n7", "SLURM_CPUS_PER_TASK": "4"}
    assert slurm_allocation(env) == (["n7"], 4)  # no scontrol needed


def test_a_rendezvous_that_does_not_complete_fails_in_bounded_time(tmp_path):
    """One node of two: the node agent gives up after the timeout, with one line saying so."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path), "SLURM_NODEID": "0", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "evolcoder.launch", "--node-agent", "--nodes", "localhost,absent", "--nproc", "1"]
    cmd += ["--port", "0", "--rdzv-timeout", "3", "--report-dir", str(tmp_path), "--module", "evolcoder.train.gpucheck"]
    import time

    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    took = time.monotonic() - t0
    assert proc.returncode != 0
    want = "(node 0 of 2): the rendezvous at localhost:0 did not complete within 3 s"
    assert want in proc.stderr.splitlines()[-1], proc.stderr[-2000:]
    assert want in failure_report(tmp_path)
    assert took < 60, took
