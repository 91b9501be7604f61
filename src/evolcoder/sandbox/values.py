"""What crosses back from a sandboxed child: plain values only (:func:`safe_loads`)."""

from __future__ import annotations

import io
import os
import pickle
from typing import Any

# Globals a result pickle may name: constructors of plain values, nothing that runs code.
_SAFE_GLOBALS = (
    {
        ("builtins", n)
        for n in (
            "complex",
            "list",
            "dict",
            "set",
            "frozenset",
            "tuple",
            "int",
            "float",
            "str",
            "bytes",
            "bool",
            "bytearray",
            "range",
            "slice",
            "Ellipsis",
            "NotImplemented",
        )
    }
    | {("collections", n) for n in ("OrderedDict", "deque", "Counter", "defaultdict")}
    | {
        ("decimal", "Decimal"),
        ("fractions", "Fraction"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
    }
)


class UnsafeResult(Exception):
    """A child's result names a type outside the plain-value allow-list (or is malformed)."""


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise UnsafeResult(f"untrusted output type {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeResult("persistent ids are not allowed")


def safe_loads(data: bytes) -> Any:
    """Unpickle data written by untrusted code: plain values only, or :class:`UnsafeResult`."""
    try:
        return _SafeUnpickler(io.BytesIO(data)).load()
    except UnsafeResult:
        raise
    except Exception as exc:  # truncated, malformed, or a constructor refusing its arguments
        raise UnsafeResult(f"unreadable result ({type(exc).__name__})") from None


REASON_CHARS = 120


def inert_text(text: object, limit: int = REASON_CHARS) -> str:
    """Text a sample may have chosen (an exception's type name, a harness message), made inert for
    a score file: no value of this process's environment, printable ASCII only, at most ``limit``
    characters."""
    s = str(text)
    for value in sorted({v for v in os.environ.values() if len(v) >= 6}, key=len, reverse=True):
        if value in s:
            s = s.replace(value, "<env>")
    s = "".join(c if " " <= c <= "~" else "?" for c in s)
    return s if len(s) <= limit else s[: limit - 3] + "..."
