"""The worker side: ``<python> -m evolcoder.sandbox.worker SLOT PREIMPORT_JSON ISOLATE_NETWORK HIDE_JSON``.

A fresh interpreter (possibly another environment's, e.g. DS-1000's pins) that sets up its isolation,
pre-imports the heavy libraries, sends a hello and then answers each ``(index, limits, pickled job)`` with
``(index, JobResult)``, running every job in its own sandboxed child (:mod:`evolcoder.sandbox.child`).
Only the standard library and this package are imported (see :mod:`evolcoder.sandbox.pool`).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence

from evolcoder.sandbox.child import init_worker, run_job, shutdown
from evolcoder.sandbox.isolation import describe_isolation
from evolcoder.sandbox.jobs import Job
from evolcoder.sandbox.probe import describe_interpreter
from evolcoder.sandbox.protocol import read_message, write_message


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    slot, preimport, isolate = int(args[0]), json.loads(args[1]), args[2] == "1"
    hide = json.loads(args[3]) if len(args) > 3 else []
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # library chatter (TensorFlow, warnings) must not corrupt the protocol
    iso = init_worker(slot, preimport, isolate, hide)
    hello = describe_interpreter(preimport, imported=not iso.bwrap)
    found = {m for m, v in hello["versions"].items() if v is not None}
    hello["preimported"] = [m for m in preimport if (m.split(".")[0] in found if iso.bwrap else m in sys.modules)]
    hello["isolation"] = describe_isolation(iso)
    write_message(out, hello)
    fd = sys.stdin.fileno()
    while True:
        try:
            index, limits, blob = read_message(fd)
        except EOFError:
            break
        write_message(out, (index, run_job(Job(None, (), limits), slot=slot, payload=blob)))
    shutdown()


if __name__ == "__main__":
    main()
