"""The ``evolcoder`` command: one sub-command per pipeline stage.

Sub-commands are imported lazily, so ``evolcoder table --help`` does not import torch.
Each stage module exposes a click command named ``cli``.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from evolcoder.errors import EvolcoderError

# name -> ("module:attribute" of its click command, one-line help). Adding a stage touches this mapping
# and one new module. A stage's code hash starts at that command (evolcoder.codehash).
COMMANDS: dict[str, tuple[str, str]] = {
    "seed": ("evolcoder.seed:cli", "Load and normalise a seed instruction set to JSONL."),
    "evolve": ("evolcoder.evolve.commands:cli", "Run one Code Evol-Instruct round: rewrite, answer, eliminate."),
    "merge": ("evolcoder.merge:cli", "Merge seed + rounds, dedup, decontaminate, shuffle."),
    "tokenize": ("evolcoder.train.tokens:cli", "Tokenise the merged dataset with the WizardCoder prompt (cached)."),
    "train": ("evolcoder.train.commands:cli", "Supervised fine-tuning (HF Trainer, optional DeepSpeed/LoRA)."),
    "generate": ("evolcoder.generate:cli", "Generate benchmark completions with a model."),
    "gather": ("evolcoder.generate:gather_cli", "Concatenate generation shards and sanitise them."),
    "score": ("evolcoder.score:cli", "Score predictions on a benchmark (pass@k, base and plus)."),
    "timings": (
        "evolcoder.benchmarks.timings:cli",
        "Measure reference outputs and CPU times once per dataset and machine.",
    ),
    "estimate": (
        "evolcoder.evolve.commands:estimate_cli",
        "Expected requests, tokens and cost of the evolution rounds.",
    ),
    "plot-evolution": ("evolcoder.evolve.stats:cli", "Plot the evolution statistics of the rounds."),
    "plot-training": ("evolcoder.train.plot:cli", "Plot a training run's loss and learning rate."),
    "table": ("evolcoder.table:cli", "Collect scores into results tables and a chart."),
    "ablation-table": ("evolcoder.ablation:cli", "Rounds ablation table and plot: pass@1 against k."),
    "select-round": ("evolcoder.selection:cli", "Round selection: evolve another round or stop (rounds: auto)."),
    "export-data": ("evolcoder.hub:export_cli", "Export the merged data set as parquet shards + dataset card."),
    "model-card": ("evolcoder.hub:model_card_cli", "Add the results table's pass@1 to a model's card (model-index)."),
    "push": ("evolcoder.hub:push_cli", "Upload the data set or a model to the Hugging Face hub (on request)."),
    "prepare-model": ("evolcoder.models:cli", "Resolve a model spec to a local directory (exports GGUF)."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, _, attr = COMMANDS[name][0].partition(":")
        cmd = getattr(importlib.import_module(module), attr)
        cmd.name = name
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_) for name, (_, help_) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.version_option(package_name="evolcoder")
def group(verbose: bool) -> None:
    """evolcoder: WizardCoder's Code Evol-Instruct, fine-tuning and evaluation.

    The Snakemake workflow calls one sub-command per stage:
    seed -> evolve (rounds 1..K) -> merge -> train -> generate -> score -> table.
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main() -> None:
    """Entry point: bad input ends with one line naming the problem, no traceback."""
    try:
        group(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except EvolcoderError as exc:
        click.echo(f"evolcoder: error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
