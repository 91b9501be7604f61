"""``evolcoder ablation-table``: pass@1 against the number of evolution rounds k merged into the training set.

One row per (k, benchmark, split, mode): the merged set's size, pass@1 with its 95% interval over tasks, and
the paired test against the row before it (k - 1; k = 0 against the untuned base model when it is given),
from the score files of one checkpoint per k (:mod:`evolcoder.table` builds the rows, :mod:`evolcoder.uncertainty`
the numbers). Writes ``rounds.md``, ``rounds.csv`` and ``rounds.png``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import click

from evolcoder.errors import DataError
from evolcoder.io import atomic_path, read_json
from evolcoder.table import build_rows, error_bars, parse_pairs, read_score_files, save_png

FIELDS = [
    "k",
    "selected",
    "model",
    "train_records",
    "benchmark",
    "benchmark_id",
    "split",
    "mode",
    "n_tasks",
    "pass@1",
    "pass@1_lo",
    "pass@1_hi",
    "vs",
    "vs_delta",
    "p_value",
    "test",
    "paired_tasks",
    "score_file",
]


def ablation_rows(
    score_files: list[str], models: list[tuple[str, str]], base: str | None = None, selected: int | None = None
) -> list[dict]:
    """``models``: ``[(model, merged stats.json), ...]`` for k = 0, 1, ... in order; ``base``: the untuned model;
    ``selected``: the k the round selection kept (rounds: auto)."""
    scores = read_score_files(score_files)
    chain = ([(base, "base model (untuned)")] if base else []) + [(m, f"k={k}") for k, (m, _s) in enumerate(models)]
    records = {}
    for m, stats_path in models:
        st = read_json(stats_path)
        if not isinstance(st, dict) or "records" not in st:
            raise DataError(f"{stats_path}: not a merge stats file (no records)")
        records[m] = st["records"]
    ks = {m: k for k, (m, _s) in enumerate(models)}
    rows = []
    for r in build_rows(scores, [], None, chain):
        if r["model"] not in ks and r["model"] != base:
            continue
        row = {f: r.get(f) for f in FIELDS}
        row["k"] = ks.get(r["model"], "base")
        row["train_records"] = records.get(r["model"])
        row["selected"] = selected is not None and row["k"] == selected
        rows.append(row)
    return rows


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:.1f}" if isinstance(v, float) else str(v)


def to_markdown(rows: list[dict], held_fixed: str, selection: str | None) -> str:
    head = ["k", "model", "train records", "benchmark", "mode", "tasks", "pass@1 [95% CI]", "Δ vs previous row", "p"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ci = "" if r.get("pass@1_lo") is None else f" [{r['pass@1_lo']:.1f}, {r['pass@1_hi']:.1f}]"
        if r.get("p_value") is None:
            delta, p = "-", "-"
        else:
            delta = f"{r['vs_delta']:+.1f} vs {r['vs']}"
            p = f"{r['p_value']:.3f}" if r["p_value"] >= 0.001 else "< 0.001"
            p += " (McNemar)" if r["test"] == "mcnemar-exact" else " (paired bootstrap)"
        cells = [
            f"**{r['k']}** (selected)" if r.get("selected") else r["k"],
            r["model"],
            _fmt(r["train_records"]),
            r["benchmark"],
            r["mode"],
            _fmt(r["n_tasks"]),
            _fmt(r["pass@1"]) + ci,
            delta,
            p,
        ]
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    notes = [
        "",
        "k: evolution rounds merged with the seed into the training set (k = 0: the seed alone; the last k is the "
        "main model, trained on the main run's rounds). Held fixed across k: " + held_fixed + ".",
        "[95% CI]: over tasks (Wilson for greedy pass@1, a seeded bootstrap over tasks for n samples). p: paired "
        "test against the row above on the same tasks (exact McNemar on the discordant tasks for greedy, paired "
        "bootstrap for sampled); with few tasks most differences are noise.",
    ]
    if selection:
        notes.append("Round selection: " + selection)
    return "\n".join(lines + notes) + "\n"


def write_plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    series: dict[str, list[dict]] = {}
    for r in rows:
        if isinstance(r["k"], int):
            series.setdefault(f"{r['benchmark']} ({r['mode']})", []).append(r)
    for label, rs in series.items():
        xs = [r["k"] for r in rs]
        ys = [r["pass@1"] or 0.0 for r in rs]
        ax.errorbar(xs, ys, yerr=error_bars(rs), marker="o", capsize=3, label=label)
    for r in rows:
        if r["k"] == "base" and r["pass@1"] is not None:
            ax.axhline(r["pass@1"], linestyle=":", color="grey")
    ax.set_xlabel("evolution rounds merged (k)")
    ax.set_ylabel("pass@1 (%), 95% CI")
    ax.set_ylim(0, 100)
    ks = sorted({r["k"] for r in rows if isinstance(r["k"], int)})
    ax.set_xticks(ks)
    if series:
        ax.legend(fontsize=7)
    ax.set_title("Rounds ablation (dotted: untuned base)", fontsize=9)
    save_png(fig, path)


def write_ablation(
    score_files: list[str],
    models: list[tuple[str, str]],
    out_dir: str,
    base: str | None = None,
    held_fixed: str = "train's hyper-parameters",
    selection: str | None = None,
    decisions: list[str] | None = None,
) -> list[dict]:
    selected = None
    if decisions:
        ds = [read_json(d) for d in decisions]
        last = max(ds, key=lambda d: d["k"])
        selected = last["best_k"]
        steps = "; ".join(
            f"k={d['k']}: {d['previous']:.1f} -> {d['current']:.1f}" + (" declined" if d["declined"] else "")
            for d in sorted(ds, key=lambda d: d["k"])
        )
        how = "stopped at the first decline" if last["declined"] else "reached the cap"
        selection = (selection + ". " if selection else "") + f"{steps}: {how}, selected k = {selected}."
    rows = ablation_rows(score_files, models, base, selected)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "rounds.md") as tmp:
        tmp.write_text(to_markdown(rows, held_fixed, selection), encoding="utf-8")
    with atomic_path(out / "rounds.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    write_plot(rows, out / "rounds.png")
    return rows


@click.command(help="Rounds ablation: pass@1 (95% CI, paired p vs k-1) against k -> rounds.{md,csv,png}.")
@click.option("--out-dir", required=True, help="Folder for rounds.{md,csv,png}.")
@click.option(
    "--k",
    "ks",
    multiple=True,
    required=True,
    metavar="MODEL=STATS",
    help="The checkpoint of k = 0, 1, ... in order, with its merged set's stats.json (repeatable).",
)
@click.option("--base", default=None, help="The untuned base model's name (its row comes first).")
@click.option("--held-fixed", default="train's hyper-parameters", show_default=True, help="What is held fixed.")
@click.option("--selection", default=None, help="A line on how the number of rounds was selected.")
@click.option("--decision", "decisions", multiple=True, help="select-round decision files (rounds: auto).")
@click.argument("scores", nargs=-1, required=True)
def cli(
    out_dir: str,
    ks: tuple[str, ...],
    base: str | None,
    held_fixed: str,
    selection: str | None,
    decisions: tuple[str, ...],
    scores: tuple[str, ...],
) -> None:
    models = parse_pairs(ks, "--k", "MODEL=STATS")
    rows = write_ablation(list(scores), models, out_dir, base, held_fixed, selection, list(decisions))
    click.echo(f"{len(rows)} rows -> {out_dir}/rounds.md")
