"""Per-round statistics and the difficulty-by-round plot."""

from __future__ import annotations

import collections
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import click

from evolcoder.evolve.eliminate import count_tokens

TOKEN_COUNTER = "regex word/punctuation tokens (\\w+|[^\\w\\s]), model-independent"


def _mean(xs: Sequence[float]) -> float | None:
    return round(sum(xs) / len(xs), 2) if xs else None


def _instr(rec: dict) -> str:
    inp = rec.get("input") or ""
    return rec.get("instruction", "") + ("\n" + inp if inp.strip() else "")


def round_stats(
    round_: int,
    pool: Sequence[dict],
    evolved: Sequence[dict],
    rejects: Sequence[dict],
    next_pool: Sequence[dict],
    ledger: dict | None = None,
) -> dict:
    """Items in/out, elimination rate by reason, method mix and mean lengths (tokens) of one round."""
    n_in = len(pool)
    by_reason = collections.Counter(r["reject_reason"] for r in rejects)
    chosen = collections.Counter(r["method"] for r in [*evolved, *rejects])
    accepted = collections.Counter(r["method"] for r in evolved)
    stats = {
        "round": round_,
        "items_in": n_in,
        "evolved": len(evolved),
        "rejected": len(rejects),
        "retried_parents": sum(1 for r in rejects if r.get("retried")),
        "next_pool": len(next_pool),
        "elimination_rate": round(len(rejects) / n_in, 4) if n_in else 0.0,
        "rejects_by_reason": dict(sorted(by_reason.items())),
        "elimination_rate_by_reason": {k: round(v / n_in, 4) for k, v in sorted(by_reason.items())} if n_in else {},
        "methods_chosen": dict(sorted(chosen.items())),
        "methods_accepted": dict(sorted(accepted.items())),
        "acceptance_by_method": {m: round(accepted.get(m, 0) / c, 4) for m, c in sorted(chosen.items())},
        "mean_instruction_tokens": _mean([count_tokens(_instr(r)) for r in evolved]),
        "mean_response_tokens": _mean([count_tokens(r.get("output", "")) for r in evolved]),
        "parent_mean_instruction_tokens": _mean([count_tokens(_instr(r)) for r in pool]),
        "parent_mean_response_tokens": _mean([count_tokens(r.get("output", "")) for r in pool]),
        "token_counter": TOKEN_COUNTER,
    }
    if ledger:
        t = ledger.get("total", {})
        stats["requests"] = {
            k: t.get(k, 0)
            for k in (
                "requests",
                "sent",
                "cache_hits",
                "retries",
                "failed",
                "prompt_tokens",
                "completion_tokens",
                "cost_usd",
            )
        }
    return stats


def plot_stats(stats_paths: Iterable[str | os.PathLike], out_png: str | os.PathLike) -> Path:
    """Plot difficulty by round (mean instruction/response tokens), the method mix and the elimination
    rate by reason, from the rounds' ``stats.json`` files, into one PNG."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stats = []
    for p in stats_paths:
        with open(p, encoding="utf-8") as fh:
            stats.append(json.load(fh))
    stats.sort(key=lambda s: s["round"])
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))

    ax = axes[0]
    if stats:
        xs = [0] + [s["round"] for s in stats]
        first = stats[0]
        ins = [first.get("parent_mean_instruction_tokens")] + [s.get("mean_instruction_tokens") for s in stats]
        outs = [first.get("parent_mean_response_tokens")] + [s.get("mean_response_tokens") for s in stats]
        ax.plot(xs, [v if v is not None else float("nan") for v in ins], "o-", label="instruction")
        ax.plot(xs, [v if v is not None else float("nan") for v in outs], "s--", label="response")
        ax.set_xticks(xs)
    ax.set_xlabel("round (0 = seed)")
    ax.set_ylabel("mean tokens")
    ax.set_title("Difficulty by round: mean length")
    ax.legend()

    ax = axes[1]
    rounds = [s["round"] for s in stats]
    methods = sorted({m for s in stats for m in s.get("methods_accepted", {})})
    bottom = [0.0] * len(stats)
    for m in methods:
        vals = []
        for s in stats:
            tot = sum(s.get("methods_accepted", {}).values()) or 1
            vals.append(s.get("methods_accepted", {}).get(m, 0) / tot)
        ax.bar(rounds, vals, bottom=bottom, label=m)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.set_xlabel("round")
    ax.set_ylabel("share of accepted items")
    ax.set_title("Method mix (accepted)")
    if methods:
        ax.legend(fontsize=7)
    if rounds:
        ax.set_xticks(rounds)

    ax = axes[2]
    reasons = sorted({r for s in stats for r in s.get("elimination_rate_by_reason", {})})
    bottom = [0.0] * len(stats)
    for r in reasons:
        vals = [s.get("elimination_rate_by_reason", {}).get(r, 0.0) for s in stats]
        ax.bar(rounds, vals, bottom=bottom, label=r)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.set_xlabel("round")
    ax.set_ylabel("eliminated / items in")
    ax.set_ylim(0, 1)
    ax.set_title("Elimination rate by reason")
    if reasons:
        ax.legend(fontsize=7)
    if rounds:
        ax.set_xticks(rounds)

    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


@click.command(
    help="Plot the evolution statistics of the rounds (difficulty by round, method mix, "
    "elimination rates) into one PNG."
)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG to write.")
@click.argument("stats", nargs=-1, required=True, type=click.Path(dir_okay=False))
def cli(out: str, stats: tuple[str, ...]) -> None:
    click.echo(str(plot_stats(list(stats), out)))
