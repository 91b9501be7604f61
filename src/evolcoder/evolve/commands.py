"""Code Evol-Instruct: the ``evolcoder evolve`` stage (one round per call).

    evolcoder evolve --pool IN.jsonl --round K --out-dir results/evolve/round_K \\
                     --settings-json '<evolution: section as JSON>' --cache-dir results/cache/llm

Writes ``evolved.jsonl``, ``rejects.jsonl``, ``pool.jsonl`` (next round's input), ``stats.json``,
``ledger.json`` and ``manifest.json`` into ``--out-dir``, each atomically, at the end of the round.
Completed LLM requests go to the append-only cache under ``--cache-dir`` as they finish, so a killed
round reruns at no extra API cost.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import click

log = logging.getLogger(__name__)

__all__ = ["cli"]


def _clean_stale_tmp(out: Path) -> None:
    """Temp files of a killed previous attempt (atomic writes that never got renamed)."""
    for p in out.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            p.unlink()


@click.command(
    help="Run one Code Evol-Instruct round: choose a method per item (seeded), rewrite the "
    "instruction with the evolver LLM, answer it, eliminate failed evolutions."
)
@click.option(
    "--pool",
    "pool_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Seed file (round 1) or the previous round's pool.jsonl.",
)
@click.option("--round", "round_", required=True, type=click.IntRange(min=1), help="Round number K (>= 1).")
@click.option("--out-dir", required=True, type=click.Path(file_okay=False))
@click.option("--settings-json", default=None, help="The config's evolution: section (JSON or a JSON file).")
@click.option(
    "--cache-dir",
    default="results/cache/llm",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Append-only LLM response cache (never a Snakemake output).",
)
def cli(pool_path: str, round_: int, out_dir: str, settings_json: str | None, cache_dir: str) -> None:
    from evolcoder.evolve.engine import EvolutionSettings, validate_pool
    from evolcoder.evolve.engine import run_round as _run
    from evolcoder.io import parse_json_option, read_jsonl, write_json, write_jsonl, write_manifest

    raw = parse_json_option(settings_json, "settings-json")
    settings = EvolutionSettings.from_dict(raw)
    pool = read_jsonl(pool_path)
    validate_pool(pool, pool_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _clean_stale_tmp(out)
    est = _log_estimate(pool, round_, settings, out)
    res = _run(pool, round_, settings, cache_dir)
    res.ledger["estimate"] = _compare_estimate(est, res, settings)
    res.stats["cost_usd"] = {  # the estimate made before the round and what the round used
        "estimated": res.ledger["estimate"]["estimated"]["cost_usd"],
        "actual": res.ledger["estimate"]["actual"]["cost_usd"],
        "priced": res.ledger["estimate"]["priced"],
    }
    write_jsonl(out / "evolved.jsonl", res.evolved)
    write_jsonl(out / "rejects.jsonl", res.rejects)
    write_jsonl(out / "pool.jsonl", res.pool)
    write_json(out / "stats.json", res.stats)
    write_json(out / "ledger.json", res.ledger)
    write_manifest(
        out / "manifest.json",
        stage="evolve",
        inputs={"pool": pool_path},
        settings=raw,
        extra={
            "round": round_,
            "stats": res.stats,
            "ledger_total": res.ledger.get("total"),
            "cache_file": res.ledger.get("cache_file"),
        },
    )
    st, t = res.stats, res.ledger["total"]
    click.echo(
        f"evolve round {round_}: {st['items_in']} in -> {st['evolved']} evolved, {st['rejected']} "
        f"eliminated ({st['elimination_rate']:.0%}), next pool {st['next_pool']}; requests sent "
        f"{int(t.get('sent', 0))}, cached {int(t.get('cache_hits', 0))}, retries {int(t.get('retries', 0))}, "
        f"cost ${t.get('cost_usd', 0):.4f} -> {out}"
    )
    cmp_ = res.ledger["estimate"]
    ratio = cmp_["actual_over_estimated"]
    what = "cost" if ratio["cost_usd"] is not None else "tokens"  # a free model: compare the tokens
    tok = (cmp_["actual"]["prompt_tokens"] + cmp_["actual"]["completion_tokens"]) / max(
        1e-9, cmp_["estimated"]["prompt_tokens"] + cmp_["estimated"]["completion_tokens"]
    )
    click.echo(
        f"estimate round {round_}: ${cmp_['estimated']['cost_usd']:.4f} for {cmp_['estimated']['requests']:.0f} "
        f"requests; actual (every call of the round, cached or sent) ${cmp_['actual']['cost_usd']:.4f} for "
        f"{cmp_['actual']['requests']} requests ({what} x{ratio['cost_usd'] if what == 'cost' else tok:.2f} the "
        f"estimate; {cmp_['priced']} price)"
    )


def _log_estimate(pool: list[dict], round_: int, settings, out: Path) -> dict:
    """The round's estimate from its real pool and the previous round's measured rates: logged before
    the first request and written to estimate.json next to the ledger."""
    from evolcoder.evolve import estimate as E
    from evolcoder.io import write_json

    counter = E.counter_for(settings.backend.model, settings.backend.kind)
    rates = E.measured_rates(out.parent / f"round_{round_ - 1}") if round_ > 1 else None
    est = E.round_estimate(E.pool_profile(pool, settings, counter), settings, rates or E.DEFAULT_RATES, round_)
    write_json(out / "estimate.json", est)
    log.info("%s", E.format_line(est, settings.backend.model))
    return est


def _compare_estimate(est: dict, res, settings) -> dict:
    from evolcoder.evolve import estimate as E

    return E.compare(est, E.actual_usage(res.evolved, res.rejects), settings, settings.backend.mode == "batch")


@click.command(
    help="Expected requests, tokens and cost of the evolution rounds (per round and in total) for the "
    "configured model and prices, from the seed's token counts and the finished rounds' rates. No network."
)
@click.option(
    "--configfile", "configfiles", multiple=True, type=click.Path(dir_okay=False), help="Layered over config.yaml."
)
@click.option("--results", default="results/evolve", show_default=True, help="Finished rounds: <results>/round_K.")
@click.option("--seed-sample", default=None, help="Local seed file to tokenise when the seed is a hub id.")
@click.option("--json", "as_json", is_flag=True, help="Print the estimate as JSON.")
def estimate_cli(configfiles: tuple[str, ...], results: str, seed_sample: str | None, as_json: bool) -> None:
    import json

    from evolcoder.evolve import estimate as E
    from evolcoder.evolve.engine import EvolutionSettings

    cfg = E.load_config(configfiles)
    evo = {k: v for k, v in cfg["evolution"].items() if k not in ("rounds", "max_rounds", "selection")}
    s = EvolutionSettings.from_dict({**evo, "progress": False})
    rounds = cfg["evolution"].get("rounds", 4)
    rounds = int(cfg["evolution"].get("max_rounds", 4)) if rounds == "auto" else int(rounds)
    recs, n_items, where = E.load_seed_sample(cfg.get("seed") or {}, seed_sample)
    counter = E.counter_for(s.backend.model, s.backend.kind)
    rows = E.rows_for(recs, n_items, s, rounds, results, counter)
    if as_json:
        click.echo(json.dumps(rows, indent=1, default=float))
        return
    click.echo(E.format_table(rows, s.backend.model, s, note=f"\nseed: {where}"))
