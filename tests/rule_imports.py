"""The third-party packages an ``evolcoder <command>`` imports on the path its settings select.

Read from the source, never imported: the command's modules are :func:`evolcoder.codehash.stage_files`
(what the command runs, transitively); from the command's click function, a reachability walk over
functions and classes (rapid type analysis: a method runs when its class is used and a call names it)
collects the ``import`` statements it passes. A branch whose test reads a setting of the job (``s.backend
== "vllm"``, ``if s.deepspeed:``, ``s.lora is not None``, ``source.startswith("hf:")``) follows the side that
the job's ``--settings-json`` and options select; any other test follows both sides. So the imports of the
vLLM backend count for a job with ``backend: vllm`` and not for one with ``backend: hf``.
"""

from __future__ import annotations

import ast
import functools
import json
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOT = REPO / "src" / "evolcoder"
sys.path.insert(0, str(REPO / "src"))

from evolcoder import codehash  # noqa: E402

SETTING_BASES = {"s", "settings", "st", "self.settings", "self.s"}
UNKNOWN = object()


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _flatten(obj, out: dict, depth: int = 0) -> dict:
    """Every key at any depth -> its value; a key with two different values is unknown."""
    if isinstance(obj, dict) and depth < 4:
        for k, v in obj.items():
            if k in out and out[k] != v:
                out[k] = UNKNOWN
            else:
                out.setdefault(k, v)
            _flatten(v, out, depth + 1)
    return out


class Env:
    """What a job's command line says: its settings (flattened) and its options."""

    def __init__(self, settings: dict, options: dict):
        self.values = _flatten(settings, {})
        for k, v in options.items():
            self.values.setdefault(k, v)
        self.options = options
        self.used: set[str] = set()  # option names a branch read (what a cached result depends on)

    def value(self, node: ast.AST):
        name = _dotted(node)
        if name is None:
            return UNKNOWN
        base, _, attr = name.rpartition(".")
        if not base:  # a bare name: an option or a setting passed as a parameter (source, backend, ...)
            self.used.add(name)
            return self.values.get(name, UNKNOWN)
        if base in SETTING_BASES or base.split(".")[0] in {"s", "settings", "self"}:
            self.used.add(attr)
            return self.values.get(attr, UNKNOWN)
        return UNKNOWN

    def test(self, node: ast.AST):
        """True / False / UNKNOWN for a branch condition."""
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            v = self.test(node.operand)
            return UNKNOWN if v is UNKNOWN else not v
        if isinstance(node, ast.BoolOp):
            vals = [self.test(v) for v in node.values]
            if isinstance(node.op, ast.And):
                return False if False in vals else (True if all(v is True for v in vals) else UNKNOWN)
            return True if True in vals else (False if all(v is False for v in vals) else UNKNOWN)
        if isinstance(node, ast.Compare) and len(node.ops) == 1:
            left = self.value(node.left)
            right = node.comparators[0]
            try:
                const = ast.literal_eval(right)
            except ValueError:
                return UNKNOWN
            if left is UNKNOWN:
                return UNKNOWN
            op = node.ops[0]
            if isinstance(op, ast.Eq):
                return left == const
            if isinstance(op, ast.NotEq):
                return left != const
            if isinstance(op, ast.Is):
                return left is const
            if isinstance(op, ast.IsNot):
                return left is not const
            if isinstance(op, (ast.In, ast.NotIn)) and isinstance(const, (tuple, list, set)):
                return (left in const) == isinstance(op, ast.In)
            return UNKNOWN
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in ("startswith", "endswith") and len(node.args) == 1:
                left = self.value(node.func.value)
                try:
                    arg = ast.literal_eval(node.args[0])
                except ValueError:
                    return UNKNOWN
                if isinstance(left, str):
                    return getattr(left, node.func.attr)(arg)
            return UNKNOWN
        if isinstance(node, (ast.Attribute, ast.Name)):
            v = self.value(node)
            return UNKNOWN if v is UNKNOWN else bool(v)
        return UNKNOWN


@functools.cache
def _module(name: str, path: Path) -> Module:
    return Module(name, path)


class Module:
    def __init__(self, name: str, path: Path):
        self.name = name
        self.tree = ast.parse(path.read_text(encoding="utf-8"))
        self.is_package = path.name == "__init__.py"
        self.scope: dict = {}  # names bound by the module's own imports
        self.optional = _optional_imports(self.tree)
        self.defs: dict[str, ast.AST] = {}
        self.classes: dict[str, dict[str, ast.AST]] = {}
        for node in self.tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.defs[node.name] = node
            elif isinstance(node, ast.ClassDef):
                self.defs[node.name] = node
                self.classes[node.name] = {
                    n.name: n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                }


_ENTER, _LEAVE = object(), object()


def _swallows(node: ast.Try) -> bool:
    """A ``try`` whose handler catches ImportError (or anything) and goes on: what it runs is optional."""
    for h in node.handlers:
        names = {_dotted(t) for t in (h.type.elts if isinstance(h.type, ast.Tuple) else [h.type])} if h.type else {None}
        catches = bool(names & {None, "ImportError", "ModuleNotFoundError", "Exception", "BaseException"})
        if catches and not any(isinstance(n, ast.Raise) for n in ast.walk(h)):
            return True
    return False


def _optional_imports(tree: ast.AST) -> set[int]:
    """Imports directly inside such a ``try`` (DS-1000's optional preloads). An import whose handler raises
    (a one-line error naming the package) is required."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and _swallows(node):
            out.update(id(n) for st in node.body for n in ast.walk(st) if isinstance(n, (ast.Import, ast.ImportFrom)))
    return out


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(["evolcoder", *parts])


class Walk:
    """Reachability from one command under one job's settings."""

    def __init__(self, command: str, env: Env):
        self.env = env
        self.mods = {}
        for f in codehash.stage_files(ROOT, command):
            if f.suffix == ".py":
                m = _module(_module_name(f), f)
                self.mods[m.name] = m
        self.imports: dict[str, set[str]] = {}  # top-level package -> where
        self.live: set[tuple[str, str]] = set()  # (module, qualified def name)
        self.live_classes: set[tuple[str, str]] = set()
        self.called: set[str] = set()
        self.todo: list[tuple[str, str, ast.AST, bool]] = []
        self.opt = False  # inside code whose failure is caught and ignored (a plot that never fails training)
        for m in self.mods.values():  # module-level code runs on import
            self._visit_body(m, "<module>", m.tree.body, m.scope)
        module, attr = codehash.command_entry(ROOT, command)
        self._use(module, attr)
        while self.todo:
            mod, qual, node, self.opt = self.todo.pop()
            self._visit_body(self.mods[mod], qual, node.body, dict(self.mods[mod].scope))

    # -- names
    def _bind_import(self, m: Module, node: ast.AST, scope: dict, where: str) -> None:
        if id(node) in m.optional:
            where = ""  # bound, not required
        if isinstance(node, ast.Import):
            for a in node.names:
                top = a.name.split(".")[0]
                if top == "evolcoder":
                    scope[a.asname or top] = ("module", a.name if a.asname else "evolcoder")
                else:
                    self._record(top, where)
            return
        target = codehash.resolve_from(m.name, m.is_package, node)
        if not target:
            return
        top = target.split(".")[0]
        if top != "evolcoder":
            self._record(top, where)
            return
        for a in node.names:
            sub = f"{target}.{a.name}"
            scope[a.asname or a.name] = ("module", sub) if sub in self.mods else ("def", target, a.name)

    def _record(self, top: str, where: str) -> None:
        if not where or self.opt or top in sys.stdlib_module_names or top == "__future__":
            return
        self.imports.setdefault(top, set()).add(where)

    def _use(self, module: str, name: str) -> None:
        m = self.mods.get(module)
        if m is not None and name not in m.defs and name in m.scope and m.scope[name][0] == "def":
            _, module, name = m.scope[name]  # re-exported: `from evolcoder.x import f` in a package
            m = self.mods.get(module)
        if m is None or name not in m.defs:
            return
        if name in m.classes:
            if (module, name) in self.live_classes:
                return
            self.live_classes.add((module, name))
            cls = m.defs[name]
            for stmt in cls.body:  # class body (attributes, decorators) runs
                if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    self._visit_body(m, name, [stmt], {})
            for base in cls.bases:
                self._use_expr(m, base, {})
            for meth in m.classes[name]:
                if meth.startswith("__") or meth in self.called:
                    self._method(module, name, meth)
            return
        if (module, name) not in self.live and (module, name, self.opt) not in self.live:
            self.live.add((module, name) if not self.opt else (module, name, True))
            node = m.defs[name]
            for d in node.decorator_list:
                self._use_expr(m, d, {})
            self.todo.append((module, name, node, self.opt))

    def _method(self, module: str, cls: str, meth: str) -> None:
        key = (module, f"{cls}.{meth}")
        if key not in self.live:
            self.live.add(key)
            self.todo.append((module, key[1], self.mods[module].classes[cls][meth], self.opt))

    def _call_name(self, name: str) -> None:
        if name in self.called:
            return
        self.called.add(name)
        for module, cls in list(self.live_classes):
            if name in self.mods[module].classes[cls]:
                self._method(module, cls, name)

    def _resolve(self, m: Module, node: ast.AST, scope: dict):
        if isinstance(node, ast.Name):
            if node.id in scope:
                return scope[node.id]
            if node.id in m.defs:
                return ("def", m.name, node.id)
            return None
        if isinstance(node, ast.Attribute):
            base = self._resolve(m, node.value, scope)
            if base and base[0] == "module":
                sub = f"{base[1]}.{node.attr}"
                return ("module", sub) if sub in self.mods else ("def", base[1], node.attr)
        return None

    def _use_expr(self, m: Module, node: ast.AST, scope: dict) -> None:
        self._visit_body(m, "<expr>", [ast.Expr(node)], scope)

    # -- statements and expressions, pruning branches the settings decide
    def _visit_body(self, m: Module, where: str, body: list, scope: dict) -> None:
        stack = list(reversed(body))
        base_opt = self.opt
        depth = 0
        while stack:
            node = stack.pop()
            if node is _ENTER or node is _LEAVE:
                depth += 1 if node is _ENTER else -1
                self.opt = base_opt or depth > 0
                continue
            if isinstance(node, ast.Try) and _swallows(node):
                stack.extend(reversed(node.handlers + node.orelse + node.finalbody))
                stack.append(_LEAVE)
                stack.extend(reversed(node.body))
                stack.append(_ENTER)
                continue
            if isinstance(node, (ast.If, ast.IfExp)):
                verdict = self.env.test(node.test)
                stack.append(node.test)
                branches = [node.body, node.orelse]
                if verdict is True:
                    branches = [node.body]
                elif verdict is False:
                    branches = [node.orelse]
                for b in branches:
                    stack.extend(reversed(b) if isinstance(b, list) else [b])
                continue
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                self._bind_import(m, node, scope, f"{m.name}:{where}")
                continue
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and where == "<module>":
                stack.extend(node.decorator_list)  # a module's own functions and classes run when used
                continue
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                # nested definitions run with their enclosing function (over-approximation)
                if isinstance(node, ast.ClassDef):
                    for stmt in node.body:
                        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                            stack.extend(reversed(stmt.body))
                        else:
                            stack.append(stmt)
                    stack.extend(node.bases)
                elif isinstance(node, ast.Lambda):
                    stack.append(node.body)
                else:
                    stack.extend(reversed(node.body))
                    stack.extend(node.decorator_list)
                continue
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                target = self._resolve(m, node.func, scope)
                if target is None:
                    self._call_name(node.func.attr)
            if isinstance(node, (ast.Name, ast.Attribute)) and isinstance(getattr(node, "ctx", None), ast.Load):
                target = self._resolve(m, node, scope)
                if target and target[0] == "def":
                    self._use(target[1], target[2])
                    if isinstance(node, ast.Attribute):
                        continue
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                ref = codehash.MODULE_STRING.match(node.value)
                if ref and ":" in node.value:  # a registry entry "evolcoder.x:Class"
                    self._use(ref.group(1), node.value.split(":", 1)[1])
            stack.extend(reversed(list(ast.iter_child_nodes(node))))
        self.opt = base_opt


_CACHE: dict[tuple[str, str], list[tuple[dict, dict]]] = {}


def command_imports(command: str, settings: dict, options: dict | None = None) -> dict[str, set[str]]:
    """{top-level package: {module:function where it is imported}} of ``evolcoder <command>``. Jobs that
    differ only in options no branch reads (output paths, shard numbers) share one walk."""
    options = options or {}
    key = (command, json.dumps(settings, sort_keys=True))
    for used, imports in _CACHE.get(key, []):
        if all(options.get(k) == v for k, v in used.items()):
            return imports
    env = Env(settings, options)
    imports = Walk(command, env).imports
    _CACHE.setdefault(key, []).append(({k: options.get(k) for k in env.used}, imports))
    return imports


def parse_shell(cmd: str) -> tuple[str, dict, dict] | None:
    """``evolcoder <command> ... --settings-json '{...}' --opt v`` -> (command, settings, options)."""
    words = shlex.split(cmd)
    words = words[: next((i for i, w in enumerate(words) if w in (">", "2>&1", "2>")), len(words))]  # redirections
    if len(words) < 2 or words[0] != "evolcoder":
        return None
    settings, options = {}, {}
    i = 2
    while i < len(words):
        w = words[i]
        if w.startswith("--"):
            val = words[i + 1] if i + 1 < len(words) and not words[i + 1].startswith("--") else True
            if w == "--settings-json" and isinstance(val, str):
                settings = json.loads(val)
            else:
                options[w[2:].replace("-", "_")] = val
            i += 2 if val is not True else 1
        else:
            i += 1
    return words[1], settings, options
