"""evolcoder: Code Evol-Instruct (WizardCoder) as a reproducible pipeline."""

__version__ = "0.1.0"
