"""Training on two SLURM nodes: `snakemake --profile` with `train.resources.nodes: 2` runs the train
job on both nodes of the two-node cluster (scripts/slurm/setup_cluster.sh with
EVOLCODER_SLURM_NODES=2: slurmd evnode1/evnode2 in their own network namespaces, partition
`multi`), CPU training with gloo, one rank per node. Its loss equals a one-node two-process run
of the same steps, and a rank killed on one node fails the job within 60 s with one line naming
the node and the rank. Skips when the `multi` partition is not up.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from workflow_utils import REPO, copy_workflow, snakemake

MODEL = "tiny-evolcoder-k0"  # the rounds ablation's k = 0 model: seed only, no evolution round to run
TARGET = f"results/train/{MODEL}/model"
CONFIGS = ("tests/configs/tiny.yaml", "multinode.yaml")


def _multi_partition() -> str | None:
    """None when both nodes of partition `multi` are up, else why not."""
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-N", "-p", "multi", "-o", "%N %T"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo: {exc}"
    nodes = [ln.split() for ln in out.stdout.splitlines() if ln.strip()]
    up = [n for n, st in nodes if re.match(r"idle|mixed|alloc", st)]
    if len(up) < 2:
        return f"partition multi has {len(up)} usable node(s) ({out.stdout.strip() or out.stderr.strip()[:100]})"
    return None


@pytest.fixture(scope="module")
def two_nodes():
    why = _multi_partition()
    if why:
        pytest.skip(
            f"no two-node SLURM cluster: {why} (EVOLCODER_SLURM_NODES=2 bash scripts/slurm/setup_cluster.sh, as root)"
        )


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, **extra)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    paths = [str(REPO / "src"), str(REPO / "tests")]  # tests/: the fault-injection callback
    env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["OMP_NUM_THREADS"] = "1"
    return env


def _slurm_snakemake(wd: Path, env: dict[str, str], *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "snakemake", "--profile", "profiles/slurm", "--retries", "0"]
    cmd += ["--slurm-init-seconds-before-status-checks", "2", "--set-resources", "train:slurm_partition=multi"]
    cmd += [*extra, "--configfile", *CONFIGS, "data.yaml", "--", TARGET]
    out = open(wd / f"snakemake-{time.time():.0f}.log", "w+")  # noqa: SIM115 - read back by _finish
    proc = subprocess.Popen(cmd, cwd=wd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    proc.output = out  # type: ignore[attr-defined]
    return proc


def _finish(proc: subprocess.Popen, timeout: float) -> tuple[int | None, str]:
    """Snakemake's exit status (None: stopped here, after `timeout` s) and its output."""
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        proc.wait(timeout=60)
        rc = None
    proc.output.seek(0)  # type: ignore[attr-defined]
    return rc, proc.output.read()  # type: ignore[attr-defined]


def _sacct_train(since: str, wd: Path, wait_s: float = 30, proc: subprocess.Popen | None = None) -> dict[str, str]:
    """The train job submitted from `wd` since `since`, once finished (polls sacct up to `wait_s`,
    or until `proc`, the snakemake that submits it, ended without one)."""
    fields = ["JobID", "State", "NodeList", "NNodes", "Partition", "Comment", "WorkDir", "End"]
    out = ""
    for _ in range(int(wait_s)):
        out = subprocess.run(
            ["sacct", "-a", "-X", "-P", "-n", "-S", since, "-o", ",".join(f"{f}%200" for f in fields)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        rows = [dict(zip(fields, ln.split("|"), strict=False)) for ln in out.splitlines() if ln.strip()]
        rows = [r for r in rows if "rule_train" in r["Comment"] and Path(r["WorkDir"]).resolve() == wd.resolve()]
        if rows and rows[-1]["State"] not in ("PENDING", "RUNNING", "") and rows[-1]["End"] != "Unknown":
            return rows[-1]
        if proc is not None and proc.poll() is not None and not rows:
            rc, text = _finish(proc, 0)
            raise AssertionError(f"snakemake ended ({rc}) without a train job:\n{text[-5000:]}")
        time.sleep(1)
    raise AssertionError(f"no finished train job in sacct since {since}: {out}")


def _losses(history: Path) -> list[float]:
    return [h["loss"] for h in json.loads(history.read_text()) if "loss" in h]


def test_paper_config_on_two_nodes_asks_slurm_for_both(tmp_path, shared_data):
    """`train.resources.nodes: 2` over config/paper.yaml: the train job's resources, and the sbatch line
    that snakemake-executor-plugin-slurm makes of them."""
    from types import SimpleNamespace

    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    wd = copy_workflow(tmp_path / "wf", shared_data)
    (wd / "nodes.yaml").write_text(
        "train:\n  resources: {gpus: 8, gpu_model: a100, cpus_per_gpu: 8, mem_mb: 480000, runtime: 2880, nodes: 2}\n"
    )
    proc = snakemake(
        wd, "-n", "results/train/wizardcoder-15b-repro/model", configfiles=("config/paper.yaml", "nodes.yaml")
    )
    text = proc.stdout + proc.stderr
    block = text[text.index("rule train:") :]
    line = next(ln for ln in block.splitlines() if ln.strip().startswith("resources:"))
    res = dict(kv.split("=", 1) for kv in line.split(":", 1)[1].strip().split(", "))
    want = {"nodes": "2", "tasks": "2", "mpi": "srun", "gres": "gpu:a100:8", "cpus_per_task": "64", "mem_mb": "480000"}
    assert {k: res.get(k) for k in want} == want, line

    class Resources(dict):
        __getattr__ = dict.__getitem__

    typed = Resources({k: int(v) if v.isdigit() else v for k, v in res.items() if "<TBD>" not in v})
    job = SimpleNamespace(resources=typed, threads=2)
    params = dict(
        run_uuid="u", slurm_logfile="l", comment_str="rule_train", account="", partition="-p gpu", workdir="w"
    )
    sbatch = get_submit_command(job, params) + set_gres_string(job)
    for flag in ("--nodes=2", "--ntasks=2", "--cpus-per-task=64", "--mem 480000", "--gres=gpu:a100:8"):
        assert flag in sbatch, sbatch
    assert "--gpus" not in sbatch and "--ntasks-per-gpu" not in sbatch, sbatch


@pytest.mark.slurm
@pytest.mark.slow
def test_train_on_two_nodes(two_nodes, tmp_path, shared_data):
    wd = copy_workflow(tmp_path / "wf", shared_data)
    # short sequences, one sample per rank and no intermediate checkpoint (1.6 GB each): cheap steps;
    # no warm-up and a large learning rate, so that step 2's loss shows step 1's all-reduced update
    (wd / "multinode.yaml").write_text(
        "train:\n  model_max_length: 64\n  save_steps: 1000\n  global_batch_size: 2\n  micro_batch_size: 1\n"
        "  warmup_steps: 0\n  learning_rate: 0.001\n"
        "  resources: {gpus: 0, nodes: 2, cpus_per_gpu: 1, mem_mb: 3000, runtime: 10}\n"
    )
    env = _env()
    # the inputs of the train job, here (no queue): seed, merge, tokenise
    snakemake(wd, f"results/tokenized/{MODEL}.pt", configfiles=CONFIGS, env=env)

    since = datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
    time.sleep(1)
    run = _slurm_snakemake(wd, env)
    job = _sacct_train(since, wd, wait_s=600, proc=run)
    # the same steps in one node's two processes (torchrun --standalone, gloo), while snakemake
    # notices the job's end (its status checks come further apart the longer a job runs)
    settings = json.loads((wd / TARGET / "training_manifest.json").read_text())["settings"]
    single = tmp_path / "single"
    cmd = ["evolcoder", "train", "--data", "results/merged/rounds_0/train.jsonl"]
    cmd += ["--tokenized", f"results/tokenized/{MODEL}.pt"]
    cmd += ["--out-dir", str(single), "--settings-json", json.dumps(settings)]
    local = subprocess.run(cmd, cwd=wd, env=_env(EVOLCODER_NPROC="2"), capture_output=True, text=True, timeout=600)
    rc, out = _finish(run, timeout=300)
    log = (wd / f"logs/train/{MODEL}.log").read_text() if (wd / f"logs/train/{MODEL}.log").exists() else ""
    assert rc == 0, f"{out[-5000:]}\n--- train log\n{log[-5000:]}"
    assert local.returncode == 0, local.stderr[-4000:]
    # one job on both nodes of partition multi, one rank each
    assert job["State"] == "COMPLETED" and job["Partition"] == "multi" and job["NNodes"] == "2", job
    assert job["NodeList"] == "evnode[1-2]", job
    assert "evolcoder.launch: 2 nodes x 1 process(es)" in log, log[-3000:]
    manifest = json.loads((wd / TARGET / "training_manifest.json").read_text())
    assert manifest["hyperparameters"]["world_size"] == 2, manifest["hyperparameters"]
    assert manifest["nodes"] == 2 and manifest["hosts"] == ["evnode1", "evnode2"], manifest.get("hosts")
    two_node = _losses(wd / f"results/train/{MODEL}/log_history.json")
    assert len(two_node) == 2 and abs(two_node[1] - two_node[0]) > 1e-3, two_node  # step 1 changed the model

    one_node = _losses(single / "log_history.json")
    diff = max(abs(a - b) for a, b in zip(two_node, one_node, strict=True))
    print(f"losses: two nodes {two_node}, one node {one_node}, max difference {diff:.3g}")
    assert len(one_node) == len(two_node) and diff <= 1e-4 * max(1.0, abs(one_node[0])), (two_node, one_node)

    # a rank killed on evnode2 ends the whole job soon, with one line naming the node and the rank
    stamp = tmp_path / "killed"
    fault = {
        "EVOLCODER_TRAIN_CALLBACKS": "train_faults:kill_after_step",
        "EVOLCODER_TEST_KILL_AFTER_STEP": "1",
        "EVOLCODER_TEST_KILL_HOST": "evnode2",
        "EVOLCODER_TEST_KILL_STAMP": str(stamp),
    }
    since = datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
    time.sleep(1)
    failing = _slurm_snakemake(wd, _env(**fault), "--forcerun", "train")
    job = _sacct_train(since, wd, wait_s=600, proc=failing)
    # the job's end is what counts; snakemake may take a while to poll it: not waited for long
    rc, out = _finish(failing, timeout=20)
    assert rc != 0, out[-3000:]
    killed_at, host, _, rank = stamp.read_text().split()
    ended = datetime.strptime(job["End"], "%Y-%m-%dT%H:%M:%S").timestamp()
    print(
        f"rank {rank} on {host} killed; SLURM job {job['JobID']} {job['State']} {ended - float(killed_at):.1f} s later"
    )
    assert job["State"] in ("FAILED", "CANCELLED", "NODE_FAIL") or job["State"].startswith("CANCELLED"), job
    assert ended - float(killed_at) <= 60, (job, killed_at)
    log = (wd / f"logs/train/{MODEL}.log").read_text()
    want = f"failed: rank {rank} (local rank 0) on node evnode2 failed (killed by SIGKILL)"
    assert want in log, log[-4000:]
