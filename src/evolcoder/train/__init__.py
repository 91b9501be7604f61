"""Fine-tuning stage (`evolcoder tokenize`, `evolcoder train`).

Importing this package is cheap (no torch).
"""

from evolcoder.train.commands import cli, tokenize_cli
from evolcoder.train.settings import TrainSettings, parse_settings, tokenize_settings

__all__ = ["cli", "tokenize_cli", "TrainSettings", "parse_settings", "tokenize_settings"]
