"""Fine-tuning stage (`evolcoder tokenize`, `evolcoder train`).

Importing this package is cheap (no torch).
"""

from evolcoder.train.commands import cli, tokenize_cli
from evolcoder.train.settings import TrainSettings, parse_settings, tokenize_settings

__all__ = ["TrainSettings", "cli", "parse_settings", "tokenize_cli", "tokenize_settings"]
