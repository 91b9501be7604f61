"""User-facing errors: caught by the CLI and printed as one line."""


class EvolcoderError(Exception):
    """Bad input or an unreachable service; the message names what is wrong."""


class DataError(EvolcoderError):
    """A data file (seed, predictions, dataset) is malformed."""


class BackendError(EvolcoderError):
    """An LLM backend or endpoint failed in a way retries cannot fix."""
