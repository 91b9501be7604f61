"""Crash-safe response cache: append-only JSONL, one line per completed request, fsync'ed.

A completed request is appended (write + fsync) *before* its response is used, so a round killed at
any point and rerun re-sends none of the requests it completed. Lines are keyed by
``request_key(model, messages, params)``. A line torn by a kill mid-write can only be the last one: the
reader ignores it and the writer truncates it away before its first append (under an exclusive
``flock``, so two processes sharing the cache never interleave lines).

The cache lives under ``--cache-dir`` (``results/cache/llm``), which is never a Snakemake output, so
Snakemake's incomplete-output cleanup cannot delete it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from evolcoder.io import slug

log = logging.getLogger(__name__)


def request_key(model: str, messages: list[dict], params: dict) -> str:
    """sha256 of the canonical JSON of (model, messages, parameters)."""
    blob = json.dumps(
        {"model": model, "messages": messages, "params": params},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def model_slug(model: str) -> str:
    """A model name as the stem of its cache files (at most 80 characters)."""
    return slug(model)[-80:] or "model"


def iter_cache_lines(path: str | os.PathLike) -> Iterator[dict]:
    """Complete entries of a cache file; a torn (unterminated or unparsable) last line is skipped."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, "rb") as fh:
        data = fh.read()
    lines = data.split(b"\n")
    # data ending in "\n" -> last element is b""; otherwise the last element is a torn line
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            if i >= len(lines) - 2:  # the torn tail (or the line before a trailing fragment)
                log.warning("%s: ignoring a torn last line (%d bytes)", path, len(raw))
                continue
            log.warning("%s:%d: ignoring an unparsable cache line", path, i + 1)
            continue
        if i == len(lines) - 1:
            # parsed but unterminated: the kill hit before the newline; treat as torn for safety
            log.warning("%s: ignoring an unterminated last line", path)
            continue
        if isinstance(obj, dict) and "key" in obj:
            yield obj


def _slim(entry: dict) -> dict:
    """What a lookup and the budget need in memory (the request text stays on disk)."""
    out = {"key": entry["key"], "response": entry.get("response")}
    if entry.get("batch"):
        out["batch"] = True
    return out


class ResponseCache:
    """Append-only JSONL cache of completed LLM requests, one file per model."""

    def __init__(self, cache_dir: str | os.PathLike, model: str):
        self.dir = Path(cache_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / f"{model_slug(model)}.jsonl"
        self._entries: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._repaired = False
        for obj in iter_cache_lines(self.path):
            # keep only what a lookup needs in memory (the request text stays on disk)
            self._entries.setdefault(obj["key"], _slim(obj))

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def entries(self):
        return self._entries.values()

    def get(self, key: str) -> dict | None:
        return self._entries.get(key)

    @contextlib.contextmanager
    def _locked_fd(self) -> Iterator[int]:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _repair_tail(self, fd: int) -> None:
        """Drop a torn last line (no trailing newline) so the next append starts a fresh line."""
        size = os.fstat(fd).st_size
        if size == 0:
            return
        with open(self.path, "rb") as fh:
            fh.seek(max(0, size - 1))
            if fh.read(1) == b"\n":
                return
            # find the last newline
            pos = size
            chunk = 1 << 16
            while pos > 0:
                start = max(0, pos - chunk)
                fh.seek(start)
                buf = fh.read(pos - start)
                idx = buf.rfind(b"\n")
                if idx >= 0:
                    pos = start + idx + 1
                    break
                pos = start
        log.warning("%s: truncating a torn last line (%d bytes)", self.path, size - pos)
        os.ftruncate(fd, pos)
        os.fsync(fd)

    def append_many(self, entries: Iterable[dict[str, Any]]) -> None:
        """Append entries (each with a ``key``) and fsync once; thread- and process-safe."""
        entries = [e for e in entries if e["key"] not in self._entries]
        if not entries:
            return
        payload = b"".join(json.dumps(e, ensure_ascii=False).encode("utf-8") + b"\n" for e in entries)
        with self._lock, self._locked_fd() as fd:
            if not self._repaired:
                self._repair_tail(fd)
                self._repaired = True
            view = memoryview(payload)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
            for e in entries:
                self._entries.setdefault(e["key"], _slim(e))

    def append(self, entry: dict[str, Any]) -> None:
        self.append_many([entry])
