"""The sandbox's worker processes: fresh interpreters that fork one sandboxed child per job.

Every scoring job runs on a worker started here (``<python> -m evolcoder.sandbox.worker SLOT
PREIMPORT_JSON ISOLATE_NETWORK HIDE_JSON``), never on a process forked from the scorer, for two reasons:

- **Nothing to steal.** A worker is a fresh process with an allow-listed environment
  (:func:`child_env`): the caller's variables (API keys) and the scorer's memory (the expected
  outputs, which stay in the scoring process, see :mod:`evolcoder.benchmarks.harness`) are not in
  it, so a sandboxed child forked from it cannot find them, whatever it reads of its own memory.
- **Another interpreter.** DS-1000's programs must run against the benchmark's own library
  versions (numpy 1.26, pandas 1.5, ...; ``envs/ds1000.txt``), which cannot share an environment
  with the rest of evolcoder. ``PYTHONPATH`` carries only evolcoder's own source (the worker side
  needs the standard library and nothing else), so every third-party import resolves in the
  execution environment. :mod:`multiprocessing` cannot do this: its spawned children inherit the
  parent's ``sys.path`` and environment.

Protocol, over the worker's stdin and a dedicated copy of its stdout (stray prints of libraries
go to stderr): each message is an 8-byte little-endian length and a pickle. The worker first
sends a hello (its interpreter, library versions and isolation), then answers each
``(index, limits, pickled job)`` with ``(index, JobResult)``. Each job runs in its own sandboxed child
(:func:`evolcoder.sandbox.child.run_job`), which cannot write to these pipes (its descriptors are
closed); a worker that dies loses only the job in flight, which scores as a crash, and is replaced.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import selectors
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

from evolcoder.errors import EvolcoderError
from evolcoder.sandbox.jobs import JobResult
from evolcoder.sandbox.probe import child_env
from evolcoder.sandbox.protocol import read_message, write_message

log = logging.getLogger(__name__)


def default_hidden() -> list[str]:
    """What a sandboxed program must not read: the project tree (the working directory) and $HOME."""
    return [os.getcwd(), os.path.expanduser("~")]


class _Worker:
    def __init__(self, python: str, slot: int, preimport: Sequence[str], isolate_network: bool, hide: Sequence[str]):
        env = child_env()
        self.slot = slot
        # the worker's stderr lives as long as the worker: closed in close()
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                [
                    python,
                    "-m",
                    "evolcoder.sandbox.worker",
                    str(slot),
                    json.dumps(list(preimport)),
                    "1" if isolate_network else "0",
                    json.dumps(list(hide)),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self.stderr,
                env=env,
            )
        except OSError as exc:
            raise EvolcoderError(f"execution interpreter {python!r} cannot be started: {exc}") from None
        self.fd = self.proc.stdout.fileno()
        self.busy: tuple[int, Any] | None = None
        self.hello: dict | None = None

    def send(self, index: int, job: Any) -> None:
        self.busy = (index, job)
        # the job pickled on its own: a bubblewrap worker passes these bytes to the job unread
        write_message(self.proc.stdin, (index, job.limits, pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)))

    def stderr_tail(self) -> str:
        self.stderr.seek(0)
        lines = self.stderr.read().decode(errors="replace").strip().splitlines()
        return lines[-1][:300] if lines else ""

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


def run_jobs(
    jobs: Sequence[Any],
    python: str | None = None,
    workers: int = 1,
    preimport: Sequence[str] = (),
    isolate_network: bool = False,
    progress: Callable[[int, int], None] | None = None,
    env_info: dict | None = None,
    hide: Sequence[str] | None = None,
) -> list:
    """Run sandbox jobs on ``workers`` worker processes under ``python`` (default: this interpreter);
    one :class:`~evolcoder.sandbox.jobs.JobResult` per job, in job order.

    Workers are fresh processes with an allow-listed environment: neither the caller's variables
    nor the scorer's memory (expected outputs) are in them, so a sandboxed child forked from a
    worker finds neither. ``env_info`` (a dict) receives the first worker's hello: interpreter,
    library versions, pre-imports and isolation (see :func:`evolcoder.sandbox.isolation.describe_isolation`).
    """
    if not jobs:
        return []
    python = python or sys.executable
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        raise EvolcoderError(f"execution interpreter not found or not executable: {python}")
    hide = default_hidden() if hide is None else list(hide)
    n = max(1, min(int(workers), len(jobs)))
    results: list = [None] * len(jobs)
    todo = list(range(len(jobs)))[::-1]
    sel = selectors.DefaultSelector()
    pool: list[_Worker] = []
    done = 0

    def start(slot: int) -> _Worker:
        w = _Worker(python, slot, preimport, isolate_network, hide)
        try:
            w.hello = read_message(w.fd)
        except (EOFError, pickle.UnpicklingError) as exc:
            tail = w.stderr_tail()
            w.close()
            raise EvolcoderError(
                f"execution interpreter {python} failed to start a worker"
                f"{': ' + tail if tail else f' ({type(exc).__name__})'}"
            ) from None
        if env_info is not None and not env_info:
            env_info.update(w.hello)
        sel.register(w.fd, selectors.EVENT_READ, w)
        return w

    def feed(w: _Worker) -> None:
        if todo:
            i = todo.pop()
            w.send(i, jobs[i])

    try:
        for slot in range(n):
            pool.append(start(slot))
            feed(pool[-1])
        while done < len(jobs):
            for key, _ in sel.select():
                w: _Worker = key.data
                try:
                    index, res = read_message(w.fd)
                except (EOFError, pickle.UnpicklingError):
                    # the worker died (OOM killer, a crash outside the sandboxed child): its job
                    # in flight scores as a crash; a fresh worker takes the slot
                    index, _job = w.busy
                    tail = w.stderr_tail()
                    res = JobResult("crash", None, f"worker died{': ' + tail if tail else ''}")
                    sel.unregister(w.fd)
                    w.close()
                    pool[pool.index(w)] = w = start(w.slot)
                results[index] = res
                w.busy = None
                done += 1
                if progress:
                    progress(done, len(jobs))
                feed(w)
    finally:
        for w in pool:
            with contextlib.suppress(KeyError, ValueError):
                sel.unregister(w.fd)
            w.close()
        sel.close()
    return results
