"""Batch mode (``evolution.backend.mode: batch``): each phase of a round as Batch API jobs.

The round's items run as in sync mode, but a request goes into a queue instead of over the wire.
When the queue stops growing (every item waits on a response: all evolve requests, later all judge
requests, then all answer requests), the queued requests are sent as Batch API jobs, one purpose per
job and at most ``batch_max_requests`` lines and ``batch_max_bytes`` bytes per input file: the JSONL
is uploaded (``files.create``, purpose ``batch``), the job created (``batches.create``), polled with a
growing interval, and its output and error files downloaded (``files.content``).

Resumable: the journal ``<cache-dir>/batches/<model>.jsonl`` records each input file and then each job
(with its requests' cache keys) *before* waiting on it, fsync'ed. A killed or restarted round, whose
completed requests are cache hits, finds its other requests in the journal's open jobs and re-attaches
to them instead of submitting again (a file uploaded just before a kill is matched to its job through
``batches.list``). Lines that failed, and the requests of an expired or cancelled job that it did not
finish, go through the synchronous path. Requests, bodies and cache keys are those of sync mode, so
switching modes reuses every completed request; the ledger prices batch answers at the batch price.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import random
import time
from pathlib import Path
from typing import Any

from evolcoder.errors import BackendError
from evolcoder.evolve.backends import (
    RETRYABLE_STATUS,
    BackendSettings,
    Completion,
    OpenAIBackend,
    Request,
    RequestRejected,
    _parse_chat_completion,
    _short,
    backoff_delay,
)
from evolcoder.evolve.cache import model_slug

log = logging.getLogger(__name__)

ENDPOINT = "/v1/chat/completions"
TERMINAL = ("completed", "failed", "expired", "cancelled")
QUIET_S = 0.3  # the queue is complete when no request joined it for this long


class _Gone(BackendError):
    """HTTP 404 for a journaled job or file (deleted, or another account's)."""


class Journal:
    """Append-only, fsync'ed JSONL of uploaded files, created jobs and closed jobs."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        out = []
        for raw in self.path.read_bytes().split(b"\n"):
            if raw.strip():
                with contextlib.suppress(json.JSONDecodeError, UnicodeDecodeError):
                    out.append(json.loads(raw))  # a torn last line (kill mid-write) is skipped
        return out

    def append(self, entry: dict) -> None:
        entry = {**entry, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        data = b"\n" + json.dumps(entry).encode() + b"\n"  # leading newline: never glued to a torn line
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def open_jobs(self) -> tuple[dict[str, dict], dict[str, dict]]:
        """-> ({batch_id: created entry} not closed, {file_id: uploaded entry} without a job)."""
        created: dict[str, dict] = {}
        uploaded: dict[str, dict] = {}
        closed: set[str] = set()
        for e in self.read():
            if e.get("event") == "uploaded":
                uploaded[e["file_id"]] = e
            elif e.get("event") == "created":
                created[e["batch_id"]] = e
                uploaded.pop(e.get("file_id"), None)
            elif e.get("event") == "closed":
                closed.add(e["batch_id"])
        return {b: e for b, e in created.items() if b not in closed}, uploaded


class BatchBackend:
    """The openai backend's requests as Batch API jobs (see the module doc)."""

    kind = "openai"
    queued = True  # a request waits for its phase's batch job (the budget does not wait for room)

    def __init__(self, s: BackendSettings, cache_dir: str | os.PathLike):
        self.s = s
        self.sync = OpenAIBackend(s)
        self.client = self.sync.client
        self.model = s.model
        self.journal = Journal(Path(cache_dir) / "batches" / f"{model_slug(s.model)}.jsonl")
        self._queue: dict[str, tuple[Request, list[asyncio.Future]]] = {}
        self._worker: asyncio.Task | None = None
        self._sync_sem = asyncio.Semaphore(s.concurrency)
        self.stats = {"batches_created": 0, "batches_attached": 0, "batch_requests": 0, "sync_fallback": 0}

    # ------------------------------------------------------------ queue

    async def complete(self, req: Request, key: str, on_attempt) -> Completion:
        on_attempt(False)
        fut = asyncio.get_running_loop().create_future()
        if key in self._queue:  # two items asking the very same request share its answer
            self._queue[key][1].append(fut)
        else:
            self._queue[key] = (req, [fut])
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work())
        return await fut

    async def _work(self) -> None:
        while self._queue:
            n = -1
            while n != len(self._queue):  # wait until every item that will ask has asked
                n = len(self._queue)
                await asyncio.sleep(QUIET_S)
            phase, self._queue = self._queue, {}
            try:
                await self._run_phase(phase)
            except BaseException as exc:
                err = exc if isinstance(exc, Exception) else BackendError(f"batch mode: {exc!r}")
                for _, futs in phase.values():
                    for f in futs:
                        if not f.done():
                            f.set_exception(err)
                if not isinstance(exc, Exception):
                    raise

    @staticmethod
    def _deliver(futs: list[asyncio.Future], comp: Completion | None = None, exc: Exception | None = None) -> None:
        for f in futs:
            if not f.done():
                f.set_exception(exc) if exc is not None else f.set_result(comp)

    # ------------------------------------------------------------ one phase

    async def _run_phase(self, phase: dict[str, tuple[Request, list[asyncio.Future]]]) -> None:
        open_jobs, uploaded = self.journal.open_jobs()
        jobs: list[tuple[str, list[str]]] = []  # (batch id, keys)
        todo = set(phase)
        for bid, e in open_jobs.items():
            keys = [k for k in e["keys"] if k in todo]
            if keys:
                jobs.append((bid, keys))
                todo -= set(keys)
                self.stats["batches_attached"] += 1
                log.info("batch mode: re-attaching to %s (%d of its requests still needed)", bid, len(keys))
        by_purpose: dict[str, list[str]] = {}
        for k in sorted(todo):
            by_purpose.setdefault(phase[k][0].purpose, []).append(k)
        for purpose, keys in sorted(by_purpose.items()):
            for chunk, lines in self._chunks(keys, phase):
                jobs.append((await self._submit(purpose, chunk, lines, uploaded), chunk))
        await asyncio.gather(*(self._finish(bid, keys, phase) for bid, keys in jobs))

    def _chunks(self, keys: list[str], phase) -> list[tuple[list[str], bytes]]:
        out: list[tuple[list[str], bytes]] = []
        cur: list[str] = []
        buf: list[bytes] = []
        size = 0
        for k in keys:
            line = (
                json.dumps(
                    {"custom_id": k, "method": "POST", "url": ENDPOINT, "body": self.sync.body(phase[k][0])},
                    ensure_ascii=False,
                ).encode()
                + b"\n"
            )
            if cur and (len(cur) >= self.s.batch_max_requests or size + len(line) > self.s.batch_max_bytes):
                out.append((cur, b"".join(buf)))
                cur, buf, size = [], [], 0
            cur.append(k)
            buf.append(line)
            size += len(line)
        if cur:
            out.append((cur, b"".join(buf)))
        return out

    async def _submit(self, purpose: str, keys: list[str], data: bytes, uploaded: dict[str, dict]) -> str:
        sha = hashlib.sha256(data).hexdigest()
        # a file uploaded just before a kill: its job may exist (created, not yet journaled)
        for fid, e in uploaded.items():
            if e.get("sha") == sha:
                bid = await self._job_of_file(fid)
                if bid is None:
                    bid = await self._create(fid)
                self.journal.append(
                    {"event": "created", "batch_id": bid, "file_id": fid, "purpose": purpose, "keys": keys}
                )
                return bid
        f = await self._call(
            "files.create",
            lambda: self.client.files.create(file=(f"evolcoder-{purpose}-{sha[:12]}.jsonl", data), purpose="batch"),
        )
        self.journal.append({"event": "uploaded", "file_id": f.id, "sha": sha, "purpose": purpose, "keys": keys})
        bid = await self._create(f.id)
        self.journal.append({"event": "created", "batch_id": bid, "file_id": f.id, "purpose": purpose, "keys": keys})
        log.info("batch mode: %s: %d %s request(s) (%.1f MB)", bid, len(keys), purpose, len(data) / 1e6)
        return bid

    async def _create(self, file_id: str) -> str:
        b = await self._call(
            "batches.create",
            lambda: self.client.batches.create(
                input_file_id=file_id,
                endpoint=ENDPOINT,
                completion_window=self.s.batch_completion_window,
                metadata={"evolcoder_model": self.model[:500]},
            ),
        )
        self.stats["batches_created"] += 1
        return b.id

    async def _job_of_file(self, file_id: str) -> str | None:
        page = await self._call("batches.list", lambda: self.client.batches.list(limit=100))
        for b in getattr(page, "data", []) or []:
            if b.input_file_id == file_id:
                return b.id
        return None

    async def _finish(self, bid: str, keys: list[str], phase) -> None:
        try:
            b = await self._poll(bid)
        except _Gone:
            log.warning("batch mode: %s is gone (HTTP 404); sending its %d request(s) synchronously", bid, len(keys))
            await asyncio.gather(*(self._fallback(k, phase) for k in keys))
            self.journal.append({"event": "closed", "batch_id": bid, "status": "gone"})
            return
        results: dict[str, Completion] = {}
        errors: dict[str, str] = {}
        for fid in (b.output_file_id, b.error_file_id):
            if fid:
                text = await self._call("files.content", lambda fid=fid: self._content(fid))
                self._parse_lines(text, results, errors)
        self.stats["batch_requests"] += len(results)
        if b.status == "failed" and not results:
            msg = "; ".join(getattr(e, "message", str(e)) for e in (getattr(b.errors, "data", None) or []))[:300]
            self.journal.append({"event": "closed", "batch_id": bid, "status": b.status})
            raise BackendError(f"batch mode: batch {bid} failed: {msg or 'no reason given'}")
        missing = [k for k in keys if k not in results]
        if missing:
            log.warning(
                "batch mode: %s ended %s with %d of %d request(s) unanswered (%s); sending them synchronously",
                bid,
                b.status,
                len(missing),
                len(keys),
                next(iter(errors.values()), "no output line"),
            )
        for k in keys:
            if k in results:
                self._deliver(phase[k][1], results[k])
        await asyncio.gather(*(self._fallback(k, phase) for k in missing))
        self.journal.append({"event": "closed", "batch_id": bid, "status": b.status})

    async def _content(self, file_id: str) -> str:
        resp = await self.client.files.content(file_id)
        return resp.text

    def _parse_lines(self, text: str, results: dict[str, Completion], errors: dict[str, str]) -> None:
        for raw in text.splitlines():
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
                key = line["custom_id"]
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
            resp = line.get("response") or {}
            if line.get("error") or resp.get("status_code") != 200:
                err = line.get("error") or (resp.get("body") or {}).get("error") or {}
                errors[key] = f"HTTP {resp.get('status_code')}: {str(err.get('message', err))[:120]}"
                continue
            try:
                comp = _parse_chat_completion(resp.get("body"), key)
            except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
                errors[key] = f"malformed output line ({exc})"
                continue
            comp.batch = True
            results[key] = comp

    async def _fallback(self, key: str, phase) -> None:
        req, futs = phase[key]
        self.stats["sync_fallback"] += 1
        async with self._sync_sem:
            try:
                comp = await self.sync.complete(req, key, lambda retry: None)
            except (RequestRejected, BackendError) as exc:
                self._deliver(futs, exc=exc)
                return
        self._deliver(futs, comp)

    async def _poll(self, bid: str):
        delay = self.s.batch_poll_s
        last = None
        while True:
            b = await self._call("batches.retrieve", lambda: self.client.batches.retrieve(bid))
            counts = getattr(b, "request_counts", None)
            state = (b.status, getattr(counts, "completed", None), getattr(counts, "failed", None))
            if state != last:
                log.info("batch mode: %s %s (completed %s, failed %s)", bid, *state)
                last = state
            if b.status in TERMINAL:
                return b
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, self.s.batch_poll_max_s)

    async def _call(self, what: str, fn) -> Any:
        """An API call, retried on connection errors, timeouts and 408/429/5xx (a restarting server)."""
        openai = self.sync._openai
        rng = random.Random()
        attempt = 0
        while True:
            try:
                return await fn()
            except (openai.APITimeoutError, openai.APIConnectionError) as exc:
                why = type(exc).__name__
            except openai.APIStatusError as exc:
                if exc.status_code == 404:
                    raise _Gone(f"batch mode: {what}: HTTP 404") from None
                if exc.status_code not in RETRYABLE_STATUS:
                    raise BackendError(
                        f"batch mode: {what}: HTTP {exc.status_code}: {_short(exc, secret=self.sync._secret)}"
                    ) from None
                why = f"HTTP {exc.status_code}"
            if attempt >= self.s.max_retries:
                raise BackendError(
                    f"batch mode: {what}: {why} after {attempt + 1} attempts; the jobs are journaled in "
                    f"{self.journal.path}, rerun to re-attach"
                )
            delay = backoff_delay(attempt, self.s.backoff_base_s, self.s.backoff_max_s, rng)
            log.info("batch mode: %s: %s, retrying in %.1fs", what, why, delay)
            await asyncio.sleep(delay)
            attempt += 1

    async def aclose(self) -> None:
        await self.sync.aclose()
