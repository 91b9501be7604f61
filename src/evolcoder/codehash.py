"""The code a stage runs, derived from its imports: what makes a stage's outputs stale when edited.

A stage is an ``evolcoder <command>``; its code is the command's module (``evolcoder.cli.COMMANDS``)
and, transitively, every ``evolcoder`` module it imports, at module level or inside a function, plus
the package's data files it reads. Found by reading the source (:mod:`ast`), never by importing it,
so the Snakefile can hash the tree a rule will run without torch, evalplus or a container:

- ``import evolcoder.x`` / ``from evolcoder.x import y`` / relative imports (``y`` a submodule or a
  name in ``x``); importing a module imports its parent packages' ``__init__`` too;
- string constants naming a module of the package (``"evolcoder.benchmarks.ds1000:DS1000"`` in a registry,
  ``importlib.import_module(...)`` targets, ``python -m evolcoder.sandbox.worker``), except inside
  :mod:`evolcoder.cli`, the dispatcher, whose table names every stage;
- data files: ``resources.files("evolcoder") / "templates" / "eval"`` or ``.joinpath("data/x.json")``:
  the constant part of the path (a folder: everything under it).

A command module may declare ``CODE_HASH_EXCLUDES``: modules (or packages) it imports through the
benchmark adapters but never runs, e.g. generation and merge never run the scoring harness or the
sandbox. Those are left out of its hash, so editing the scorer does not regenerate or retrain; the
test suite checks each declaration by tracing the command's calls (tests/test_single_source.py).

Standard library only: ``rules/common.smk`` loads this file by path. Every Snakefile parse (a dry run
too) asks for each stage's hash, so :func:`stage_hash` takes a cache keyed on file stats
(:func:`load_cache` / :func:`save_cache`): a stage whose files and data folders all have the stat they
had when it was hashed is not read again.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
from pathlib import Path

PACKAGE = "evolcoder"
DISPATCHER = "evolcoder.cli"
# package data that is not code: the config schema's defaults reach a stage through its config slice
# (a tracked param of the rule), so its prose and other sections do not make a stage stale
NOT_CODE = {"data/config.schema.yaml"}


# "evolcoder.a.b" or "evolcoder.a.b:Attr" (a registry entry)
_MODULE_STRING = re.compile(rf"^({PACKAGE}(?:\.[A-Za-z_][A-Za-z0-9_]*)+)(?::[A-Za-z_][A-Za-z0-9_.]*)?$")


def _module_path(root: Path, module: str) -> Path | None:
    """The file of ``module`` (``evolcoder.a.b``) under ``root`` (the package folder), or None."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = root.joinpath(*parts[1:])
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _resolve_from(module: str, is_package: bool, node: ast.ImportFrom) -> str | None:
    if node.level == 0:
        return node.module
    pkg = module.split(".") if is_package else module.split(".")[:-1]
    if node.level > 1:
        pkg = pkg[: len(pkg) - (node.level - 1)]
    return ".".join(pkg + ([node.module] if node.module else []))


def _data_path(node: ast.AST) -> list[str] | None:
    """``files("evolcoder") / "a" / "b"`` or ``files("evolcoder").joinpath("a", "b/c")`` -> the
    constant path parts ([] for the package itself); None for anything else."""
    if isinstance(node, ast.Call):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if (
            name == "files"
            and len(node.args) == 1
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value == PACKAGE
        ):
            return []
        if isinstance(func, ast.Attribute) and func.attr == "joinpath":
            base = _data_path(func.value)
            if base is None:
                return None
            out = list(base)
            for arg in node.args:
                if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                    return [*out, None]  # a variable part: the constant prefix is what is known
                out += arg.value.split("/")
            return out
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        base = _data_path(node.left)
        if base is None or (base and base[-1] is None):
            return base
        if isinstance(node.right, ast.Constant) and isinstance(node.right.value, str):
            return base + node.right.value.split("/")
        return [*base, None]
    return None


_SCANS: dict[tuple[str, str], tuple[tuple, set[str], set[Path]]] = {}  # (path, module) -> (stat, mods, data)


def _stat(path: Path) -> list[int] | None:
    """What marks a file or folder as changed: mtime, ctime, size and inode (None: it is gone)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino]


def _scan(root: Path, module: str, path: Path) -> tuple[set[str], set[Path]]:
    """Modules and data paths one module refers to (parsed once per process while its stat holds:
    stages share most of their modules)."""
    key, stat = (str(path), module), _stat(path)
    hit = _SCANS.get(key)
    if hit is not None and hit[0] == stat:
        return set(hit[1]), set(hit[2])
    mods, data = _scan_source(root, module, path)
    _SCANS[key] = (stat, mods, data)
    return set(mods), set(data)


def _scan_source(root: Path, module: str, path: Path) -> tuple[set[str], set[Path]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    mods: set[str] = set()
    data: set[Path] = set()
    inner = set()  # parts of a longer path expression: only the whole expression counts
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            inner.add(id(node.left))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "joinpath":
            inner.add(id(node.func.value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve_from(module, is_package, node)
            if target:
                mods.add(target)
                mods.update(f"{target}.{a.name}" for a in node.names)  # submodules, where they are
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and module != DISPATCHER:
            m = _MODULE_STRING.match(node.value)
            if m:
                mods.add(m.group(1))
        parts = _data_path(node) if isinstance(node, (ast.Call, ast.BinOp)) and id(node) not in inner else None
        if parts:
            known = []
            for p in parts:
                if p is None:
                    break
                known.append(p)
            if known:
                data.add(root.joinpath(*known))
    return {m for m in mods if m.split(".")[0] == PACKAGE and _module_path(root, m)}, data


def command_module(root: Path, command: str) -> str:
    """The module of ``evolcoder <command>``, read from ``cli.py``'s ``COMMANDS`` table."""
    tree = ast.parse((root / "cli.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(getattr(t, "id", None) == "COMMANDS" for t in targets) and isinstance(node.value, ast.Dict):
                for k, v in zip(node.value.keys, node.value.values, strict=True):
                    if isinstance(k, ast.Constant) and k.value == command:
                        return v.elts[0].value
    raise KeyError(f"no evolcoder command {command!r} in {root / 'cli.py'}")


def declared_excludes(root: str | Path, module: str) -> tuple[str, ...]:
    """The ``CODE_HASH_EXCLUDES`` of a module (a literal tuple/list/set of module names), or ()."""
    path = _module_path(Path(root), module)
    if path is None:
        return ()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        if any(getattr(t, "id", None) == "CODE_HASH_EXCLUDES" for t in targets) and node.value is not None:
            return tuple(ast.literal_eval(node.value))
    return ()


def _excluded(module: str, excludes: tuple[str, ...]) -> bool:
    return any(module == e or module.startswith(e + ".") for e in excludes)


def stage_files(root: str | Path, command: str) -> list[Path]:
    """Every file behind ``evolcoder <command>`` (modules and data files), sorted."""
    return _stage_files(Path(root), command)[0]


def _stage_files(root: Path, command: str) -> tuple[list[Path], set[Path]]:
    """(:func:`stage_files`, the data folders listed for them: a file added there changes the stage)."""
    start = command_module(root, command)
    excludes = declared_excludes(root, start)
    seen: set[str] = set()
    files: set[Path] = set()
    folders: set[Path] = set()
    todo = [start, *_parents(start)]
    while todo:
        mod = todo.pop()
        if mod in seen or _excluded(mod, excludes):
            continue
        seen.add(mod)
        path = _module_path(root, mod)
        if path is None:
            continue
        files.add(path)
        mods, data = _scan(root, mod, path)
        for d in data:
            if d.is_dir():
                below = [p for p in d.rglob("*") if "__pycache__" not in p.parts]
                files.update(p for p in below if p.is_file())
                folders.update([d, *(p for p in below if p.is_dir())])
            elif d.is_file():
                files.add(d)
        for m in mods:
            todo += [m, *_parents(m)]
    kept = sorted(f for f in files if f.suffix != ".pyc" and f.relative_to(root).as_posix() not in NOT_CODE)
    return kept, folders


def stage_hash(root: str | Path, command: str, cache: dict | None = None) -> str:
    """Content hash of :func:`stage_files` (paths relative to ``root`` and bytes).

    ``cache`` (a dict, e.g. from :func:`load_cache`): the hash is taken from it while every file it was
    derived from -- the stage's files, the data folders they were listed from and ``cli.py`` -- has the
    same stat, and stored in it otherwise."""
    root = Path(root)
    key = f"{root.resolve()}::{command}"
    if cache is not None:
        hit = cache.get(key)
        if hit is not None and all(_stat(root / rel) == st for rel, st in hit["stats"].items()):
            return hit["hash"]
    files, folders = _stage_files(root, command)
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(root)).encode() + b"\0")
        h.update(f.read_bytes())
        h.update(b"\0")
    digest = h.hexdigest()[:16]
    if cache is not None:
        watched = {*files, *folders, root / "cli.py"}
        cache[key] = {"hash": digest, "stats": {str(p.relative_to(root)): _stat(p) for p in sorted(watched)}}
    return digest


def load_cache(path: str | Path) -> dict:
    """The stat-keyed stage hashes saved by :func:`save_cache` ({} when missing or unreadable)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_cache(path: str | Path, cache: dict) -> None:
    """Write the cache atomically (a parallel parse reads the old or the new file, never a torn one);
    a read-only folder only costs the next parse its hashing."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(cache, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
