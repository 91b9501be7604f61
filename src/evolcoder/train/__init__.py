"""Fine-tuning stage (`evolcoder tokenize`, `evolcoder train`).

Importing this package is cheap (no torch): the Snakefile may use ``tokenize_key`` /
``tokenize_settings`` to name the tokenisation cache and ``plot_training`` in a rule.
"""

from evolcoder.train.commands import cli, tokenize_cli
from evolcoder.train.settings import TrainSettings, parse_settings, tokenize_key, tokenize_settings


def plot_training(log_history_json, out_png) -> None:
    """Loss / learning-rate plot of a run's log_history.json (lazy: imports matplotlib)."""
    from evolcoder.train.plot import plot_training as _plot

    _plot(log_history_json, out_png)


__all__ = ["cli", "tokenize_cli", "plot_training", "TrainSettings", "parse_settings", "tokenize_key",
           "tokenize_settings"]
