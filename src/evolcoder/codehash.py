"""The code a stage runs, derived from its imports: what makes a stage's outputs stale when edited.

A stage is an ``evolcoder <command>``. Its code starts at the command's click function (``"module:attr"``
in ``evolcoder.cli.COMMANDS``) and takes in what running that function imports, read from the source
(:mod:`ast`), never by importing it, so the Snakefile can hash the tree a rule will run without torch,
evalplus or a container. The walk goes by *units*: a module's import-time code (its body without the
function bodies: imports, decorators, default values, class bodies, constants) and each of its top-level
functions and classes (a class with all its methods). A unit reaches

- the import-time code of every ``evolcoder`` module it imports (``import evolcoder.x``, ``from evolcoder.x
  import y``, relative imports; at module level or inside a function) and of their parent packages;
- the functions and classes it names: ``f`` after ``from evolcoder.x import f``, ``x.f`` after ``from
  evolcoder import x``, its own module's ``f``; every unit of a module it uses as a whole (passes on);
- string constants naming a module of the package (a registry's ``"evolcoder.benchmarks.ds1000:DS1000"``:
  that class; ``python -m evolcoder.sandbox.worker``: the whole module), except inside
  :mod:`evolcoder.cli`, the dispatcher, whose table names every stage;
- data files: ``resources.files("evolcoder") / "templates" / "eval"`` or ``.joinpath("data/x.json")``:
  the constant part of the path (a folder: everything under it).

So the lazy imports of a function the command never calls stay out of its hash: editing the loss plot
re-plots and retrains nothing. A module with any unit reached is hashed whole, and so is every data file.

A command module may declare ``CODE_HASH_EXCLUDES``: modules (or packages) it imports through the
benchmark adapters but never runs, e.g. generation and merge never run the scoring harness or the
sandbox. Those are left out of its hash, so editing the scorer does not regenerate or retrain; the
test suite checks each declaration by tracing the command's calls (tests/test_single_source.py).

Standard library only: ``rules/common.smk`` loads this file by path. Every Snakefile parse (a dry run
too) asks for each stage's hash, so :func:`stage_hash` takes a cache keyed on file stats
(:func:`load_cache` / :func:`save_cache`): a stage whose files and data folders all have the stat they
had when it was hashed is not read again. ``python -m evolcoder.codehash --markdown`` prints the
"what reruns when you edit X" table of docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
from pathlib import Path
from typing import NamedTuple

PACKAGE = "evolcoder"
DISPATCHER = "evolcoder.cli"
# package data that is not code: the config schema's defaults reach a stage through its config slice
# (a tracked param of the rule), so its prose and other sections do not make a stage stale
NOT_CODE = {"data/config.schema.yaml"}
BODY = None  # a module's import-time code, as a unit
ALL = "*"  # every unit of a module

# "evolcoder.a.b" or "evolcoder.a.b:Attr" (a registry entry)
MODULE_STRING = re.compile(rf"^({PACKAGE}(?:\.[A-Za-z_][A-Za-z0-9_]*)+)(?::([A-Za-z_][A-Za-z0-9_.]*))?$")


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


def resolve_from(module: str, is_package: bool, node: ast.ImportFrom) -> str | None:
    """The absolute module a ``from ... import`` in ``module`` reads from."""
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


Ref = tuple[str, "str | None"]  # (module, a top-level name, BODY or ALL)


class Scan(NamedTuple):
    """What one module refers to: per unit (BODY and each top-level function or class) the units it
    reaches and the data paths it reads; ``exports``: names its imports bind at module level."""

    units: dict[str | None, tuple[set[Ref], set[Path]]]
    exports: dict[str, Ref]


_SCANS: dict[tuple[str, str], tuple[list[int] | None, Scan]] = {}  # (path, module) -> (stat, scan)


def _stat(path: Path) -> list[int] | None:
    """What marks a file or folder as changed: mtime, ctime, size and inode (None: it is gone)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino]


def _scan(root: Path, module: str, path: Path) -> Scan:
    """:func:`_scan_source`, parsed once per process while the file's stat holds (stages share most
    of their modules)."""
    key, stat = (str(path), module), _stat(path)
    hit = _SCANS.get(key)
    if hit is not None and hit[0] == stat:
        return hit[1]
    scan = _scan_source(root, module, path)
    _SCANS[key] = (stat, scan)
    return scan


_BLOCKS = ("body", "orelse", "finalbody")
_COMPOUND = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith, ast.Try, ast.TryStar)


def _split(stmts: list[ast.stmt], owner: str | None, parts: dict[str | None, list[ast.AST]]) -> None:
    """Sort the nodes of a module (``owner`` None) or of a top-level class body into units: what runs at
    import goes to BODY, a function body to its top-level function or class."""
    for st in stmts:
        if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = st.args
            parts[BODY] += [*st.decorator_list, *args.defaults, *(d for d in args.kw_defaults if d is not None)]
            parts.setdefault(owner or st.name, []).extend(st.body)
        elif isinstance(st, ast.ClassDef):
            parts[BODY] += [*st.decorator_list, *st.bases, *(k.value for k in st.keywords)]
            parts.setdefault(owner or st.name, [])
            _split(st.body, owner or st.name, parts)
        elif isinstance(st, _COMPOUND):
            for field, value in ast.iter_fields(st):
                if field in _BLOCKS:
                    _split(value, owner, parts)
                elif field == "handlers":
                    for h in value:
                        parts[BODY] += [h.type] if h.type is not None else []
                        _split(h.body, owner, parts)
                elif isinstance(value, ast.AST):
                    parts[BODY].append(value)
                elif isinstance(value, list):
                    parts[BODY] += [v for v in value if isinstance(v, ast.AST)]
        else:
            parts[BODY].append(st)


def _walk(nodes: list[ast.AST]):
    """Every node under ``nodes`` with its parent, annotations left out (they run no code)."""
    todo: list[tuple[ast.AST, ast.AST | None]] = [(n, None) for n in nodes]
    while todo:
        node, parent = todo.pop()
        yield node, parent
        for field, value in ast.iter_fields(node):
            if field in ("annotation", "returns"):
                continue
            if isinstance(value, ast.AST):
                todo.append((value, node))
            elif isinstance(value, list):
                todo += [(v, node) for v in value if isinstance(v, ast.AST)]


def _scan_source(root: Path, module: str, path: Path) -> Scan:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    parts: dict[str | None, list[ast.AST]] = {BODY: []}
    _split(tree.body, None, parts)
    defs = {name for name in parts if name is not BODY}

    def imports(nodes: list[tuple[ast.AST, ast.AST | None]]) -> tuple[set[Ref], dict[str, Ref]]:
        runs: set[Ref] = set()
        binds: dict[str, Ref] = {}
        for node, _ in nodes:
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == PACKAGE:
                        runs.add((a.name, BODY))
                        binds[a.asname or PACKAGE] = (a.name if a.asname else PACKAGE, ALL)
            elif isinstance(node, ast.ImportFrom):
                target = resolve_from(module, is_package, node)
                if not target or target.split(".")[0] != PACKAGE:
                    continue
                runs.add((target, BODY))
                for a in node.names:
                    sub = f"{target}.{a.name}"
                    if a.name == "*":
                        runs.add((target, ALL))
                    elif _module_path(root, sub):
                        runs.add((sub, BODY))
                        binds[a.asname or a.name] = (sub, ALL)
                    else:
                        binds[a.asname or a.name] = (target, a.name)
        return runs, binds

    body_nodes = list(_walk(parts[BODY]))
    exports = imports([(n, None) for n in parts[BODY]])[1]  # module-level statements only
    units: dict[str | None, tuple[set[Ref], set[Path]]] = {}
    for name, roots in parts.items():
        nodes = body_nodes if name is BODY else list(_walk(roots))
        refs, local = imports(nodes)
        scope = {**exports, **local}
        parent_of = {id(n): p for n, p in nodes}
        data: set[Path] = set()
        inner = set()  # parts of a longer path expression: only the whole expression counts
        for node, _ in nodes:
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
                inner.add(id(node.left))
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "joinpath":
                inner.add(id(node.func.value))
        for node, _ in nodes:
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                if node.id in scope:
                    refs.add(_attribute_of(root, scope[node.id], node, parent_of))
                elif node.id in defs:
                    refs.add((module, node.id))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and module != DISPATCHER:
                ref = module_string_ref(root, node.value)
                if ref:
                    refs.add(ref)
            elif isinstance(node, (ast.Call, ast.BinOp)) and id(node) not in inner:
                known = []
                for p in _data_path(node) or []:
                    if p is None:
                        break
                    known.append(p)
                if known:
                    data.add(root.joinpath(*known))
        units[name] = ({r for r in refs if _module_path(root, r[0])}, data)
    return Scan(units, exports)


def _attribute_of(root: Path, ref: Ref, node: ast.AST, parent_of: dict[int, ast.AST | None]) -> Ref:
    """What ``node`` (a name bound to ``ref``) reaches: for a module, the unit its attribute chain
    names (``x.f``, ``x.sub.f``), or every unit when it is used as a whole."""
    module, name = ref
    if name != ALL:
        return ref
    parent = parent_of.get(id(node))
    while isinstance(parent, ast.Attribute) and parent.value is node:
        sub = f"{module}.{parent.attr}"
        if not _module_path(root, sub):
            return module, parent.attr
        module, node, parent = sub, parent, parent_of.get(id(parent))
    return module, ALL


def module_string_ref(root: Path, text: str) -> Ref | None:
    """The unit a string constant names: ``"evolcoder.x.y:Class"`` that class, ``"evolcoder.x.y"`` the
    whole module; None for any other string."""
    m = MODULE_STRING.match(text)
    if not m:
        return None
    module, attr = m.group(1), m.group(2)
    if _module_path(root, module):
        return module, attr.split(".")[0] if attr else ALL
    head, _, last = module.rpartition(".")
    return (head, last) if attr is None and _module_path(root, head) else None


def _commands_table(root: str | Path) -> dict[str, str]:
    """``cli.py``'s ``COMMANDS`` table: command -> ``"module:attr"`` of its click command."""
    path = Path(root) / "cli.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(getattr(t, "id", None) == "COMMANDS" for t in targets) and isinstance(node.value, ast.Dict):
                return {k.value: v.elts[0].value for k, v in zip(node.value.keys, node.value.values, strict=True)}
    raise KeyError(f"no COMMANDS table in {path}")


def commands(root: str | Path) -> list[str]:
    """Every command of ``cli.py``'s ``COMMANDS`` table, in its order."""
    return list(_commands_table(root))


def command_entry(root: str | Path, command: str) -> tuple[str, str]:
    """(module, attribute) of the click command of ``evolcoder <command>``, read from ``cli.py``'s
    ``COMMANDS`` table (``"module:attr"``)."""
    table = _commands_table(root)
    if command not in table:
        raise KeyError(f"no evolcoder command {command!r} in {Path(root) / 'cli.py'}")
    module, _, attr = table[command].partition(":")
    return module, attr or "cli"


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
    start, attr = command_entry(root, command)
    excludes = declared_excludes(root, start)
    asked: set[Ref] = set()
    done: set[Ref] = set()  # units whose references are in
    files: set[Path] = set()
    folders: set[Path] = set()
    todo: list[Ref] = [(start, attr)]
    while todo:
        ref = todo.pop()
        module, name = ref
        if ref in asked or _excluded(module, excludes):
            continue
        asked.add(ref)
        path = _module_path(root, module)
        if path is None:
            continue
        files.add(path)
        scan = _scan(root, module, path)
        todo += [(p, BODY) for p in _parents(module)]
        if name == ALL:
            names = list(scan.units)
        elif name in scan.units:
            names = [BODY, name]
        else:  # import-time code: a constant, or a name re-exported from another module
            names = [BODY]
            if name in scan.exports:
                todo.append(scan.exports[name])
        for unit in names:
            if (module, unit) in done:
                continue
            done.add((module, unit))
            refs, data = scan.units[unit]
            todo += refs
            for d in data:
                if d.is_dir():
                    below = [p for p in d.rglob("*") if "__pycache__" not in p.parts]
                    files.update(p for p in below if p.is_file())
                    folders.update([d, *(p for p in below if p.is_dir())])
                elif d.is_file():
                    files.add(d)
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
