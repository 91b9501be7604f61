"""Small I/O helpers shared by every stage: JSONL, atomic writes, hashes, manifests."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from evolcoder.errors import DataError


def cache_dir() -> Path:
    """evolcoder's cache (exported models, reference timings): ``$EVOLCODER_CACHE``, else ~/.cache/evolcoder."""
    return Path(os.environ.get("EVOLCODER_CACHE", Path.home() / ".cache" / "evolcoder"))


def slug(text: str) -> str:
    """``text`` as a file name: each run of characters outside ``[A-Za-z0-9_.-]`` becomes one ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def _open_text(path: Path, mode: str = "rt"):
    if str(path).endswith(".gz"):
        return gzip.open(path, mode, encoding="utf-8")
    return open(path, mode, encoding="utf-8")


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSONL file (optionally .gz). Raises DataError naming the file and line."""
    return list(iter_jsonl(path))


def iter_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    # bytes decoded line by line: a non-UTF-8 byte is reported with its own line number
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as fh:
        lines = iter(fh)
        lineno = 0
        while True:
            try:
                raw = next(lines)
            except StopIteration:
                return
            except (OSError, EOFError) as exc:  # a corrupt or truncated .gz
                raise DataError(f"{path}:{lineno + 1}: unreadable ({exc})") from None
            lineno += 1
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"{path}:{lineno}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column "
                    f"{exc.start + 1}); re-encode the file as UTF-8"
                ) from None
            if not line.strip():
                continue
            yield json_object(line, f"{path}:{lineno}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the same folder; rename it over ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> int:
    """Write records atomically; returns the number written."""
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    return n


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2, ensure_ascii=False, sort_keys=False, default=str)
        fh.write("\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    try:
        with _open_text(path) as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_tree(path: str | os.PathLike) -> str:
    """Hash of a file, or of a directory's files (names and contents, sorted)."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(sha256_file(f).encode())
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def git_revision(cwd: str | os.PathLike | None = None) -> str | None:
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if rev.returncode != 0:
        return None
    return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


_VERSIONED = (
    "evolcoder",
    "torch",
    "transformers",
    "deepspeed",
    "peft",
    "accelerate",
    "datasets",
    "openai",
    "evalplus",
    "snakemake",
    "numpy",
)


def package_versions(names: Iterable[str] = _VERSIONED) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def container_info() -> dict[str, str | None]:
    """The image this process runs in: its name (``EVOLCODER_CONTAINER``, set by the image, or Apptainer's
    ``APPTAINER_NAME``/``SINGULARITY_NAME``), its family (``EVOLCODER_IMAGE_FAMILY``, set by the image) and
    its digest: ``EVOLCODER_IMAGE_DIGEST``, else the ``@sha256:`` of the family's entry in
    ``EVOLCODER_IMAGES`` (the config's ``containers:``, exported by the workflow). An image cannot know
    its own digest, so this is the digest the run was pinned to."""
    image = (
        os.environ.get("EVOLCODER_CONTAINER") or os.environ.get("APPTAINER_NAME") or os.environ.get("SINGULARITY_NAME")
    )
    family = os.environ.get("EVOLCODER_IMAGE_FAMILY")
    digest = os.environ.get("EVOLCODER_IMAGE_DIGEST")
    if not digest and family:
        try:
            refs = json.loads(os.environ.get("EVOLCODER_IMAGES") or "{}")
        except json.JSONDecodeError:
            refs = {}
        ref = str(refs.get(family, "")) if isinstance(refs, dict) else ""
        if "@sha256:" in ref:
            digest = "sha256:" + ref.split("@sha256:", 1)[1]
    return {"image": image, "family": family, "digest": digest}


def write_manifest(
    path: str | os.PathLike,
    *,
    stage: str,
    inputs: dict[str, str | os.PathLike] | None = None,
    settings: Any = None,
    extra: dict | None = None,
) -> dict:
    """Write a provenance manifest next to a stage's output.

    Records input hashes, the config slice, package versions, git revision and container image
    (``EVOLCODER_CONTAINER`` or ``SINGULARITY_NAME``/``APPTAINER_NAME`` when set).
    """
    manifest = {
        "stage": stage,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "inputs": {
            k: {"path": str(v), "sha256": sha256_tree(v)} for k, v in (inputs or {}).items() if v and Path(v).exists()
        },
        "settings": settings,
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git_revision": git_revision(Path(__file__).parent),
        "container": container_info()["image"],
        "container_digest": container_info()["digest"],
    }
    if extra:
        manifest.update(extra)
    write_json(path, manifest)
    return manifest


def parse_json_option(value: str | None, name: str) -> dict:
    """Parse a ``--settings-json`` style option; a JSON file path is accepted too."""
    if not value:
        return {}
    text = value
    if not value.lstrip().startswith("{") and Path(value).exists():
        text = Path(value).read_text(encoding="utf-8")
    return json_object(text, f"--{name}")


def json_object(text: str, where: str) -> dict:
    """``text`` parsed as a JSON object; a DataError naming ``where`` (a file and line, an option) otherwise."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    return obj


class Progress:
    """One log line per step of a long stage: items done, items/s, tokens/s (when counted) and ETA."""

    def __init__(self, what: str, total: int, verb: str = "done", logger: logging.Logger | None = None):
        self.what, self.total, self.verb = what, total, verb
        self.log = logger or logging.getLogger("evolcoder")
        self.done = 0
        self.t0 = time.monotonic()

    def update(self, n: int, tokens: int | None = None) -> str:
        self.done += n
        dt = max(time.monotonic() - self.t0, 1e-9)
        eta = (self.total - self.done) * dt / self.done if self.done else 0.0
        line = f"{self.what}: {self.done}/{self.total} {self.verb} in {dt:.0f} s, {self.done / dt:.2f} items/s"
        if tokens is not None:
            line += f", {tokens / dt:.1f} tokens/s"
        line += f", ETA {eta:.0f} s"
        self.log.info("%s", line)
        return line
