"""One Code Evol-Instruct round: choose a method, rewrite, (judge), answer, eliminate.

Every item runs as one pipeline (evolve -> checks -> answer -> checks) under the shared concurrency
bound, so no stage barrier leaves the endpoint idle. Outputs are in the input pool's order and depend
only on (settings, seed, round, pool), never on timing: reruns and resumed runs write identical files.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass, field
from typing import Any, ClassVar

from evolcoder.config import Settings
from evolcoder.config import default_factory as _default
from evolcoder.errors import BackendError, DataError, EvolcoderError
from evolcoder.evolve import eliminate as el
from evolcoder.evolve.backends import BackendSettings, Completion, Ledger, Request, Runner, make_backend
from evolcoder.evolve.budget import Budget, BudgetExhausted, BudgetStop
from evolcoder.evolve.cache import ResponseCache
from evolcoder.evolve.methods import (
    choose_method,
    evolved_id,
    item_rng,
    load_method,
    load_template,
    normalise_weights,
    request_seed,
)
from evolcoder.evolve.stats import round_stats

log = logging.getLogger(__name__)

_PARAM_KEYS = {
    "temperature",
    "top_p",
    "max_tokens",
    "seed",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "extra_body",
}


@dataclass
class JudgeSettings(Settings):
    """WizardLM's information-gain judge (``evolution.judge``)."""

    SECTION: ClassVar[str] = "evolution.judge"

    enabled: bool = _default(SECTION, "enabled")
    params: dict = _default(SECTION, "params")


@dataclass
class EvolutionSettings(Settings):
    """One round's settings: the config's ``evolution`` section (defaults and documentation: the schema)."""

    SECTION: ClassVar[str] = "evolution"
    NESTED: ClassVar[dict] = {"backend": BackendSettings, "elimination": el.EliminationSettings, "judge": JudgeSettings}

    rounds: int = 4  # the workflow's; one call runs one round
    seed: int = _default(SECTION, "seed")
    methods: Any = "code"
    retry_eliminated: bool = _default(SECTION, "retry_eliminated")
    backend: BackendSettings = field(default_factory=BackendSettings)
    evolve_params: dict = _default(SECTION, "evolve_params")
    answer_params: dict = _default(SECTION, "answer_params")
    request_seed: bool = _default(SECTION, "request_seed")  # per-request `seed` from (seed, round, parent, purpose)
    answer_system_prompt: str | None = _default(SECTION, "answer_system_prompt")
    elimination: el.EliminationSettings = field(default_factory=el.EliminationSettings)
    judge: JudgeSettings = field(default_factory=JudgeSettings)
    progress: bool = _default(SECTION, "progress")
    budget_usd: float | None = _default(SECTION, "budget_usd")
    max_requests: int | None = _default(SECTION, "max_requests")

    def check(self) -> None:
        for name in ("evolve_params", "answer_params"):
            p = getattr(self, name)
            if not isinstance(p, dict):
                raise EvolcoderError(f"evolution.{name}: expected a mapping")
            bad = sorted(set(p) - _PARAM_KEYS)
            if bad:
                raise EvolcoderError(
                    f"evolution.{name}: unknown parameter(s) {', '.join(bad)}; known: {', '.join(sorted(_PARAM_KEYS))}"
                )
        self.seed = int(self.seed)
        self.weights = normalise_weights(self.methods)  # type: ignore[attr-defined]


@dataclass
class RoundResult:
    evolved: list[dict]
    rejects: list[dict]
    pool: list[dict]
    stats: dict
    ledger: dict


def validate_pool(pool: list[dict], source: str = "pool") -> None:
    seen: set[str] = set()
    for i, rec in enumerate(pool, 1):
        for k in ("id", "instruction"):
            if not isinstance(rec.get(k), str):
                raise DataError(f"{source}: record {i} has no string {k!r}")
        if rec["id"] in seen:
            raise DataError(f"{source}: duplicate id {rec['id']!r} (record {i})")
        seen.add(rec["id"])


def _params(base: dict, s: EvolutionSettings, round_: int, parent_id: str, purpose: str) -> dict:
    p = dict(base)
    if s.request_seed and "seed" not in p:
        p["seed"] = request_seed(s.seed, round_, parent_id, purpose)
    return p


def _given(rec: dict) -> str:
    inp = rec.get("input") or ""
    return rec["instruction"].strip() + ("\n" + inp.strip() if inp.strip() else "")


class _Progress:
    """tqdm bar on a terminal; otherwise a log line every ~10% of items."""

    def __init__(self, total_items: int, total_requests: int, enabled: bool, round_: int):
        self.n_items, self.done = total_items, 0
        self.round = round_
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total_requests, desc=f"evolve round {round_}", unit="req", dynamic_ncols=True)
        self.step = max(1, total_items // 10)

    def update(self, n: int) -> None:  # a request finished
        if self.bar is not None:
            self.bar.update(n)

    def item_done(self) -> None:
        self.done += 1
        if self.bar is None and (self.done % self.step == 0 or self.done == self.n_items):
            log.info("round %d: %d/%d items done", self.round, self.done, self.n_items)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


async def _evolve_item(
    parent: dict, round_: int, s: EvolutionSettings, runner: Runner, model: str, judge_template: str | None
) -> tuple[dict, str | None]:
    """-> (record, None) when accepted, (record with reject fields, reason) when eliminated."""
    pid = parent["id"]
    method_name = choose_method(s.weights, item_rng(s.seed, round_, pid))  # type: ignore[attr-defined]
    method = load_method(method_name)
    prompt = method.render(parent["instruction"], parent.get("input") or "")
    eparams = _params(s.evolve_params, s, round_, pid, "evolve")
    aparams = _params(s.answer_params, s, round_, pid, "answer")
    rec: dict[str, Any] = {
        "id": evolved_id(pid, method_name, round_),
        "parent_id": pid,
        "root_id": parent.get("root_id") or pid,
        "round": round_,
        "method": method_name,
        "instruction": "",
        "input": "",
        "output": "",
        "evol_prompt": prompt,
        "model": model,
        "backend": s.backend.kind,
        "gen_params": {"evolve": eparams, "answer": aparams},
        "usage": {"prompt_tokens": 0, "completion_tokens": 0},
        "usage_by_call": {},
        "cache_keys": {},
    }

    def account(purpose: str, c: Completion) -> None:
        rec["cache_keys"][purpose] = c.key
        rec["usage_by_call"][purpose] = dict(c.usage)
        for k in ("prompt_tokens", "completion_tokens"):
            rec["usage"][k] += int(c.usage.get(k) or 0)

    def reject(stage: str, reason: str, detail: str) -> tuple[dict, str]:
        rec.update(
            reject_reason=reason,
            reject_detail=detail,
            reject_stage=stage,
            parent_instruction=parent["instruction"],
            retried=bool(s.retry_eliminated),
        )
        return rec, reason

    messages = [{"role": "user", "content": prompt}]
    ev = await runner.run(Request(messages, eparams, "evolve"))
    account("evolve", ev)
    if ev.error:
        return reject("evolve", el.API_ERROR, ev.error)
    instruction = el.clean_evolved(ev.text)
    rec["instruction"] = instruction
    bad = el.check_instruction(instruction, _given(parent), s.elimination)
    if bad:
        return reject("instruction", *bad)

    if judge_template is not None:
        jprompt = judge_template.replace("{parent}", _given(parent)).replace("{instruction}", instruction)
        jparams = _params(s.judge.params, s, round_, pid, "judge")
        j = await runner.run(Request([{"role": "user", "content": jprompt}], jparams, "judge"))
        account("judge", j)
        rec["judge"] = {"prompt": jprompt, "params": jparams, "verdict": j.text.strip()[:200]}
        if j.error:
            return reject("judge", el.API_ERROR, j.error)
        if el.judge_says_equal(j.text):
            return reject("judge", el.NO_INFORMATION_GAIN, f"judge: {j.text.strip()[:60]!r}")

    amessages = [{"role": "user", "content": instruction}]
    if s.answer_system_prompt:
        amessages.insert(0, {"role": "system", "content": s.answer_system_prompt})
    ans = await runner.run(Request(amessages, aparams, "answer"))
    account("answer", ans)
    rec["output"] = ans.text.strip()
    rec["finish_reason"] = ans.finish_reason
    if ans.error:
        return reject("answer", el.API_ERROR, ans.error)
    bad = el.check_response(ans.text, ans.finish_reason, s.elimination)
    if bad:
        return reject("response", *bad)
    return rec, None


async def run_round_async(
    pool: list[dict], round_: int, s: EvolutionSettings, cache_dir: str, backend=None
) -> RoundResult:
    validate_pool(pool)
    own_backend = backend is None
    if backend is None and s.backend.mode == "batch":
        from evolcoder.evolve.batch import BatchBackend

        backend = BatchBackend(s.backend, cache_dir)
    backend = backend or make_backend(s.backend)
    model = backend.model
    cache = ResponseCache(cache_dir, model)
    ledger = Ledger(
        model=model,
        backend=s.backend.kind,
        cost_per_1m_prompt_tokens=float(s.backend.cost_per_1m_prompt_tokens),
        cost_per_1m_completion_tokens=float(s.backend.cost_per_1m_completion_tokens),
        batch_price_factor=float(s.backend.batch_price_factor),
    )
    budget = _budget(s, cache, model)
    per_item = 2 + (1 if s.judge.enabled else 0)
    progress = _Progress(len(pool), per_item * len(pool), s.progress, round_)
    # batch mode: every request of a phase goes into the phase's batch jobs at once
    concurrency = s.backend.concurrency if s.backend.mode == "sync" else max(1, 2 * len(pool) + 1)
    runner = Runner(backend, cache, ledger, concurrency, progress, budget)
    judge_template = load_template("judge_equal") if s.judge.enabled else None
    log.info(
        "round %d: %d items, backend %s (%s), cache %s (%d entries)",
        round_,
        len(pool),
        s.backend.kind,
        model,
        cache.path,
        len(cache),
    )

    async def one(parent: dict):
        try:
            out = await _evolve_item(parent, round_, s, runner, model, judge_template)
        except BudgetStop:
            return None  # the round stops once the requests in flight are done
        progress.item_done()
        return out

    try:
        tasks = []
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(one(p)) for p in pool]
        except* BackendError as eg:
            raise eg.exceptions[0] from None
        except* EvolcoderError as eg:
            raise eg.exceptions[0] from None
        results = [t.result() for t in tasks]
        if budget is not None and budget.stopped:
            raise BudgetExhausted(budget.message(runner.completed))
    finally:
        progress.close()
        if own_backend:
            await backend.aclose()

    evolved, rejects, next_pool = [], [], []
    for parent, (rec, reason) in zip(pool, results, strict=True):
        if reason is None:
            evolved.append(rec)
            next_pool.append(rec)
        else:
            rejects.append(rec)
            if s.retry_eliminated:
                next_pool.append(parent)
    ledger_d = ledger.to_dict()
    ledger_d.update(
        round=round_,
        items=len(pool),
        cache_file=str(cache.path),
        base_url=s.backend.base_url if s.backend.kind == "openai" else None,
        concurrency=s.backend.concurrency,
        mode=s.backend.mode,
    )
    if getattr(backend, "stats", None):
        ledger_d["batch"] = dict(backend.stats)
    if budget is not None:
        ledger_d["budget"] = {"limit_usd": s.budget_usd, "max_requests": s.max_requests, "spent_usd": budget.spent_usd}
    stats = round_stats(round_, pool, evolved, rejects, next_pool, ledger_d)
    return RoundResult(evolved, rejects, next_pool, stats, ledger_d)


def _budget(s: EvolutionSettings, cache: ResponseCache, model: str) -> Budget | None:
    if s.budget_usd is None and s.max_requests is None:
        return None
    from evolcoder.evolve.estimate import counter_for

    counter = counter_for(model, s.backend.kind)
    b = Budget(
        s.budget_usd,
        s.max_requests,
        float(s.backend.cost_per_1m_prompt_tokens),
        float(s.backend.cost_per_1m_completion_tokens),
        float(s.backend.batch_price_factor),
        lambda messages: counter.chat([str(m.get("content") or "") for m in messages]),
        cache.entries(),
    )
    log.info(
        "budget: $%.4f spent by %d cached request(s) of %s; limit %s, max requests %s",
        b.spent_usd,
        b.done,
        model,
        "none" if s.budget_usd is None else f"${s.budget_usd:g}",
        s.max_requests,
    )
    return b


def run_round(
    pool: list[dict], round_: int, settings: EvolutionSettings | dict, cache_dir: str, backend=None
) -> RoundResult:
    s = settings if isinstance(settings, EvolutionSettings) else EvolutionSettings.from_dict(settings)
    return asyncio.run(run_round_async(pool, round_, s, cache_dir, backend))
