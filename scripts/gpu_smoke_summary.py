"""The last screen of scripts/gpu_smoke.sh, from what its stages left in the work directory.

    python scripts/gpu_smoke_summary.py WORK

Reads WORK/gpus.txt (nvidia-smi -L), WORK/stages.tsv (name, pass|fail|skip, seconds, log), WORK/runs/zero2|zero3/
(training_manifest.json, log_history.json), WORK/runs/vllm|hf/*.manifest.json (generation manifests) and
WORK/gpumem.csv (nvidia-smi samples: index, MiB used). Standard library only.

MFU = 6 x parameters x training tokens/s per GPU / the GPU's peak dense bf16/fp16 tensor FLOP/s (the table below;
attention FLOPs and recomputation under gradient checkpointing are left out, so it is a lower bound of the work
done and an estimate only).
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

# peak dense bf16/fp16 tensor-core FLOP/s per GPU (vendor data sheets, no sparsity); matched on the nvidia-smi name
PEAK_FLOPS = [
    ("GB200", 2.5e15),
    ("B200", 2.25e15),
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),
    ("H800", 989e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("L4", 121e12),
    ("A6000", 155e12),
    ("A40", 150e12),
    ("A10G", 70e12),
    ("A10", 125e12),
    ("RTX 4090", 165e12),
    ("V100", 125e12),
    ("T4", 65e12),
]


def peak_flops(gpu_name: str) -> float | None:
    for key, flops in PEAK_FLOPS:
        if key.lower() in gpu_name.lower():
            return flops
    return None


def gpus(work: Path) -> list[str]:
    """GPU names from ``nvidia-smi -L`` lines (``GPU 0: NVIDIA H100 80GB HBM3 (UUID: ...)``)."""
    path = work / "gpus.txt"
    lines = path.read_text().splitlines() if path.exists() else []
    return [line.split(":", 1)[1].split("(UUID")[0].strip() for line in lines if line.startswith("GPU ")]


def safetensors_params(model_dir: Path) -> int | None:
    """Parameter count from the safetensors headers (no torch)."""
    total, found = 0, False
    for f in sorted(model_dir.glob("*.safetensors")):
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        for name, meta in header.items():
            if name != "__metadata__":
                count = 1
                for d in meta["shape"]:
                    count *= d
                total += count
                found = True
    return total if found else None


def training(run: Path, n_gpus: int, params: int | None, flops: float | None) -> str:
    manifest = run / "training_manifest.json"
    if not manifest.exists():
        return "not run"
    m = json.loads(manifest.read_text())
    tps = m.get("tokens_per_s_mean")  # all ranks together (evolcoder.train.run)
    if not tps:
        return f"{m.get('steps_done')} steps, no throughput logged"
    per_gpu = tps / max(n_gpus, 1)
    mfu = f"{100 * 6 * params * per_gpu / flops:.1f}%" if params and flops else "n/a (GPU not in the peak table)"
    prec = (m.get("settings") or {}).get("precision", "?")
    return (
        f"{per_gpu:,.0f} tokens/s per GPU ({tps:,.0f} total, {prec}), MFU ~{mfu}, "
        f"{m.get('steps_done')} steps, final loss {m.get('final_loss')}, peak {m.get('peak_mem_mb')} MB (torch)"
    )


def generation(run: Path) -> str:
    manifests = sorted(run.glob("*.manifest.json"))
    if not manifests:
        return "not run"
    tokens = seconds = completions = 0.0
    dtypes = set()
    for p in manifests:
        m = json.loads(p.read_text())
        g = m.get("generation") or {}
        tokens += g.get("tokens") or 0
        seconds += g.get("seconds") or 0
        completions += g.get("completions") or 0
        dtypes.add(str(m.get("dtype")))
    rate = f"{tokens / seconds:,.0f} tokens/s" if tokens and seconds else "no throughput recorded"
    return (
        f"{rate} ({int(tokens)} tokens, {int(completions)} completions, {seconds:.1f} s, {', '.join(sorted(dtypes))})"
    )


def peak_memory(work: Path) -> str:
    path = work / "gpumem.csv"
    peak: dict[str, int] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            parts = [p.strip() for p in line.split(",")]
            if len(parts) == 2 and parts[1].isdigit():
                peak[parts[0]] = max(peak.get(parts[0], 0), int(parts[1]))
    return ", ".join(f"GPU {k}: {v:,} MiB" for k, v in sorted(peak.items())) or "not sampled"


def summary(work: Path) -> str:
    names = gpus(work)
    model = names[0] if names else "?"
    flops = peak_flops(model)
    model_dir = work / "results" / "train" / "smoke-smollm2" / "model"
    params = safetensors_params(model_dir) if model_dir.is_dir() else None
    rows = []
    stages = work / "stages.tsv"
    for line in stages.read_text().splitlines() if stages.exists() else []:
        name, status, secs, note = ([*line.split("\t"), "", "", ""])[:4]
        rows.append(f"  {status.upper():5} {name:<42} {secs:>4} s  {note}")
    out = [
        "=" * 100,
        f"GPU smoke: {len(names)} x {model}" + (f" (peak {flops / 1e12:.0f} TFLOP/s bf16/fp16)" if flops else ""),
        f"model: SmolLM2-135M, {params:,} parameters" if params else "model: SmolLM2-135M",
        f"train ZeRO-2: {training(work / 'runs' / 'zero2', len(names), params, flops)}",
        f"train ZeRO-3: {training(work / 'runs' / 'zero3', len(names), params, flops)}",
        f"generate vLLM: {generation(work / 'runs' / 'vllm')}",
        f"generate HF:   {generation(work / 'runs' / 'hf')}",
        f"peak GPU memory (nvidia-smi): {peak_memory(work)}",
        "stages:",
        *rows,
        "=" * 100,
    ]
    return "\n".join(out)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: gpu_smoke_summary.py WORK")
    print(summary(Path(sys.argv[1])))
