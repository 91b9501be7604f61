"""Test harnesses: the part that runs *inside* the sandboxed child (see :mod:`evolcoder.sandbox`)
and the part that decides the verdict in the scoring process.

For HumanEval(+)/MBPP(+) (:func:`run_evalplus`) and the original MBPP (:func:`run_assert_leaves`)
the child only *computes*: it runs the sample and sends back the values it returned, pickled the
moment they are returned. The expected outputs never enter the child's process; the verdict is
:func:`check_evalplus` / :func:`check_asserts` in the scoring process, on values rebuilt with
:func:`evolcoder.sandbox.values.safe_loads` (plain builtin, collections, decimal/fractions and numpy
values only), so neither an object whose ``__eq__`` always says True, nor a patched harness, nor
a forged message on the result pipe can pass a test: at most the sample can claim outputs, which
are then checked like any others.

DS-1000 (:func:`run_ds1000`) keeps the official harness's shape: its ``code_context`` computes the
reference answer and checks the sample's in one program, so that verdict is reported by the child
(as under the official harness) and a sample written to subvert it could; the other protections
(separate uid, private tmp, minimal environment, no network) apply to it as to every job.
"""

from __future__ import annotations

import ast
import builtins
import collections
import contextlib
import decimal
import faulthandler
import fractions
import io
import math
import pickle
import signal
import sys

# bound here, immune to a sample patching `builtins` (so not unnecessary, whatever UP029 says)
from builtins import abs, bool, dict, id, isinstance, len, set, type  # noqa: UP029
from typing import Any

PASS, FAIL, TIMEOUT = "pass", "fail", "timeout"


class TimeLimitExceeded(BaseException):
    """Raised by the interval timer in the middle of a test (BaseException: harder to swallow)."""


class UntrustedOutput(Exception):
    pass


# ----------------------------------------------------------------------------- trusted values

_SCALARS = {
    type(None),
    bool,
    int,
    float,
    complex,
    str,
    bytes,
    decimal.Decimal,
    fractions.Fraction,
    type(Ellipsis),
    type(NotImplemented),
}
_SEQUENCES = {list, tuple, set, frozenset, collections.deque, bytearray, range}
_MAPPINGS = {dict, collections.OrderedDict, collections.defaultdict, collections.Counter}
_PLAIN = _SCALARS | _SEQUENCES | _MAPPINGS
_HARMLESS = {
    "__module__",
    "__qualname__",
    "__doc__",
    "__slots__",
    "__dict__",
    "__weakref__",
    "__annotations__",
    "__new__",
    "__init__",
    "__repr__",
    "__str__",
    "__getnewargs__",
    "__match_args__",
    "_fields",
    "_field_defaults",
    "_make",
    "_asdict",
    "_replace",
    "__orig_bases__",
    "__parameters__",
    "__firstlineno__",
    "__static_attributes__",
    "__init_subclass__",
    "__class_getitem__",
}


def _plain_base(t: type) -> type | None:
    """The trusted base of ``t`` if ``t`` is plain or a subclass that overrides no protocol."""
    if t in _PLAIN:
        return t
    mro = t.__mro__
    for i, base in enumerate(mro):
        if base in _PLAIN:
            for cls in mro[:i]:
                for name in vars(cls):
                    if name.startswith("__") and name not in _HARMLESS:
                        return None  # overrides part of the protocol (__eq__, __iter__, ...)
            return base
    return None


def _numpy_ok(x: Any, t: type) -> bool | None:
    np = sys.modules.get("numpy")
    if np is None:
        return None
    if t is np.ndarray:
        return True
    if isinstance(x, np.generic) and t.__module__ == "numpy" and t in _numpy_scalar_types(np):
        return True
    return None


_NP_TYPES: set = set()


def _numpy_scalar_types(np) -> set:
    if not _NP_TYPES:
        _NP_TYPES.update(v for v in np.sctypeDict.values() if isinstance(v, type))
    return _NP_TYPES


def check_trusted(x: Any, _depth: int = 0, _seen: set | None = None) -> None:
    """Raise UntrustedOutput unless every object reachable from ``x`` is of a trusted type."""
    t = type(x)
    if t in _SCALARS:
        return
    if _depth > 200:
        raise UntrustedOutput("output nested too deeply")
    np_ok = _numpy_ok(x, t)
    if np_ok:
        if t is sys.modules["numpy"].ndarray and x.dtype == object:
            for item in x.ravel().tolist():
                check_trusted(item, _depth + 1, _seen)
        return
    base = _plain_base(t)
    if base is None:
        raise UntrustedOutput(f"untrusted output type {t.__qualname__}")
    if base in _SCALARS:
        return
    _seen = _seen if _seen is not None else set()
    if id(x) in _seen:
        return
    _seen.add(id(x))
    if base in _MAPPINGS:
        for k, v in dict.items(x):
            check_trusted(k, _depth + 1, _seen)
            check_trusted(v, _depth + 1, _seen)
    elif base is range:
        return
    else:
        for item in base.__iter__(x):
            check_trusted(item, _depth + 1, _seen)


# ----------------------------------------------------------------------------- guard and io


class _Sink(io.StringIO):
    def write(self, s: str) -> int:  # discard, but count like a stream
        return len(s)

    def read(self, *args, **kwargs):
        raise OSError("stdin is closed")

    readline = readlines = read

    def readable(self) -> bool:
        return False


@contextlib.contextmanager
def swallow_io():
    sink = _Sink()
    saved = sys.stdout, sys.stderr, sys.stdin
    sys.stdout = sys.stderr = sys.stdin = sink
    try:
        yield
    finally:
        sys.stdout, sys.stderr, sys.stdin = saved


def reliability_guard() -> None:
    """evalplus's guard (destructive functions disabled), for verdict parity with evalplus.

    The real protection is the process sandbox; this only keeps semantics identical (a sample
    that calls ``open`` or ``exit`` fails here exactly as it fails under evalplus).
    """
    import os
    import shutil
    import subprocess

    faulthandler.disable()
    builtins.exit = None
    builtins.quit = None
    os.environ["OMP_NUM_THREADS"] = "1"
    for name in (
        "kill",
        "system",
        "putenv",
        "remove",
        "removedirs",
        "rmdir",
        "fchdir",
        "setuid",
        "fork",
        "forkpty",
        "killpg",
        "rename",
        "renames",
        "truncate",
        "replace",
        "unlink",
        "fchmod",
        "fchown",
        "chmod",
        "chown",
        "chroot",
        "lchflags",
        "lchmod",
        "lchown",
        "getcwd",
        "chdir",
    ):
        setattr(os, name, None)
    builtins.open = None
    shutil.rmtree = None
    shutil.move = None
    shutil.chown = None
    subprocess.Popen = None
    builtins.help = None
    for name in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
        sys.modules[name] = None


def _raise_timeout(signum, frame):
    raise TimeLimitExceeded()


class _Timer:
    """Per-test time limit: CPU time (ITIMER_PROF, load-independent) or wall time (ITIMER_REAL)."""

    def __init__(self, clock: str):
        self.which = signal.ITIMER_PROF if clock == "cpu" else signal.ITIMER_REAL
        self.sig = signal.SIGPROF if clock == "cpu" else signal.SIGALRM
        signal.signal(self.sig, _raise_timeout)
        self.setitimer = signal.setitimer

    def start(self, seconds: float) -> None:
        self.setitimer(self.which, max(seconds, 1e-3))

    def stop(self) -> None:
        self.setitimer(self.which, 0)


# ----------------------------------------------------------------------------- evalplus oracles

MBPP_OUTPUT_NOT_NONE_TASKS = ["check_str", "text_match_three", "text_starta_endb"]
MBPP_OUTPUT_SET_EQ_TASKS = [
    "similar_elements",
    "find_char_long",
    "common_in_nested_lists",
    "extract_singly",
    "larg_nnum",
    "intersection_array",
    "find_dissimilar",
    "Diff",
]


def _poly(xs: list, x: float):
    return sum(coeff * math.pow(x, i) for i, coeff in enumerate(xs))


def _surface_area(base_edge, height):
    slant_height = math.sqrt((base_edge / 2) ** 2 + height**2)
    return round(base_edge**2 + 4 * (base_edge * slant_height) / 2)


def _digit_distance_nums(num1, num2):
    a, b = str(num1), str(num2)
    m = max(len(a), len(b))
    a, b = a.zfill(m), b.zfill(m)
    return sum(abs(int(x) - int(y)) for x, y in zip(a, b, strict=True))


def _is_floats(x, np) -> bool:
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)) and x:
        return all(isinstance(i, float) for i in x)
    if np is not None and isinstance(x, np.ndarray):
        return x.dtype == np.float64 or x.dtype == np.float32
    return False


def to_plain(x: Any, _depth: int = 0) -> Any:
    """``x`` made of plain values only (raises UntrustedOutput otherwise).

    A subclass that overrides none of the comparison/iteration protocol (a namedtuple, say) is
    turned into its plain base, so the scorer can rebuild it; anything else that is not a plain
    builtin, collections, decimal/fractions or numpy value is refused. Returns ``x`` itself when
    nothing needed converting.
    """
    t = type(x)
    if t in _SCALARS:
        return x
    if _depth > 200:
        raise UntrustedOutput("output nested too deeply")
    np_ok = _numpy_ok(x, t)
    if np_ok:
        if t is sys.modules["numpy"].ndarray and x.dtype == object:
            for item in x.ravel().tolist():
                if to_plain(item, _depth + 1) is not item:
                    raise UntrustedOutput("object array of converted values")
        return x
    base = _plain_base(t)
    if base is None:
        raise UntrustedOutput(f"untrusted output type {t.__qualname__}")
    if base in _SCALARS:
        return x if t is base else _SCALAR_COPY[base](x)
    if base is range:
        return x if t is base else range(x.start, x.stop, x.step)
    if base in _MAPPINGS:
        items = [(to_plain(k, _depth + 1), to_plain(v, _depth + 1)) for k, v in dict.items(x)]
        if t is base and all(a is k and b is v for (a, b), (k, v) in zip(items, dict.items(x), strict=True)):
            return x
        if base is collections.defaultdict:
            return collections.defaultdict(None, items)
        return base(items)
    src = list(base.__iter__(x))
    items = [to_plain(i, _depth + 1) for i in src]
    if t is base and all(a is b for a, b in zip(items, src, strict=True)):
        return x
    if base is collections.deque:
        return collections.deque(items, x.maxlen)
    return base(items)


_SCALAR_COPY = {
    int: int.__int__,
    float: float.__float__,
    complex: lambda v: complex(v.real, v.imag),
    str: lambda v: str.__add__("", v),
    bytes: lambda v: bytes.__add__(b"", v),
    decimal.Decimal: lambda v: decimal.Decimal(str(decimal.Decimal.__str__(v))),
    fractions.Fraction: lambda v: fractions.Fraction(int(v.numerator), int(v.denominator)),
}


def run_evalplus(
    code: str, entry_point: str, dataset: str, inputs: list, time_limits: list[float], sem: dict, start: int = 0
) -> dict:
    """In the sandboxed child: the sample on each input in order (evalplus's ``unsafe_execute``
    without the comparison, which :func:`check_evalplus` does in the scoring process).

    Returns ``{"outputs": [pickled output, ...], "stop": None | [kind, index, reason]}``: each
    output is pickled the moment it is returned (later mutation changes nothing); the first
    exception or per-test timeout stops the run. The expected outputs are not in this process.
    """
    dumps, proto = pickle.dumps, pickle.HIGHEST_PROTOCOL
    timer = _Timer(sem.get("clock", "cpu"))
    not_none = dataset == "mbpp" and entry_point in MBPP_OUTPUT_NOT_NONE_TASKS
    if sem.get("guard", True):
        reliability_guard()
    glb: dict = {}
    outs: list[bytes] = []
    try:
        with swallow_io():
            exec(code, glb)
            fn = glb[entry_point]
    except BaseException as exc:
        return {"outputs": outs, "stop": ["fail", start, f"load: {type(exc).__name__}"]}
    for i in range(start, len(inputs)):
        try:
            timer.start(time_limits[i])
            try:
                with swallow_io():
                    out = fn(*inputs[i])
            finally:
                timer.stop()
            if not_none and not isinstance(out, bool):
                # regex tasks: only "is not None" is ever checked (never an __eq__ of the match)
                outs.append(dumps((False, out is not None), proto))
            else:
                plain = to_plain(out)
                outs.append(dumps((True, plain) if not_none else plain, proto))
        except TimeLimitExceeded:
            return {
                "outputs": outs,
                "stop": [
                    "timeout",
                    i,
                    f"time limit {time_limits[i]:.3g}s ({sem.get('clock', 'cpu')} time) at test {i}",
                ],
            }
        except UntrustedOutput as exc:
            return {"outputs": outs, "stop": ["fail", i, str(exc)]}
        except BaseException as exc:
            return {"outputs": outs, "stop": ["fail", i, f"run: {type(exc).__name__}"]}
    return {"outputs": outs, "stop": None}


def check_evalplus(
    result: dict, entry_point: str, dataset: str, inputs: list, expected: list, atol: float, sem: dict, start: int = 0
) -> dict:
    """In the scoring process: the outputs a sandboxed run sent back against the expected ones
    (evalplus's checks and special oracles, first failure decides).

    ``result`` is untrusted data (a sample controls what its child sends); only plain values can
    be rebuilt from it (:func:`evolcoder.sandbox.values.safe_loads`), so every comparison below runs
    builtin or numpy code. Returns ``{"status", "done", "failed", "reason"}``.
    """
    import numpy as np

    from evolcoder.sandbox.values import UnsafeResult, safe_loads

    outs, stop = result.get("outputs"), result.get("stop")
    if not isinstance(outs, list) or not (stop is None or (isinstance(stop, list) and len(stop) == 3)):
        return {"status": FAIL, "done": start, "failed": start, "reason": "malformed result"}
    allclose = np.allclose
    not_none = dataset == "mbpp" and entry_point in MBPP_OUTPUT_NOT_NONE_TASKS
    uncounted = 0
    if start and atol == 0 and any(_is_floats(e, np) for e in expected[:start]):
        atol = 1e-6  # as if the skipped inputs had been checked (evalplus keeps the raised atol)
    for j, blob in enumerate(outs):
        i = start + j
        if i >= len(inputs) or not isinstance(blob, bytes):
            return {"status": FAIL, "done": i, "failed": i, "reason": "malformed result"}
        try:
            out = safe_loads(blob)
        except UnsafeResult as exc:
            return {"status": FAIL, "done": i, "failed": i, "reason": str(exc)}
        inp, exp = inputs[i], expected[i]
        try:
            if not_none:
                if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], bool)):
                    raise UntrustedOutput("malformed result")
                was_bool, out = out
                if not was_bool:
                    exact_match = exp == out  # out is "the sample's output is not None"
                elif sem.get("mbpp_not_none_bool", True):
                    exact_match = out == exp
                else:
                    exact_match = exp == (out is not None)
            else:
                exact_match = out == exp
            if dataset == "mbpp":
                if entry_point == "are_equivalent":
                    exact_match = True
                elif entry_point == "sum_div":
                    exact_match = exact_match or out == 0
                elif entry_point == "surface_Area" and sem.get("mbpp_extra_oracles", True):
                    exact_match = exact_match or abs(out - _surface_area(*inp)) <= atol
                elif entry_point == "digit_distance_nums" and sem.get("mbpp_extra_oracles", True):
                    exact_match = exact_match or out == _digit_distance_nums(*inp)
                elif entry_point in MBPP_OUTPUT_SET_EQ_TASKS and sem.get("mbpp_set_eq", True):
                    exact_match = set(out) == set(exp)
            if dataset == "humaneval" and entry_point == "find_zero":
                assert abs(_poly(*inp, out)) <= atol
                if sem.get("find_zero_quirk", False):
                    # evalplus 0.3.1 `continue`s here without counting the input as checked, so
                    # HumanEval/32 never passes there, not even with its canonical solution
                    uncounted += 1
                continue
            if atol == 0 and _is_floats(exp, np):
                atol = 1e-6  # evalplus keeps this for the following inputs too
            if not exact_match and atol != 0:
                if sem.get("allclose_type_check", True):
                    assert type(out) == type(exp)  # noqa: E721 (evalplus's own comparison)
                    if isinstance(exp, (list, tuple)):
                        assert len(out) == len(exp)
                assert allclose(out, exp, rtol=1e-07, atol=atol)
            else:
                assert exact_match
        except UntrustedOutput as exc:
            return {"status": FAIL, "done": i, "failed": i, "reason": str(exc)}
        except BaseException as exc:
            return {"status": FAIL, "done": i, "failed": i, "reason": f"check: {type(exc).__name__}"}
    n = start + len(outs)
    if stop is not None:
        kind, reason = stop[0], str(stop[2])[:300]
        if kind == TIMEOUT:
            return {"status": TIMEOUT, "done": n, "failed": n, "reason": reason, "cause": "cpu"}
        return {"status": FAIL, "done": n, "failed": n, "reason": reason}
    if n < len(inputs):
        return {"status": FAIL, "done": n, "failed": n, "reason": "incomplete result"}
    if uncounted:
        return {
            "status": FAIL,
            "done": len(inputs) - uncounted,
            "failed": None,
            "reason": "find_zero: inputs not counted (evalplus 0.3.1 quirk)",
        }
    return {"status": PASS, "done": len(inputs), "failed": None, "reason": ""}


# ----------------------------------------------------------------------------- MBPP asserts

# Names a test may use that the scoring process provides itself (never taken from the sample).
_CHECK_MODULES = (
    "math",
    "cmath",
    "re",
    "collections",
    "itertools",
    "heapq",
    "decimal",
    "fractions",
    "string",
    "operator",
    "functools",
)
# Calls the checker evaluates itself around values computed by the sample (numeric, no iteration).
_PASSTHROUGH = {"math.isclose", "cmath.isclose", "abs", "round", "float", "int", "complex", "len", "str", "bool"}


def _check_namespace() -> dict:
    import importlib

    ns: dict = {"__builtins__": builtins}
    for name in _CHECK_MODULES:
        ns[name] = importlib.import_module(name)
    return ns


class _Leaves(ast.NodeTransformer):
    """Splits an assert's expression: every smallest-enclosing sub-expression that needs the
    sample's names (a call of its function, say) becomes a leaf ``__leaf<k>__`` that the sandboxed
    child evaluates; the rest (comparisons, expected values, ``math.isclose`` ...) stays in the
    expression the scoring process evaluates on the leaves' plain values."""

    def __init__(self, trusted: set[str]):
        self.trusted = trusted
        self.leaves: list[str] = []

    def _needs_sample(self, node: ast.AST) -> bool:
        return any(isinstance(n, ast.Name) and n.id not in self.trusted for n in ast.walk(node))

    def _leaf(self, node: ast.AST) -> ast.AST:
        self.leaves.append(ast.unparse(node))
        return ast.copy_location(ast.Name(f"__leaf{len(self.leaves) - 1}__", ast.Load()), node)

    def visit(self, node: ast.AST) -> ast.AST:
        if not isinstance(node, ast.expr) or not self._needs_sample(node):
            return node
        if isinstance(node, (ast.Compare, ast.BoolOp, ast.UnaryOp, ast.BinOp, ast.Tuple, ast.List)):
            return self.generic_visit(node)
        if isinstance(node, ast.Call) and ast.unparse(node.func) in _PASSTHROUGH and not self._needs_sample(node.func):
            node.args = [self.visit(a) for a in node.args]
            for kw in node.keywords:
                kw.value = self.visit(kw.value)
            return node
        return self._leaf(node)


def _trusted_names() -> frozenset[str]:
    return frozenset(dir(builtins)) | frozenset(_CHECK_MODULES)


def plan_asserts(tests: list[str], shadowed: tuple[str, ...] | list[str] = ()) -> list[tuple[list[str], str]]:
    """Each test (``assert <expr>``) as (leaf expressions for the sandbox, check expression).

    ``shadowed``: builtin (or checker-module) names the sample's program defines itself (MBPP/126's
    solution is a function called ``sum``); in a test they name the sample's objects, as when the
    test runs in the program's globals, so they are evaluated in the sandbox like its other names."""
    trusted = _trusted_names() - set(shadowed)
    out = []
    for test in tests:
        tree = ast.parse(test)
        if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
            raise ValueError(f"not a single assert statement: {test[:80]!r}")
        split = _Leaves(trusted)
        expr = split.visit(tree.body[0].test)
        out.append((split.leaves, ast.unparse(ast.fix_missing_locations(expr))))
    return out


def shadowed_names(glb: dict) -> list[str]:
    """The builtin and checker-module names a program's globals rebind (a module imported under its
    own name is not a rebinding)."""
    modules = sys.modules
    return sorted(
        n
        for n in _trusted_names()
        if n in glb and not n.startswith("__") and not (n in _CHECK_MODULES and glb[n] is modules.get(n))
    )


def run_assert_leaves(code: str, setup: str, tests: list[str], time_limit: float, sem: dict) -> dict:
    """In the sandboxed child (original MBPP): the solution, the setup code, then each test's
    leaf expressions (:func:`plan_asserts`, with the builtin names the program rebinds), their values
    pickled at once; :func:`check_asserts` compares them. Returns ``{"outputs", "stop", "shadowed"}``."""
    dumps, proto = pickle.dumps, pickle.HIGHEST_PROTOCOL
    timer = _Timer(sem.get("clock", "cpu"))
    if sem.get("guard", True):
        reliability_guard()
    glb: dict = {"__name__": "__main__"}
    outs: list[list[bytes]] = []
    shadowed: list[str] = []
    t = -1
    try:
        timer.start(time_limit)
        try:
            with swallow_io():
                exec(code, glb)
                if setup:
                    exec(setup, glb)
                shadowed = shadowed_names(glb)
                plan = plan_asserts(tests, shadowed)
                for leaves, _check in plan:
                    outs.append([dumps(to_plain(eval(compile(e, "<test>", "eval"), glb)), proto) for e in leaves])
        finally:
            timer.stop()
    except TimeLimitExceeded:
        return {
            "outputs": outs,
            "stop": ["timeout", max(t, 0), f"time limit {time_limit:.3g}s ({sem.get('clock', 'cpu')} time)"],
            "shadowed": shadowed,
        }
    except UntrustedOutput as exc:
        return {"outputs": outs, "stop": ["fail", max(t, 0), str(exc)], "shadowed": shadowed}
    except BaseException as exc:
        return {"outputs": outs, "stop": ["fail", max(t, 0), f"{type(exc).__name__}"], "shadowed": shadowed}
    return {"outputs": outs, "stop": None, "shadowed": shadowed}


def check_asserts(result: dict, tests: list[str] | tuple[str, ...], plan_of=None) -> dict:
    """In the scoring process: each test's check expression on the leaf values the child sent.

    The plan is rebuilt here from the tests and the names the child says its program rebinds (a
    claim that only moves more of each expression into the sandbox: the comparison stays here)."""
    from evolcoder.sandbox.values import UnsafeResult, safe_loads

    outs, stop, shadowed = result.get("outputs"), result.get("stop"), result.get("shadowed", [])
    names = _trusted_names()
    if (
        not isinstance(outs, list)
        or not (stop is None or (isinstance(stop, list) and len(stop) == 3))
        or not isinstance(shadowed, list)
        or not all(type(n) is str and n in names for n in shadowed)
    ):
        return {"status": FAIL, "done": 0, "failed": 0, "reason": "malformed result"}
    plan = (plan_of or plan_asserts)(tuple(tests), tuple(sorted(set(shadowed))))
    base_ns = _check_namespace()
    for t, blobs in enumerate(outs):
        if t >= len(plan) or not isinstance(blobs, list) or len(blobs) != len(plan[t][0]):
            return {"status": FAIL, "done": t, "failed": t, "reason": "malformed result"}
        try:
            ns = dict(base_ns)
            for k, blob in enumerate(blobs):
                if not isinstance(blob, bytes):
                    raise UnsafeResult("malformed result")
                ns[f"__leaf{k}__"] = safe_loads(blob)
            ok = eval(plan[t][1], ns)
            if not isinstance(ok, (bool, int)) and type(ok).__module__ != "numpy":
                raise UntrustedOutput(f"untrusted check value {type(ok).__qualname__}")
            passed = bool(ok)
        except UnsafeResult as exc:
            return {"status": FAIL, "done": t, "failed": t, "reason": str(exc)}
        except BaseException as exc:
            return {"status": FAIL, "done": t, "failed": t, "reason": f"check: {type(exc).__name__}"}
        if not passed:
            return {"status": FAIL, "done": t, "failed": t, "reason": "AssertionError"}
    n = len(outs)
    if stop is not None:
        kind, reason = stop[0], str(stop[2])[:300]
        if kind == TIMEOUT:
            return {"status": TIMEOUT, "done": n, "failed": n, "reason": reason, "cause": "cpu"}
        return {"status": FAIL, "done": n, "failed": n, "reason": reason}
    if n < len(plan):
        return {"status": FAIL, "done": n, "failed": n, "reason": "incomplete result"}
    return {"status": PASS, "done": n, "failed": None, "reason": ""}


# ----------------------------------------------------------------------------- DS-1000


def run_ds1000(code_context: str, solution: str, time_limit: float, sem: dict) -> dict:
    """DS-1000's official check: ``code_context`` + ``test_execution(solution)`` (+ ``test_string``)."""
    timer = _Timer(sem.get("clock", "wall"))
    program = (
        code_context
        + "\n"
        + f"code = {solution!r}\n"
        + "test_execution(code)\n"
        + ("test_string(code)\n" if "test_string(" in code_context else "")
    )
    glb: dict = {"__name__": "__main__"}
    try:
        timer.start(time_limit)
        try:
            with swallow_io():
                exec(program, glb)
        finally:
            timer.stop()
    except TimeLimitExceeded:
        return {"status": TIMEOUT, "done": 0, "failed": 0, "reason": f"time limit {time_limit:.3g}s"}
    except BaseException as exc:
        return {"status": FAIL, "done": 0, "failed": 0, "reason": f"{type(exc).__name__}: {str(exc)[:200]}"}
    return {"status": PASS, "done": 1, "failed": None, "reason": ""}


# ----------------------------------------------------------------------------- reference (trusted)


def run_reference(
    code: str, entry_point: str, input_groups: dict[str, list], repeats: int, output_not_none: bool
) -> dict:
    """Expected outputs and per-input CPU times of the canonical solution (trusted code).

    Each input is timed ``repeats`` times (on a deep copy) and the minimum CPU time is kept, so a
    busy machine inflates the reference less.
    """
    import copy
    import time

    glb: dict = {}
    with swallow_io():
        exec(code, glb)
    fn = glb[entry_point]
    out: dict = {}
    clock = time.process_time
    for name, inputs in input_groups.items():
        results, times = [], []
        for inp in inputs:
            best = math.inf
            for _ in range(max(1, repeats)):
                args = copy.deepcopy(inp)
                with swallow_io():
                    t0 = clock()
                    ret = fn(*args)
                    best = min(best, clock() - t0)
            results.append((ret is not None) if output_not_none else ret)
            times.append(best)
        out[name] = results
        out[name + "_time"] = times
    return out
