"""LLM backends and the cached, bounded-concurrency request runner.

- ``OpenAIBackend``: the ``openai`` package's ``AsyncOpenAI`` against any OpenAI-compatible endpoint
  (OpenAI, vLLM, llama.cpp server, ``transformers serve``). Retries 408/409/429/5xx, timeouts and
  connection errors with exponential backoff and full jitter, honouring ``Retry-After`` /
  ``retry-after-ms``. The API key is read from the environment variable named by ``api_key_env`` and
  never written anywhere.
- ``LocalBackend``: in-process transformers, requests micro-batched (``concurrency`` = batch size),
  greedy or sampled with a torch seed derived from the batch's request keys.
- ``Runner``: cache lookup -> backend call -> cache append (fsync'ed, group-committed) -> result,
  with a ledger of requests, cache hits, retries, tokens and cost.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import logging
import os
import random
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlparse

from evolcoder.config import Settings
from evolcoder.config import default_factory as _default
from evolcoder.errors import BackendError, EvolcoderError
from evolcoder.evolve.cache import ResponseCache, request_key
from evolcoder.evolve.ratelimit import RateLimiter

log = logging.getLogger(__name__)
# the HTTP client logs every request at INFO; the ledger and progress lines say enough
for _name in ("httpx", "httpx2", "openai"):
    logging.getLogger(_name).setLevel(logging.WARNING)

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529}


@dataclass(frozen=True)
class Request:
    messages: list[dict]
    params: dict  # temperature, top_p, max_tokens, seed, ...
    purpose: str = "evolve"  # evolve | answer | judge (ledger bucket; not part of the key)

    def key(self, model: str) -> str:
        return request_key(model, self.messages, self.params)


@dataclass
class Completion:
    text: str
    finish_reason: str | None
    usage: dict  # prompt_tokens, completion_tokens
    key: str
    cached: bool = False
    error: str | None = None  # set when the request failed permanently for this item (e.g. HTTP 400)
    batch: bool = False  # answered by a Batch API job (priced at the batch price)
    waited_s: float = 0.0  # time spent waiting for the endpoint's rate limits


class RequestRejected(Exception):
    """A non-retryable, item-specific failure (HTTP 400/413/422): the item is rejected, the round goes on."""


@dataclass
class BackendSettings(Settings):
    """The evolver LLM (``evolution.backend``; defaults and documentation: the schema)."""

    SECTION: ClassVar[str] = "evolution.backend"

    kind: str = "local"  # required in the config
    model: str = "smollm2-135m-instruct"  # required in the config
    base_url: str | None = None
    api_key_env: str = _default(SECTION, "api_key_env")
    concurrency: int = _default(SECTION, "concurrency")
    max_retries: int = _default(SECTION, "max_retries")
    timeout_s: float = _default(SECTION, "timeout_s")
    backoff_base_s: float = _default(SECTION, "backoff_base_s")
    backoff_max_s: float = _default(SECTION, "backoff_max_s")
    retry_after_max_s: float = _default(SECTION, "retry_after_max_s")
    cost_per_1m_prompt_tokens: float = _default(SECTION, "cost_per_1m_prompt_tokens")
    cost_per_1m_completion_tokens: float = _default(SECTION, "cost_per_1m_completion_tokens")
    mode: str = _default(SECTION, "mode")
    batch_price_factor: float = _default(SECTION, "batch_price_factor")
    batch_max_requests: int = _default(SECTION, "batch_max_requests")
    batch_max_bytes: int = _default(SECTION, "batch_max_bytes")
    batch_completion_window: str = _default(SECTION, "batch_completion_window")
    batch_poll_s: float = _default(SECTION, "batch_poll_s")
    batch_poll_max_s: float = _default(SECTION, "batch_poll_max_s")
    rate_limits: bool = _default(SECTION, "rate_limits")

    def check(self) -> None:
        if self.kind not in ("openai", "local"):
            raise EvolcoderError(f"evolution.backend.kind: {self.kind!r} is not one of openai, local")
        if int(self.concurrency) < 1:
            raise EvolcoderError("evolution.backend.concurrency must be >= 1")
        if int(self.max_retries) < 0:
            raise EvolcoderError("evolution.backend.max_retries must be >= 0")
        if self.mode not in ("sync", "batch"):
            raise EvolcoderError(f"evolution.backend.mode: {self.mode!r} is not one of sync, batch")
        if self.mode == "batch" and self.kind != "openai":
            raise EvolcoderError("evolution.backend.mode: batch needs kind: openai (a Batch API endpoint)")
        self.concurrency, self.max_retries = int(self.concurrency), int(self.max_retries)

    def public(self) -> dict:
        """Settings safe to record (the key's env var name, never its value)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


# ---------------------------------------------------------------- ledger


@dataclass
class Ledger:
    """Requests, tokens and cost of one round, per purpose."""

    model: str
    backend: str
    cost_per_1m_prompt_tokens: float = 0.0
    cost_per_1m_completion_tokens: float = 0.0
    batch_price_factor: float = 0.5
    buckets: dict[str, dict[str, float]] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def _b(self, purpose: str) -> dict[str, float]:
        return self.buckets.setdefault(
            purpose,
            {
                "requests": 0,
                "cache_hits": 0,
                "sent": 0,
                "completed": 0,
                "attempts": 0,
                "retries": 0,
                "failed": 0,
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "latency_s": 0.0,
                "batch_requests": 0,
                "cost_usd": 0.0,
                "rate_limit_wait_s": 0.0,
            },
        )

    def hit(self, purpose: str) -> None:
        b = self._b(purpose)
        b["requests"] += 1
        b["cache_hits"] += 1

    def sent(self, purpose: str) -> None:
        b = self._b(purpose)
        b["requests"] += 1
        b["sent"] += 1

    def attempt(self, purpose: str, retry: bool) -> None:
        b = self._b(purpose)
        b["attempts"] += 1
        if retry:
            b["retries"] += 1

    def done(self, purpose: str, usage: dict, latency: float, batch: bool = False) -> None:
        b = self._b(purpose)
        b["completed"] += 1
        pt, ct = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        b["prompt_tokens"] += pt
        b["completion_tokens"] += ct
        b["latency_s"] += latency
        b["cost_usd"] += self.cost(pt, ct) * (self.batch_price_factor if batch else 1.0)
        if batch:
            b["batch_requests"] += 1

    def waited(self, purpose: str, seconds: float) -> None:
        """Time a request waited for the endpoint's rate limits."""
        self._b(purpose)["rate_limit_wait_s"] += seconds

    def failed(self, purpose: str) -> None:
        self._b(purpose)["failed"] += 1

    def cost(self, prompt_tokens: float, completion_tokens: float) -> float:
        return (
            prompt_tokens * self.cost_per_1m_prompt_tokens + completion_tokens * self.cost_per_1m_completion_tokens
        ) / 1e6

    def to_dict(self) -> dict:
        total: dict[str, float] = {}
        for b in self.buckets.values():
            for k, v in b.items():
                total[k] = total.get(k, 0) + v
        by_purpose = {
            p: {**b, "cost_usd": round(b["cost_usd"], 6), "rate_limit_wait_s": round(b["rate_limit_wait_s"], 3)}
            for p, b in sorted(self.buckets.items())
        }
        wall = time.monotonic() - self.started
        total_cost = total.get("cost_usd", 0.0)
        total["rate_limit_wait_s"] = round(total.get("rate_limit_wait_s", 0.0), 3)
        return {
            "model": self.model,
            "backend": self.backend,
            "price": {
                "per_1m_prompt_tokens": self.cost_per_1m_prompt_tokens,
                "per_1m_completion_tokens": self.cost_per_1m_completion_tokens,
                "batch_price_factor": self.batch_price_factor,
            },
            "total": {**total, "cost_usd": round(total_cost, 6)},
            "by_purpose": by_purpose,
            "wall_s": round(wall, 3),
            "sent_per_s": round(total.get("sent", 0) / wall, 3) if wall > 0 else None,
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        }


# ---------------------------------------------------------------- retry helpers


def retry_after_s(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` / ``Retry-After`` (seconds or an HTTP date), or None."""
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000.0)
    except (TypeError, ValueError):
        pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def backoff_delay(
    attempt: int,
    base: float,
    cap: float,
    rng: random.Random,
    retry_after: float | None = None,
    retry_after_cap: float = 600.0,
) -> float:
    """Exponential backoff with full jitter; a server's Retry-After is a floor (capped)."""
    delay = rng.uniform(0, min(cap, base * (2**attempt)))
    if retry_after is not None:
        delay = max(delay, min(retry_after, retry_after_cap))
    return delay


# ---------------------------------------------------------------- backends


def _is_local_url(url: str | None) -> bool:
    if not url:
        return False
    host = urlparse(url).hostname or ""
    return host in ("localhost", "127.0.0.1", "::1", "0.0.0.0") or host.endswith(".local")


class OpenAIBackend:
    kind = "openai"

    def __init__(self, s: BackendSettings):
        try:
            import openai
        except ImportError:
            raise EvolcoderError("backend openai needs the `openai` package (pip install 'evolcoder[llm]')") from None
        self._openai = openai
        self.s = s
        self.model = s.model
        key = os.environ.get(s.api_key_env or "OPENAI_API_KEY")
        if not key:
            if s.base_url is None:
                raise BackendError(
                    f"backend openai: environment variable {s.api_key_env} is not set "
                    f"(the API key is read only from the environment)"
                )
            if not _is_local_url(s.base_url):
                log.warning(
                    "backend openai: %s is not set; sending requests to %s without a key", s.api_key_env, s.base_url
                )
            key = "EMPTY"
        self._secret = key
        # our own retry loop (Retry-After, jitter, ledger), so the client's retries are off
        self.client = openai.AsyncOpenAI(api_key=key, base_url=s.base_url, timeout=s.timeout_s, max_retries=0)
        # the raw response (its x-ratelimit headers) needs the client's HTTP library: openai 3.x exposes it
        # as openai._httpx (httpx2); without it the response is parsed JSON only and nothing is paced
        http = getattr(openai, "_httpx", None)
        self._raw_cls = getattr(http, "Response", None)
        self.limiter = RateLimiter() if s.rate_limits and self._raw_cls is not None else None

    def body(self, req: Request) -> dict:
        """The chat completion request body (the same in a Batch API input line)."""
        params = dict(req.params)
        extra = params.pop("extra_body", None) or {}  # endpoint-specific fields (vLLM's top_k, ...)
        return {"model": self.model, "messages": req.messages, **params, **extra}

    async def complete(self, req: Request, key: str, on_attempt) -> Completion:
        openai = self._openai
        body = self.body(req)
        rng = random.Random(int(key[:8], 16))
        attempt = 0
        waited = 0.0
        # what the endpoint counts against its token limit: the prompt (~4 characters a token) + max_tokens
        tokens = sum(len(str(m.get("content") or "")) for m in req.messages) / 4 + (req.params.get("max_tokens") or 0)
        while True:
            if self.limiter is not None:
                waited += await self.limiter.acquire(tokens)
            on_attempt(attempt > 0)
            try:
                # the client's generic POST: same auth, base URL, timeouts and typed errors as
                # chat.completions.create, without its per-call param transform and pydantic parse,
                # which cost ~2 ms of CPU a request (the bottleneck at high concurrency)
                if self._raw_cls is None:
                    resp = await self.client.post("/chat/completions", cast_to=object, body=body)
                else:
                    raw = await self.client.post("/chat/completions", cast_to=self._raw_cls, body=body)
                    if self.limiter is not None:
                        self.limiter.update(raw.headers)
                    resp = raw.json()
            except (openai.APITimeoutError, openai.APIConnectionError) as exc:
                why, ra = type(exc).__name__, None
                if self.limiter is not None:
                    self.limiter.update(None)  # no headers: the first request's waiters go on
            except openai.APIStatusError as exc:
                status = exc.status_code
                headers = getattr(exc.response, "headers", None)
                if self.limiter is not None:
                    self.limiter.update(headers)
                if status in RETRYABLE_STATUS:
                    why, ra = f"HTTP {status}", retry_after_s(headers)
                    if status == 429 and self.limiter is not None:
                        self.limiter.throttled(ra)
                elif status in (400, 413, 422):
                    raise RequestRejected(f"HTTP {status}: {_short(exc, secret=self._secret)}") from None
                else:
                    raise BackendError(
                        f"backend openai ({self.s.base_url or 'api.openai.com'}): HTTP {status}: "
                        f"{_short(exc, secret=self._secret)}"
                    ) from None
            except ValueError as exc:  # the body is not JSON
                why, ra = f"malformed response ({exc})", None
            else:
                try:
                    comp = _parse_chat_completion(resp, key)
                    comp.waited_s = waited
                    return comp
                except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
                    why, ra = f"malformed response ({type(exc).__name__}: {exc})", None
            if attempt >= self.s.max_retries:
                raise BackendError(
                    f"backend openai ({self.s.base_url or 'api.openai.com'}): {why} after "
                    f"{attempt + 1} attempts; completed requests are cached, rerun to resume"
                )
            delay = backoff_delay(
                attempt, self.s.backoff_base_s, self.s.backoff_max_s, rng, ra, self.s.retry_after_max_s
            )
            log.info(
                "retrying a request after %s in %.1fs (attempt %d/%d)", why, delay, attempt + 1, self.s.max_retries
            )
            await asyncio.sleep(delay)
            if why == "HTTP 429":
                waited += delay
            attempt += 1

    async def aclose(self) -> None:
        await self.client.close()


def _parse_chat_completion(resp: Any, key: str) -> Completion:
    """An OpenAI chat.completion JSON object -> Completion."""
    if not isinstance(resp, dict):
        raise TypeError(f"expected a JSON object, got {type(resp).__name__}")
    if "error" in resp and not resp.get("choices"):
        raise ValueError(str(resp["error"])[:200])
    choices = resp.get("choices") or []
    choice = choices[0] if choices else {}
    message = choice.get("message") or {}
    text = message.get("content") or ""
    if not isinstance(text, str):  # content parts
        text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
    usage = resp.get("usage") or {}
    return Completion(
        text=text,
        finish_reason=choice.get("finish_reason"),
        key=key,
        usage={
            "prompt_tokens": int(usage.get("prompt_tokens") or 0),
            "completion_tokens": int(usage.get("completion_tokens") or 0),
        },
    )


_KEYLIKE = re.compile(r"\b(sk|rk|pk)-[A-Za-z0-9_\-*]{6,}")


def redact(text: str, secret: str | None = None) -> str:
    """Remove an API key (and anything shaped like one, e.g. OpenAI's masked echo) from a message."""
    if secret and len(secret) >= 4:
        text = text.replace(secret, "***")
    return _KEYLIKE.sub(lambda m: m.group(1) + "-***", text)


def _short(exc: Exception, n: int = 200, secret: str | None = None) -> str:
    msg = getattr(exc, "message", None) or str(exc)
    msg = redact(" ".join(str(msg).split()), secret)
    return msg[:n]


def _batch_params(p: dict) -> dict:
    return {k: v for k, v in p.items() if k != "seed"}


class LocalBackend:
    """In-process transformers; requests are micro-batched up to ``concurrency`` per ``generate``."""

    kind = "local"

    def __init__(self, s: BackendSettings):
        import torch

        from evolcoder.models import load_for_generation

        self.s = s
        self.model = s.model
        self.torch = torch
        self.tok, self.lm, self.device = load_for_generation(s.model)
        self._queue: list[tuple[Request, str, asyncio.Future]] = []
        self._worker: asyncio.Task | None = None
        self.tokens, self.seconds = 0, 0.0  # generated so far (the batch log lines' tokens/s)

    async def complete(self, req: Request, key: str, on_attempt) -> Completion:
        on_attempt(False)
        fut = asyncio.get_running_loop().create_future()
        self._queue.append((req, key, fut))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work())
        return await fut

    async def _linger(self, max_s: float = 0.25) -> None:
        """Wait briefly while requests keep arriving, so batches fill up (items reach their answer
        stage a few ms apart, after their cache fsync)."""
        t_end = time.monotonic() + max_s
        while len(self._queue) < self.s.concurrency and time.monotonic() < t_end:
            n = len(self._queue)
            await asyncio.sleep(0.02)
            if len(self._queue) == n:
                break

    async def _work(self) -> None:
        while self._queue:
            await self._linger()
            # one batch: the oldest request's params, up to `concurrency` requests
            # per-request `seed`s do not split batches: a batch samples under one torch seed derived
            # from its request keys
            params = _batch_params(self._queue[0][0].params)
            batch = [q for q in self._queue if _batch_params(q[0].params) == params][: self.s.concurrency]
            ids = {id(q) for q in batch}
            self._queue = [q for q in self._queue if id(q) not in ids]
            try:
                outs = await asyncio.to_thread(self._generate, [q[0] for q in batch], [q[1] for q in batch])
            except Exception as exc:
                for q in batch:
                    if not q[2].done():
                        q[2].set_exception(BackendError(f"backend local: generation failed: {exc}"))
                continue
            for q, out in zip(batch, outs, strict=True):
                if not q[2].done():
                    q[2].set_result(out)
            await asyncio.sleep(0)

    def _generate(self, reqs: list[Request], keys: list[str]) -> list[Completion]:
        torch = self.torch
        p = reqs[0].params
        texts = [self.tok.apply_chat_template(r.messages, tokenize=False, add_generation_prompt=True) for r in reqs]
        enc = self.tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        temperature = float(p.get("temperature", 0.0) or 0.0)
        gen: dict[str, Any] = {"max_new_tokens": int(p.get("max_tokens", 256)), "pad_token_id": self.tok.pad_token_id}
        if temperature > 0:
            gen.update(do_sample=True, temperature=temperature, top_p=float(p.get("top_p", 1.0)))
            seed = int(hashlib.sha256("".join(keys).encode()).hexdigest()[:8], 16)
            torch.manual_seed(seed)
        else:
            gen.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        t0 = time.monotonic()
        with torch.inference_mode():
            out = self.lm.generate(**enc, **gen)
        dt = time.monotonic() - t0
        n_in = enc["input_ids"].shape[1]
        n_new = int((out[:, n_in:] != self.tok.pad_token_id).sum())
        self.tokens += n_new
        self.seconds += dt
        log.info(
            "local %s batch: %d requests, %d new tokens in %.1f s (%.1f tokens/s; %d tokens so far, %.1f tokens/s)",
            reqs[0].purpose,
            len(reqs),
            n_new,
            dt,
            n_new / max(dt, 1e-9),
            self.tokens,
            self.tokens / max(self.seconds, 1e-9),
        )
        res = []
        eos = {self.tok.eos_token_id, self.tok.pad_token_id}
        for i, key in enumerate(keys):
            new = out[i, n_in:].tolist()
            n_gen = len(new)
            while n_gen and new[n_gen - 1] in eos:
                n_gen -= 1
            finished = n_gen < len(new)
            text = self.tok.decode(new[:n_gen], skip_special_tokens=True)
            res.append(
                Completion(
                    text=text,
                    finish_reason="stop" if finished else "length",
                    key=key,
                    usage={"prompt_tokens": int(enc["attention_mask"][i].sum()), "completion_tokens": n_gen + finished},
                )
            )
        return res

    async def aclose(self) -> None:
        return None


def make_backend(s: BackendSettings):
    return OpenAIBackend(s) if s.kind == "openai" else LocalBackend(s)


# ---------------------------------------------------------------- runner


class _GroupCommit:
    """Batch concurrent cache appends into one write + fsync (run in a thread)."""

    def __init__(self, cache: ResponseCache):
        self.cache = cache
        self.pending: list[tuple[dict, asyncio.Future]] = []
        self.task: asyncio.Task | None = None

    async def put(self, entry: dict) -> None:
        fut = asyncio.get_running_loop().create_future()
        self.pending.append((entry, fut))
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._flush())
        await fut

    async def _flush(self) -> None:
        while self.pending:
            batch, self.pending = self.pending, []
            try:
                await asyncio.to_thread(self.cache.append_many, [e for e, _ in batch])
            except Exception as exc:
                for _, f in batch:
                    if not f.done():
                        f.set_exception(exc)
                continue
            for _, f in batch:
                if not f.done():
                    f.set_result(None)


class Runner:
    """Runs requests through the cache and a backend with at most ``concurrency`` in flight."""

    def __init__(self, backend, cache: ResponseCache, ledger: Ledger, concurrency: int, progress=None, budget=None):
        self.backend = backend
        self.cache = cache
        self.ledger = ledger
        self.sem = asyncio.Semaphore(concurrency)
        self.commit = _GroupCommit(cache)
        self.progress = progress
        self.budget = budget  # evolve.budget.Budget or None; raises BudgetStop for a request that cannot start
        self.queued = bool(getattr(backend, "queued", False))  # requests wait for a batch job
        self.completed = 0

    async def run(self, req: Request) -> Completion:
        model = self.backend.model
        key = req.key(model)
        hit = self.cache.get(key)
        if hit is not None:
            self.ledger.hit(req.purpose)
            r = hit["response"]
            if self.progress is not None:
                self.progress.update(1)
            return Completion(
                text=r["text"], finish_reason=r.get("finish_reason"), usage=r.get("usage", {}), key=key, cached=True
            )
        async with self.sem:  # bounds requests in flight; the fsync below does not hold a slot
            reserved = 0.0
            if self.budget is not None:  # batch mode: a request that does not fit stops the round at once
                reserved = await self.budget.reserve(req.messages, req.params, False, not self.queued)
            self.ledger.sent(req.purpose)
            t0 = time.monotonic()
            try:
                comp = await self.backend.complete(req, key, lambda retry: self.ledger.attempt(req.purpose, retry))
            except RequestRejected as exc:
                self._settle(reserved, None)
                self.ledger.failed(req.purpose)
                if self.progress is not None:
                    self.progress.update(1)
                return Completion(text="", finish_reason=None, usage={}, key=key, error=str(exc))
            except BaseException:
                self._settle(reserved, None)
                self.ledger.failed(req.purpose)
                raise
            latency = time.monotonic() - t0
        entry = {
            "key": key,
            "model": model,
            "purpose": req.purpose,
            "request": {"messages": req.messages, "params": req.params},
            "response": {"text": comp.text, "finish_reason": comp.finish_reason, "usage": comp.usage},
            "latency_s": round(latency, 4),
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        if comp.batch:
            entry["batch"] = True
        await self.commit.put(entry)  # durable (written + fsync'ed) before the response is used
        self._settle(reserved, comp.usage, comp.batch)
        self.completed += 1
        self.ledger.done(req.purpose, comp.usage, latency, comp.batch)
        if comp.waited_s:
            self.ledger.waited(req.purpose, comp.waited_s)
        if self.progress is not None:
            self.progress.update(1)
        return comp

    def _settle(self, reserved: float, usage: dict | None, batch: bool = False) -> None:
        if self.budget is not None:
            self.budget.settle(reserved, usage, batch)
