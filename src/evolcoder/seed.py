"""Seed stage: load a seed instruction set and normalise it to instruction records (round 0).

Sources: a Code Alpaca style JSON list ``[{instruction, input, output}]``, a JSONL file of such objects,
``hf:<dataset>[:<split>]`` (the ``datasets`` library; e.g. ``hf:sahil280114/codealpaca:train``), or
``builtin`` (32 code instructions shipped with evolcoder).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from importlib import resources
from pathlib import Path

import click

from evolcoder.errors import DataError
from evolcoder.io import iter_jsonl, write_jsonl, write_manifest

log = logging.getLogger(__name__)

REQUIRED = ("instruction", "output")
# common alternative field names in public instruction sets
ALIASES = {"instruction": ("prompt", "question"), "output": ("response", "completion", "answer")}


def seed_id(instruction: str, input_: str) -> str:
    digest = hashlib.sha1(f"{instruction}\0{input_}".encode()).hexdigest()[:12]
    return f"seed-{digest}"


def normalise(item: dict, where: str) -> dict:
    """One raw item -> an instruction record; raises DataError naming the item and field."""
    if not isinstance(item, dict):
        raise DataError(f"{where}: expected an object with instruction/input/output, got {type(item).__name__}")
    if item.get("messages") is not None:
        return _conversation_record(item, where)
    rec = {}
    for field in REQUIRED:
        value = item.get(field)
        if value is None:
            value = next((item[a] for a in ALIASES[field] if item.get(a) is not None), None)
        if value is None:
            raise DataError(f"{where}: missing field '{field}'")
        if not isinstance(value, str):
            raise DataError(f"{where}: field '{field}' must be a string, got {type(value).__name__}")
        rec[field] = value.strip()
    input_ = item.get("input") or ""
    if not isinstance(input_, str):
        raise DataError(f"{where}: field 'input' must be a string, got {type(input_).__name__}")
    if not rec["instruction"]:
        raise DataError(f"{where}: field 'instruction' is empty")
    input_ = input_.strip()
    return seed_record(seed_id(rec["instruction"], input_), rec["instruction"], input_, rec["output"])


def _conversation_record(item: dict, where: str) -> dict:
    """A multi-turn item ``{messages: [{role, content}, ...]}``: kept whole for chat training (every assistant
    turn trained); its first user turn is the instruction evolution rewrites, its last answer the output."""
    from evolcoder.chat import record_messages

    msgs = record_messages(item, None, where)
    users = [m["content"].strip() for m in msgs if m["role"] == "user"]
    if not users or not users[0]:
        raise DataError(f"{where}: 'messages' has no user turn")
    answer = next(m["content"] for m in reversed(msgs) if m["role"] == "assistant")
    sid = seed_id(json.dumps(msgs, sort_keys=True), "")
    return {**seed_record(sid, users[0], "", answer.strip()), "messages": msgs}


def seed_record(sid: str, instruction: str, input_: str, output: str) -> dict:
    """The instruction record of a seed item (round 0, its own root)."""
    return {
        "id": sid,
        "parent_id": None,
        "root_id": sid,
        "round": 0,
        "method": "seed",
        "instruction": instruction,
        "input": input_,
        "output": output,
    }


def _load_json_list(path: Path) -> list:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"seed file {path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except UnicodeDecodeError:
        raise DataError(f"seed file {path}: not UTF-8 text") from None
    if isinstance(data, dict):
        for key in ("data", "train", "items"):
            if isinstance(data.get(key), list):
                return data[key]
        raise DataError(f"seed file {path}: expected a JSON list of instruction objects")
    if not isinstance(data, list):
        raise DataError(f"seed file {path}: expected a JSON list of instruction objects")
    return data


def load_raw(source: str, fallback_builtin: bool = False) -> tuple[list[dict], str]:
    """Return (raw items, resolved source description)."""
    if source == "builtin":
        text = resources.files("evolcoder").joinpath("data/builtin_seed.json").read_text(encoding="utf-8")
        return json.loads(text), "builtin"
    if source.startswith("hf:"):
        name, _, split = source[3:].partition(":")
        try:
            import datasets
        except ImportError as exc:  # pragma: no cover - datasets is a train extra
            raise DataError(f"seed source {source}: the 'datasets' package is needed ({exc})") from None
        try:
            ds = datasets.load_dataset(name, split=split or "train")
        except Exception as exc:  # network, missing dataset, …
            raise DataError(
                f"seed source {source}: cannot load ({type(exc).__name__}: {str(exc).splitlines()[0]})"
            ) from None
        return [dict(row) for row in ds], source
    path = Path(source)
    if not path.exists():
        if fallback_builtin:
            log.warning("seed file %s not found: using the builtin seed", path)
            return load_raw("builtin")
        raise DataError(f"seed file {path}: file not found")
    if path.suffix in (".jsonl", ".gz") or path.name.endswith(".jsonl.gz"):
        try:
            return list(iter_jsonl(path)), str(path)
        except DataError as exc:
            raise DataError(f"seed {exc}") from None
    return _load_json_list(path), str(path)


def build_seed(
    source: str, limit: int | None = None, sample_seed: int = 42, fallback_builtin: bool = False
) -> tuple[list[dict], dict]:
    raw, resolved = load_raw(source, fallback_builtin)
    records, seen, dups = [], set(), 0
    for i, item in enumerate(raw):
        rec = normalise(item, f"seed {resolved}, item {i}")
        if rec["id"] in seen:
            dups += 1
            continue
        seen.add(rec["id"])
        records.append(rec)
    if not records:
        raise DataError(f"seed {resolved}: no instruction records")
    if limit is not None and limit < len(records):
        keep = sorted(random.Random(sample_seed).sample(range(len(records)), limit))
        records = [records[i] for i in keep]
    stats = {"source": resolved, "raw_items": len(raw), "duplicates_dropped": dups, "records": len(records)}
    return records, stats


@click.command(
    help="Load a seed set (JSON list, JSONL, hf:<dataset>[:split] or 'builtin') and write "
    "normalised instruction records with stable ids."
)
@click.option("--source", required=True, help="Seed file, hf:<dataset>[:split], or 'builtin'.")
@click.option("--limit", type=int, default=None, help="Keep a seeded random subset of this size.")
@click.option("--sample-seed", type=int, default=42, show_default=True)
@click.option("--fallback-builtin", is_flag=True, help="Use the builtin seed if --source is a missing file.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output JSONL.")
def cli(source: str, limit: int | None, sample_seed: int, fallback_builtin: bool, out: str) -> None:
    records, stats = build_seed(source, limit, sample_seed, fallback_builtin)
    write_jsonl(out, records)
    inputs = {"source": stats["source"]} if Path(stats["source"]).exists() else {}
    write_manifest(
        Path(out).with_name("manifest.json"),
        stage="seed",
        inputs=inputs,
        settings={"source": source, "limit": limit, "sample_seed": sample_seed},
        extra={"stats": stats},
    )
    click.echo(f"seed: {stats['records']} records from {stats['source']} -> {out}")
