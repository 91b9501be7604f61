"""Pacing to an endpoint's rate limits (``x-ratelimit-*`` headers), so many requests in flight do not
turn into a storm of HTTP 429s.

OpenAI (and most compatible providers) answer every request with, per window (``requests`` and
``tokens``): ``x-ratelimit-limit-*``, ``x-ratelimit-remaining-*`` and ``x-ratelimit-reset-*`` (a duration
such as ``1s``, ``6m0s`` or ``20ms`` until the window is full again). The limiter keeps what the last
response said, takes each request it lets start off it (1 request; its prompt estimate plus
``max_tokens`` tokens, as OpenAI counts), and makes a request wait when the window cannot hold it
until its reset. A 429 closes both windows for its ``Retry-After``. Endpoints without the headers are
never paced.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(value: Any) -> float | None:
    """``"6m0s"`` -> 360.0, ``"20ms"`` -> 0.02, ``"1.5"`` -> 1.5 (seconds); None when unparsable."""
    if value is None:
        return None
    text = str(value).strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    parts = _PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNIT[u] for n, u in parts)


def _int(value: Any) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


class _Window:
    def __init__(self) -> None:
        self.limit: int | None = None
        self.remaining: float | None = None  # None: unknown, not paced
        self.reset_at = 0.0
        self.temporary = False  # closed by a 429 on an endpoint that sends no x-ratelimit headers

    def _refill(self, now: float) -> None:
        if self.remaining is not None and now >= self.reset_at:
            if self.temporary:  # back to unpaced
                self.limit, self.remaining, self.temporary = None, None, False
                return
            self.remaining = self.limit
            self.reset_at = float("inf")  # until a response says when this window is full again

    def wait(self, now: float, n: float) -> float:
        self._refill(now)
        if self.remaining is None or self.limit is None:
            return 0.0
        n = min(n, self.limit)  # a request larger than the window waits for a full window
        # re-checked at least every second: a response may refill the window before its reset
        return 0.0 if self.remaining >= n else min(1.0, max(0.001, self.reset_at - now))

    def take(self, n: float) -> None:
        if self.remaining is not None:
            self.remaining -= n

    def observe(self, limit: int | None, remaining: int | None, reset_s: float | None, now: float) -> None:
        if remaining is None:
            return
        self._refill(now)
        if limit is not None:
            self.limit = limit
        elif self.limit is None:
            self.limit = remaining
        # requests started since the server counted this one are already taken off the local count
        self.remaining = remaining if self.remaining is None else min(self.remaining, remaining)
        self.reset_at = now + (reset_s if reset_s is not None else 1.0)

    def close_for(self, seconds: float, now: float) -> None:
        if self.limit is None:
            self.limit, self.temporary = 1, True
        self.remaining = 0
        self.reset_at = max(self.reset_at, now + seconds)


class RateLimiter:
    """The first request goes alone: the others wait for its headers (no burst of 429s at the start)."""

    def __init__(self) -> None:
        self.windows = {"requests": _Window(), "tokens": _Window()}
        self.hits_429 = 0
        self._probe: asyncio.Event | None = None  # set once the first response (any status) arrived

    async def acquire(self, tokens: float) -> float:
        """Wait until a request of ``tokens`` fits both windows, take it off them; -> seconds waited."""
        waited = 0.0
        if self._probe is None:
            self._probe = asyncio.Event()
        elif not self._probe.is_set():
            t0 = time.monotonic()
            await self._probe.wait()
            waited += time.monotonic() - t0
        need = {"requests": 1.0, "tokens": float(tokens)}
        while True:
            now = time.monotonic()
            delay = max(w.wait(now, need[k]) for k, w in self.windows.items())
            if delay <= 0:
                for k, w in self.windows.items():
                    w.take(need[k])
                return waited
            await asyncio.sleep(delay)
            waited += delay

    def update(self, headers: Any) -> None:
        """Read the x-ratelimit-* headers of a response (any status)."""
        if self._probe is not None:
            self._probe.set()
        if headers is None:
            return
        now = time.monotonic()
        for k, w in list(self.windows.items()):
            if headers.get(f"x-ratelimit-remaining-{k}") is None:
                self.windows[k] = _Window()  # this endpoint does not say: not paced
                continue
            w.observe(
                _int(headers.get(f"x-ratelimit-limit-{k}")),
                _int(headers.get(f"x-ratelimit-remaining-{k}")),
                parse_duration(headers.get(f"x-ratelimit-reset-{k}")),
                now,
            )

    def throttled(self, seconds: float | None) -> None:
        """A 429: no request starts for ``seconds`` (its Retry-After; 1 s when it gave none)."""
        self.hits_429 += 1
        now = time.monotonic()
        for w in self.windows.values():
            if w.remaining is not None or w is self.windows["requests"]:
                w.close_for(seconds if seconds is not None else 1.0, now)
