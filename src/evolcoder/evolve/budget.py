"""A spend limit that holds: ``evolution.budget_usd`` and ``evolution.max_requests``.

The spend so far is every completed request in the cache file of the model (earlier rounds and
earlier attempts included: they were paid), priced like the ledger (Batch API requests at the batch
price). A request starts only if the spend, plus every request in flight counted at its prompt
tokens and ``max_tokens`` completion tokens, plus this request the same way, stays within the budget.
A request that does not fit waits for those in flight to settle (their actual cost replaces their
reservation); when it still does not fit with nothing in flight, the round stops: no further request
starts, and the round ends with one line. A rerun with a higher budget finds the
completed requests in the cache and sends only the rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from evolcoder.errors import EvolcoderError

DEFAULT_MAX_TOKENS = 4096  # reservation of a request without max_tokens


class BudgetStop(Exception):
    """Raised to an item whose request would pass the budget (the round stops after those in flight)."""


class BudgetExhausted(EvolcoderError):
    """The round stopped at the budget; completed requests are cached."""


class Budget:
    def __init__(
        self,
        budget_usd: float | None,
        max_requests: int | None,
        price_prompt: float,
        price_completion: float,
        batch_factor: float,
        count_prompt: Callable[[list[dict]], int],
        cache_entries,
    ):
        self.budget_usd = None if budget_usd is None else float(budget_usd)
        self.max_requests = None if max_requests is None else int(max_requests)
        self.pp, self.pc, self.factor = price_prompt, price_completion, batch_factor
        self.count_prompt = count_prompt
        self.spent_usd = 0.0
        self.done = 0
        for e in cache_entries:
            u = (e.get("response") or {}).get("usage") or {}
            self.spent_usd += self.cost(u.get("prompt_tokens") or 0, u.get("completion_tokens") or 0, e.get("batch"))
            self.done += 1
        self.reserved_usd = 0.0
        self.in_flight = 0
        self.stopped: str | None = None
        self._settled: asyncio.Event | None = None

    def cost(self, prompt_tokens: float, completion_tokens: float, batch: bool | None = False) -> float:
        c = (prompt_tokens * self.pp + completion_tokens * self.pc) / 1e6
        return c * self.factor if batch else c

    async def reserve(self, messages: list[dict], params: dict, batch: bool, wait: bool = True) -> float:
        """Reserve a request's worst-case cost (waiting for requests in flight to settle when it does not
        fit, unless not ``wait``: batch mode, where that would mean one small batch per settled one), or
        raise BudgetStop and stop every later request."""
        worst = self.cost(self.count_prompt(messages), params.get("max_tokens") or DEFAULT_MAX_TOKENS, batch)
        while self.stopped is None:
            if self.max_requests is not None and self.done + self.in_flight + 1 > self.max_requests:
                self.stopped = f"evolution.max_requests {self.max_requests} reached"
            elif self.budget_usd is None or self.spent_usd + self.reserved_usd + worst <= self.budget_usd:
                self.reserved_usd += worst
                self.in_flight += 1
                return worst
            elif self.in_flight == 0 or not wait:
                self.stopped = (
                    f"evolution.budget_usd ${self.budget_usd:g} reached (${self.spent_usd:.4f} spent; the next "
                    f"request could cost up to ${worst:.4f} at its max_tokens)"
                )
            else:
                if self._settled is None:
                    self._settled = asyncio.Event()
                await self._settled.wait()
        if self._settled is not None:  # nobody waits on a stopped budget
            self._settled.set()
        raise BudgetStop(self.stopped)

    def settle(self, reserved: float, usage: dict | None, batch: bool = False) -> None:
        """A reserved request ended: its actual cost (None: it failed, nothing spent) replaces the reservation."""
        self.reserved_usd = max(0.0, self.reserved_usd - reserved)
        self.in_flight -= 1
        if usage is not None:
            self.spent_usd += self.cost(usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0, batch)
            self.done += 1
        if self._settled is not None:  # wake the requests waiting for room
            self._settled.set()
            self._settled = None

    def message(self, completed_now: int) -> str:
        return (
            f"{self.stopped}: the round stopped; {completed_now} request(s) of this run completed and cached "
            f"(${self.spent_usd:.4f} spent in all), raise the limit and rerun to continue without re-sending them"
        )
