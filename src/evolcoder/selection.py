"""``evolcoder select-round``: after round k, evolve another one or stop (``evolution.rounds: auto``).

WizardCoder chose its number of rounds from data: after each round it merged the evolved data of all rounds
so far with the seed, fine-tuned, measured pass@1 and stopped once pass@1 declined, keeping the best model.
This command is that decision for one k: it compares the selection metric (pass@1 of one benchmark split)
of the checkpoint of k with that of k - 1 and writes ``{k, previous, current, declined, continue, best_k}``.
A decline stops the evolution and selects k - 1; otherwise k is the best so far, and another round runs
unless k is the cap (``evolution.max_rounds``). A tie is no decline.
"""

from __future__ import annotations

import click

from evolcoder.errors import DataError
from evolcoder.io import read_json, write_json


def metric(path: str, split: str) -> float:
    res = read_json(path)
    try:
        return float(res[split]["pass@1"])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{path}: no {split} pass@1 (not a score file of that benchmark?)") from None


def decide(k: int, previous: float, current: float, max_rounds: int) -> dict:
    if k < 1 or k > max_rounds:
        raise DataError(f"select-round: k must be in 1..{max_rounds}, got {k}")
    declined = current < previous
    return {
        "k": k,
        "previous": previous,
        "current": current,
        "declined": declined,
        "continue": not declined and k < max_rounds,
        "best_k": k - 1 if declined else k,
    }


@click.command(help="Round selection: evolve another round unless pass@1 of k declined against k - 1.")
@click.option("--k", "k", type=int, required=True, help="The round just evaluated (1..max-rounds).")
@click.option("--max-rounds", type=int, required=True, help="The cap: no round after it.")
@click.option("--previous", required=True, help="Score file of the checkpoint of k - 1.")
@click.option("--current", required=True, help="Score file of the checkpoint of k.")
@click.option("--split", default="base", show_default=True, help="Split of the selection metric (base or plus).")
@click.option("--benchmark", "benchmark", default="", help="The selection benchmark's name (recorded).")
@click.option("--out", required=True, help="Decision file (JSON).")
def cli(k: int, max_rounds: int, previous: str, current: str, split: str, benchmark: str, out: str) -> None:
    d = decide(k, metric(previous, split), metric(current, split), max_rounds)
    d.update({"benchmark": benchmark, "split": split, "scores": {"previous": previous, "current": current}})
    write_json(out, d)
    verdict = "evolve another round" if d["continue"] else f"stop, best k = {d['best_k']}"
    click.echo(f"round {k}: pass@1 {d['previous']:.1f} -> {d['current']:.1f}: {verdict}")
