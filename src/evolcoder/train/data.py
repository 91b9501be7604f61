"""Training data: WizardCoder/Alpaca prompt rendering, tokenisation with prompt masking, the cache
file, and the two batching modes (padding, and padding-free packing).

Rendering and label construction are pure functions; torch is imported only where tensors are made.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

from evolcoder.errors import DataError
from evolcoder.io import atomic_path
from evolcoder.models import encode_prompts

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
CACHE_FORMAT = 1


def render_prompt(record: dict, template: dict[str, str]) -> str:
    """The source text of a record: the with-input variant when ``input`` is non-empty."""
    inp = record.get("input") or ""
    key = "prompt_input" if inp.strip() else "prompt_no_input"
    # str.replace, not str.format: instructions contain braces (code)
    return template[key].replace("{instruction}", record["instruction"]).replace("{input}", inp)


def check_record(record: dict, where: str) -> None:
    for key in ("instruction", "output"):
        if not isinstance(record.get(key), str):
            raise DataError(f"{where}: record has no string {key!r}")
    if not record["instruction"].strip():
        raise DataError(f"{where}: empty instruction")
    if record.get("input") is not None and not isinstance(record["input"], str):
        raise DataError(f"{where}: 'input' must be a string")


def build_example(
    prompt_ids: Sequence[int], target_ids: Sequence[int], eos_id: int, max_length: int
) -> tuple[list[int], list[int]]:
    """input_ids = prompt + target + EOS, truncated to max_length; labels mask the prompt with -100.

    Same as WizardCoder's ``preprocess`` (source and source+target tokenised, first len(source)
    labels ignored, truncation to model_max_length), except that the prompt and target are
    tokenised separately and concatenated so the mask boundary is exact.
    """
    ids = [*prompt_ids, *target_ids, eos_id][:max_length]
    n_prompt = min(len(prompt_ids), len(ids))
    labels = [IGNORE_INDEX] * n_prompt + ids[n_prompt:]
    return ids, labels


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Hash of what the tokenizer does: its serialised model + special tokens."""
    h = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
    if backend is not None and hasattr(backend, "to_str"):
        h.update(backend.to_str().encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    h.update(json.dumps([str(tokenizer.eos_token), str(tokenizer.bos_token), str(tokenizer.pad_token)]).encode())
    return h.hexdigest()[:16]


@dataclass
class Tokenized:
    """Flat storage: sample i is input_ids[offsets[i]:offsets[i+1]], its first prompt_lens[i] labels are -100.
    With ``label_mask`` (chat templates, evolcoder.chat: several assistant turns), a token is trained
    exactly where its mask is 1."""

    input_ids: list[int]
    offsets: list[int]
    prompt_lens: list[int]
    meta: dict
    label_mask: list[int] | None = None

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def example(self, i: int) -> tuple[list[int], list[int]]:
        ids = self.input_ids[self.offsets[i] : self.offsets[i + 1]]
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        if self.label_mask is not None:
            mask = self.label_mask[self.offsets[i] : self.offsets[i + 1]]
            return ids, [t if m else IGNORE_INDEX for t, m in zip(ids, mask, strict=True)]
        n = self.prompt_lens[i]
        return ids, [IGNORE_INDEX] * n + ids[n:]

    def lengths(self) -> list[int]:
        return [b - a for a, b in pairwise(self.offsets)]


def tokenize_records(
    records: Iterable[dict],
    tokenizer: Any,
    template: dict[str, str],
    max_length: int,
    batch_size: int = 512,
    source: str = "data",
) -> tuple[Tokenized, dict]:
    """Tokenise instruction records. Records whose prompt fills the whole window (no target token
    left after truncation) are dropped and counted: they would contribute no loss."""
    if tokenizer.eos_token_id is None:
        raise DataError("the base model's tokenizer has no EOS token")
    eos = tokenizer.eos_token_id
    ids_flat: list[int] = []
    offsets = [0]
    prompt_lens: list[int] = []
    stats = {"records": 0, "with_input": 0, "truncated": 0, "dropped_no_target": 0, "tokens": 0, "target_tokens": 0}
    buf: list[dict] = []

    def flush() -> None:
        prompts = [render_prompt(r, template) for r in buf]
        targets = [r["output"] for r in buf]
        p_ids = encode_prompts(tokenizer, prompts)
        t_ids = tokenizer(targets, add_special_tokens=False)["input_ids"]
        for p, t in zip(p_ids, t_ids, strict=True):
            full = len(p) + len(t) + 1
            ids, _labels = build_example(p, t, eos, max_length)
            n_target = len(ids) - min(len(p), len(ids))
            if full > max_length:
                stats["truncated"] += 1
            if n_target == 0:
                stats["dropped_no_target"] += 1
                continue
            ids_flat.extend(ids)
            offsets.append(len(ids_flat))
            prompt_lens.append(min(len(p), len(ids)))
            stats["target_tokens"] += n_target
        buf.clear()

    for i, rec in enumerate(records):
        check_record(rec, f"{source}: record {i + 1}")
        stats["records"] += 1
        stats["with_input"] += bool((rec.get("input") or "").strip())
        buf.append(rec)
        if len(buf) >= batch_size:
            flush()
    if buf:
        flush()
    stats["tokens"] = len(ids_flat)
    stats["examples"] = len(prompt_lens)
    if not prompt_lens:
        raise DataError(
            f"{source}: no training example left after tokenisation (empty, or every prompt is "
            f"longer than model_max_length={max_length})"
        )
    return Tokenized(ids_flat, offsets, prompt_lens, meta={}), stats


def save_tokenized(tok: Tokenized, path: str | os.PathLike) -> None:
    """One ``.pt`` file: int32 token tensor + offsets + prompt lengths + meta (loads with weights_only)."""
    import torch

    obj = {
        "format": CACHE_FORMAT,
        "meta": json.dumps(tok.meta),
        "input_ids": torch.tensor(tok.input_ids, dtype=torch.int32),
        "offsets": torch.tensor(tok.offsets, dtype=torch.int64),
        "prompt_lens": torch.tensor(tok.prompt_lens, dtype=torch.int32),
    }
    if tok.label_mask is not None:
        obj["label_mask"] = torch.tensor(tok.label_mask, dtype=torch.int8)
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_tokenized(path: str | os.PathLike) -> Tokenized:
    import torch

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: tokenised data not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"{path}: not a tokenised-data file ({type(exc).__name__})") from None
    if not isinstance(obj, dict) or obj.get("format") != CACHE_FORMAT:
        raise DataError(f"{path}: not a tokenised-data file of format {CACHE_FORMAT} (re-run evolcoder tokenize)")
    # tokens stay one int32 tensor (a python list would cost ~30x the memory on the full dataset)
    mask = obj.get("label_mask")
    return Tokenized(
        obj["input_ids"],
        obj["offsets"].tolist(),
        obj["prompt_lens"].tolist(),
        json.loads(obj["meta"]),
        label_mask=None if mask is None else mask.tolist(),
    )


class TrainDataset:
    """Map-style dataset of {input_ids, labels} lists (torch's DataLoader accepts any __getitem__/__len__)."""

    def __init__(self, tok: Tokenized):
        self.tok = tok

    def __len__(self) -> int:
        return len(self.tok)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        ids, labels = self.tok.example(i)
        return {"input_ids": ids, "labels": labels}


class PaddingCollator:
    """Right-pad to the longest sample of the micro-batch (optionally to a multiple of N)."""

    def __init__(self, pad_id: int, pad_to_multiple_of: int | None = None):
        self.pad_id = pad_id
        self.multiple = pad_to_multiple_of

    def __call__(self, features: list[dict]) -> dict:
        import torch

        n = max(len(f["input_ids"]) for f in features)
        if self.multiple:
            n = -(-n // self.multiple) * self.multiple
        ids = torch.full((len(features), n), self.pad_id, dtype=torch.long)
        labels = torch.full((len(features), n), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(features), n), dtype=torch.long)
        for i, f in enumerate(features):
            k = len(f["input_ids"])
            ids[i, :k] = torch.tensor(f["input_ids"])
            labels[i, :k] = torch.tensor(f["labels"])
            mask[i, :k] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def packing_collator(flash_attn_kwargs: bool = False) -> Any:
    """transformers' padding-free collator: the micro-batch becomes one row, position ids restart at 0
    for every sample, no attention mask; transformers derives a block-diagonal causal mask from the
    position ids (sdpa/eager) or uses varlen kernels (flash-attention), so samples never attend to
    each other. The first label of every sample is set to -100 (it would be predicted across the
    boundary); ours is a prompt token, already -100."""
    from transformers import DataCollatorWithFlattening

    return DataCollatorWithFlattening(
        return_position_ids=True, separator_id=IGNORE_INDEX, return_flash_attn_kwargs=flash_attn_kwargs
    )
