"""Inside a job's bubblewrap sandbox (:mod:`evolcoder.sandbox.bwrap`): a fresh interpreter reads
its job from fd 3, runs it and writes the result to fd 4 (8-byte length + pickle), then exits;
when it exits its PID namespace dies with everything the sample started."""

from __future__ import annotations

import os
import pickle
import site
import sys
import tempfile

JOB_FD, RESULT_FD = 3, 4


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        block = os.read(fd, 1 << 20)
        if not block:
            return b"".join(chunks)
        chunks.append(block)


def main() -> None:
    write, exit_ = os.write, os._exit
    dumps, proto = pickle.dumps, pickle.HIGHEST_PROTOCOL
    try:
        for d in filter(None, os.environ.pop("EVOLCODER_SITE_DIRS", "").split(":")):
            site.addsitedir(d)
        data = _read_all(JOB_FD)
        os.close(JOB_FD)
        tempfile.tempdir = os.getcwd()
        job = pickle.loads(data)
        del data
        result = job.fn(*job.args)
        out = dumps(result, proto)
    except BaseException as exc:  # the harness itself failed (bad input, MemoryError, ...)
        try:
            out = dumps({"harness_error": f"{type(exc).__name__}: {exc}"[:500]}, proto)
        except BaseException:
            exit_(3)
    try:
        view = memoryview(len(out).to_bytes(8, "little") + out)
        while view:
            n = write(RESULT_FD, view)
            view = view[n:]
    finally:
        exit_(0)


if __name__ == "__main__":
    sys.argv[:] = sys.argv[:1]
    main()
