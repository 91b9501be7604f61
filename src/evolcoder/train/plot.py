"""Loss and learning-rate curve of a training run (for the Snakemake report)."""

from __future__ import annotations

import os

import click

from evolcoder.io import read_json


def plot_training(log_history_json: str | os.PathLike, out_png: str | os.PathLike) -> None:
    """Plot loss (left axis) and learning rate (right axis) against the optimizer step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from evolcoder.io import atomic_path

    history = read_json(log_history_json)
    loss = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
    lr = [(h["step"], h["learning_rate"]) for h in history if "learning_rate" in h and "step" in h]
    tps = [h["tokens_per_s"] for h in history if "tokens_per_s" in h]
    mem = [h["peak_mem_mb"] for h in history if "peak_mem_mb" in h]
    fig, ax = plt.subplots(figsize=(7, 4))
    if loss:
        ax.plot(*zip(*loss, strict=True), color="tab:blue", marker="." if len(loss) < 50 else None, label="train loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss", color="tab:blue")
    ax2 = ax.twinx()
    if lr:
        ax2.plot(*zip(*lr, strict=True), color="tab:orange", linestyle="--", label="learning rate")
    ax2.set_ylabel("learning rate", color="tab:orange")
    ax2.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    title = "fine-tuning"
    if tps:
        title += f" — {sum(tps) / len(tps):,.0f} tok/s"
    if mem:
        title += f", peak mem {max(mem) / 1024:.1f} GiB"
    ax.set_title(title)
    if not loss:
        ax.text(0.5, 0.5, "no loss logged", transform=ax.transAxes, ha="center")
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


@click.command(help="Plot a training run's loss and learning rate against the optimizer step.")
@click.option("--history", required=True, type=click.Path(dir_okay=False), help="log_history.json of the run.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG to write.")
def cli(history: str, out: str) -> None:
    plot_training(history, out)
    click.echo(out)
