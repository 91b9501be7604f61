"""The workflow on a real SLURM cluster: `snakemake --profile slurm` submits every non-local job,
the GPU rules get gres/gpu, a second run submits nothing, and a multi-GPU launch works inside an
allocation. Needs the one-node cluster of scripts/slurm/setup_cluster.sh (CI starts it); skips
when `sinfo`/`sacct` do not answer.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from workflow_utils import REPO, copy_workflow, planned_jobs

pytestmark = pytest.mark.slurm

# faster polling than the template's (the test cluster answers at once)
FAST_STATUS = ("--slurm-init-seconds-before-status-checks", "2")
GPU_RULES = {"train", "generate"}


def _cluster_up() -> str | None:
    """None when sinfo and sacct answer, else why not."""
    for cmd in (["sinfo", "-h", "-o", "%P %a"], ["sacct", "-n", "-X", "-S", "now-1minutes"]):
        if shutil.which(cmd[0]) is None:
            return f"{cmd[0]} not installed (run scripts/slurm/setup_cluster.sh)"
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        except subprocess.TimeoutExpired:
            return f"{cmd[0]} timed out"
        if proc.returncode != 0:
            return f"{cmd[0]} failed: {proc.stderr.strip()[:200]}"
    return None


@pytest.fixture(scope="module")
def cluster():
    why = _cluster_up()
    if why:
        pytest.skip(f"no SLURM cluster: {why}")
    partitions = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True).stdout.split()
    assert {"cpu*", "gpu"} <= set(partitions) or {"cpu", "gpu"} <= {p.rstrip("*") for p in partitions}, partitions


def _env(xdg: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["XDG_CONFIG_HOME"] = str(xdg)  # where `--profile slurm` is looked up (~/.config)
    src = str(REPO / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 2400) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        logs = "\n".join(
            f"--- {p}\n{p.read_text()[-2000:]}" for p in sorted((cwd / ".snakemake/slurm_logs").rglob("*.log"))
        )
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}\n{logs[-6000:]}"
        )
    return proc


def _sacct(since: str, workdir: Path) -> list[dict[str, str]]:
    """Allocations (not steps) started in `workdir` since `since`."""
    fields = ["JobID", "JobName", "Partition", "State", "AllocTRES", "Comment", "WorkDir", "ExitCode"]
    rows: list[dict[str, str]] = []
    for _ in range(30):  # slurmdbd may lag behind slurmctld by a moment
        out = subprocess.run(
            ["sacct", "-a", "-X", "-P", "-n", "-S", since, "-o", ",".join(f"{f}%300" for f in fields)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        rows = [dict(zip(fields, line.split("|"), strict=False)) for line in out.splitlines() if line.strip()]
        rows = [r for r in rows if Path(r["WorkDir"]).resolve() == workdir.resolve()]
        if all(r["State"] not in ("PENDING", "RUNNING", "") for r in rows):
            break
        time.sleep(2)
    return rows


def _rule_of(comment: str, rules: set[str]) -> str:
    m = re.match(r"^rule_(.+?)(?:_wildcards_.*)?$", comment)
    assert m, comment
    name = m.group(1)
    # rule names may contain underscores: prefer the longest known rule the comment starts with
    known = sorted(
        (r for r in rules if comment == f"rule_{r}" or comment.startswith(f"rule_{r}_wildcards_")),
        key=len,
        reverse=True,
    )
    return known[0] if known else name


def _local_rules() -> set[str]:
    local = {"all"}
    for f in [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]:
        parts = re.split(r"^rule\s+(\w+)\s*:\s*$", f.read_text(), flags=re.M)
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if re.search(r"^\s+localrule:\s*True", body, flags=re.M):
                local.add(name)
        for m in re.finditer(r"^localrules:\s*(.+)$", f.read_text(), flags=re.M):
            local |= {x.strip() for x in m.group(1).split(",")}
    return local


@pytest.mark.slow
def test_tiny_pipeline_under_slurm_then_noop(cluster, tmp_path, shared_data):
    wd = copy_workflow(tmp_path / "wf", shared_data)
    xdg = tmp_path / "xdg"
    env = _env(xdg)
    # the documented one-liner: installs profiles/slurm as ~/.config/snakemake/slurm (here: $XDG_CONFIG_HOME)
    _run(["bash", str(REPO / "scripts/install_slurm_profile.sh")], wd, env)
    assert (xdg / "snakemake/slurm/config.yaml").exists()
    # train on both fake GPUs: the launcher must start one process per GPU inside the allocation
    (wd / "cluster.yaml").write_text("train:\n  resources: {gpus: 2, cpus_per_gpu: 1, mem_mb: 4000, runtime: 30}\n")
    cfgs = ["--configfile", "tests/configs/tiny.yaml", "data.yaml", "cluster.yaml"]
    expected = planned_jobs(wd, configfiles=("tests/configs/tiny.yaml", "data.yaml", "cluster.yaml"))
    local = _local_rules()
    remote_expected = {r: n for r, n in expected.items() if r not in local}
    assert set(remote_expected) >= GPU_RULES, (remote_expected, local)

    since = datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
    time.sleep(1)
    # spelling 1: the bare name, found in $XDG_CONFIG_HOME/snakemake/slurm
    first = _run([sys.executable, "-m", "snakemake", "--profile", "slurm", *cfgs, *FAST_STATUS], wd, env)
    assert "Using profiles slurm and workflow specific profile profiles/default" in first.stderr, first.stderr[:2000]
    assert (wd / "results/scores.md").exists()

    rows = _sacct(since, wd)
    ran: dict[str, int] = {}
    for r in rows:
        rule = _rule_of(r["Comment"], set(expected))
        ran[rule] = ran.get(rule, 0) + 1
        assert r["State"] == "COMPLETED", r
        gpus = re.search(r"gres/gpu=(\d+)", r["AllocTRES"])
        if rule in GPU_RULES:
            assert gpus and int(gpus.group(1)) >= 1, (rule, r)
            assert r["Partition"] == "gpu", (rule, r)
        else:
            assert not gpus, (rule, r)
            assert r["Partition"] == "cpu", (rule, r)
    # every non-local job ran under SLURM, once; local rules never did
    assert ran == remote_expected, (ran, remote_expected)
    assert (
        int(re.search(r"gres/gpu=(\d+)", next(r["AllocTRES"] for r in rows if "rule_train" in r["Comment"])).group(1))
        == 2
    )

    # the training job saw both GPUs and started one process per GPU
    train_log = (wd / "logs/train/tiny-evolcoder.log").read_text()
    assert "evolcoder.launch: 2 process(es) (CUDA_VISIBLE_DEVICES=0,1)" in train_log, train_log[-3000:]

    # spelling 2: the profile folder of the repository; nothing is stale, so nothing is submitted
    since2 = datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
    time.sleep(1)
    second = _run([sys.executable, "-m", "snakemake", "--profile", "profiles/slurm", *cfgs, *FAST_STATUS], wd, env)
    assert "Nothing to be done" in second.stdout + second.stderr, second.stderr[-3000:]
    assert "submitted with SLURM jobid" not in second.stdout + second.stderr
    assert _sacct(since2, wd) == []


def test_multi_gpu_launch_inside_the_allocation(cluster, tmp_path):
    """A rule asking for 2 GPUs runs under the executor plugin's srun step; evolcoder.launch reads
    CUDA_VISIBLE_DEVICES there (SLURM_JOB_GPUS is unset in the step) and starts 2 ranks that
    all-reduce over torch.distributed."""
    (tmp_path / "Snakefile").write_text(
        "rule distcheck:\n"
        "    output: 'dist.json'\n"
        "    resources: gpu=2, cpus_per_gpu=1, mem_mb=3000, runtime=10\n"
        "    shell: 'python -m evolcoder.launch --module evolcoder.train.gpucheck --out {output} > dist.log 2>&1'\n"
    )
    env = _env(tmp_path / "xdg")
    since = datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
    time.sleep(1)
    _run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--executor",
            "slurm",
            "--jobs",
            "1",
            "--latency-wait",
            "10",
            "--slurm-partition-config",
            str(REPO / "profiles/slurm/partitions.yaml"),
            *FAST_STATUS,
        ],
        tmp_path,
        env,
        timeout=600,
    )
    result = json.loads((tmp_path / "dist.json").read_text())
    assert result["world_size"] == 2 and result["rank_sum"] == result["expected_rank_sum"] == 1, result
    assert [r["cuda_visible_devices"] for r in result["ranks"]] == ["0,1", "0,1"], result
    assert "evolcoder.launch: 2 process(es)" in (tmp_path / "dist.log").read_text()
    rows = _sacct(since, tmp_path)
    assert len(rows) == 1 and rows[0]["Partition"] == "gpu" and "gres/gpu=2" in rows[0]["AllocTRES"], rows
