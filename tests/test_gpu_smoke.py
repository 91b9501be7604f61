"""The GPU smoke (scripts/gpu_smoke.sh, tests/configs/gpu-smoke.yaml): where there is no CUDA device it stops at
once with one line; its config plans every stage; its last screen is computed from what the stages leave. The run
itself needs a GPU node: `pytest -m gpu` there (it skips with one line elsewhere)."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workflow_utils import REPO, copy_workflow, planned_jobs

sys.path.insert(0, str(REPO / "scripts"))
import gpu_smoke_summary

SCRIPT = REPO / "scripts" / "gpu_smoke.sh"


def _cuda() -> str | None:
    """Why there is no CUDA device here, or None when there is one."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", "unset") in ("", "-1"):
        return "CUDA_VISIBLE_DEVICES hides every GPU"
    if not shutil.which("nvidia-smi"):
        return "nvidia-smi not found"
    import torch

    return None if torch.cuda.is_available() else "torch sees no CUDA device"


NO_CUDA = _cuda()


@pytest.mark.parametrize("hide", [False, True], ids=["as-is", "CUDA_VISIBLE_DEVICES="])
def test_without_cuda_the_smoke_stops_at_once_with_one_line(tmp_path, hide):
    if not hide and NO_CUDA is None:
        pytest.skip("this machine has a CUDA device")
    env = dict(os.environ, **({"CUDA_VISIBLE_DEVICES": ""} if hide else {}))
    t0 = time.monotonic()
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--workdir", str(tmp_path / "w")], capture_output=True, text=True, env=env, timeout=60
    )
    lines = (proc.stdout + proc.stderr).splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("no CUDA device: "), lines
    assert time.monotonic() - t0 < 10 and not (tmp_path / "w").exists()  # nothing started, nothing written


def test_the_smoke_config_plans_every_stage(tmp_path):
    wd = copy_workflow(tmp_path, None)
    jobs = planned_jobs(wd, configfiles=("tests/configs/gpu-smoke.yaml",))
    stages = {"seed", "evolve_round", "evolution_stats_plot", "merge", "tokenize", "train", "training_plot"}
    stages |= {"generate", "gather", "timings", "score", "table"}
    assert stages <= set(jobs), sorted(stages - set(jobs))
    assert jobs["generate"] == 2 and jobs["train"] == 1  # the fine-tune and the untuned base


def _safetensors(path: Path, shapes: dict[str, list[int]]) -> None:
    header = {name: {"dtype": "F32", "shape": shape, "data_offsets": [0, 0]} for name, shape in shapes.items()}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)


def test_the_last_screen_from_a_finished_run(tmp_path):
    w = tmp_path
    (w / "gpus.txt").write_text(
        "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1)\nGPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-2)\n"
    )
    (w / "stages.tsv").write_text("model\tpass\t3\tm.log\ngenerate vLLM\tskip\t0\tvllm not importable here\n")
    model = w / "results/train/smoke-smollm2/model"
    model.mkdir(parents=True)
    _safetensors(model / "model.safetensors", {"a": [1000, 1000], "b": [1000]})  # 1,001,000 parameters
    for run, prec in (("zero2", "bf16"), ("zero3", "bf16")):
        (w / "runs" / run).mkdir(parents=True)
        manifest = {"tokens_per_s_mean": 2000.0, "steps_done": 8, "final_loss": 1.5, "peak_mem_mb": 900.0}
        (w / "runs" / run / "training_manifest.json").write_text(
            json.dumps({**manifest, "settings": {"precision": prec}})
        )
    (w / "runs" / "hf").mkdir()
    gen = {"dtype": "bf16", "generation": {"tokens": 500, "seconds": 2.0, "completions": 16}}
    (w / "runs" / "hf" / "a.manifest.json").write_text(json.dumps(gen))
    (w / "gpumem.csv").write_text("0, 100\n1, 50\n0, 4000\n1, 3000\n")
    screen = gpu_smoke_summary.summary(w)
    assert "2 x NVIDIA H100 80GB HBM3 (peak 989 TFLOP/s" in screen and "1,001,000 parameters" in screen
    mfu = 100 * 6 * 1_001_000 * 1000 / 989e12  # 1000 tokens/s per GPU
    assert f"train ZeRO-2: 1,000 tokens/s per GPU (2,000 total, bf16), MFU ~{mfu:.1f}%" in screen
    assert "generate HF:   250 tokens/s (500 tokens, 16 completions, 2.0 s, bf16)" in screen
    assert "generate vLLM: not run" in screen and "GPU 0: 4,000 MiB, GPU 1: 3,000 MiB" in screen
    assert "  PASS  model" in screen and "  SKIP  generate vLLM" in screen


@pytest.mark.gpu
@pytest.mark.skipif(NO_CUDA is not None, reason=f"no CUDA device: {NO_CUDA} (run on a GPU node: pytest -m gpu)")
def test_gpu_smoke_end_to_end(tmp_path):
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--workdir", str(tmp_path / "smoke")], capture_output=True, text=True, timeout=1200
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "GPU smoke:" in proc.stdout and "  FAIL " not in proc.stdout
