"""The worker protocol: each message is an 8-byte little-endian length and a pickle."""

from __future__ import annotations

import os
import pickle
from typing import Any, BinaryIO

_HEADER = 8


def write_message(fh: BinaryIO, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    fh.write(len(data).to_bytes(_HEADER, "little") + data)
    fh.flush()


def _read_exact(fd: int, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        block = os.read(fd, n - len(buf))
        if not block:
            return None
        buf += block
    return bytes(buf)


def read_message(fd: int) -> Any:
    head = _read_exact(fd, _HEADER)
    if head is None:
        raise EOFError
    body = _read_exact(fd, int.from_bytes(head, "little"))
    if body is None:
        raise EOFError
    return pickle.loads(body)
