"""Unbiased pass@k (Chen et al., 2021), as a pure function."""

from __future__ import annotations

from collections.abc import Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn from n (c correct) passes."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    prob_all_fail = 1.0
    for i in range(n - c + 1, n + 1):
        prob_all_fail *= 1.0 - k / i
    return 1.0 - prob_all_fail


def mean_pass_at_k(ns: Sequence[int], cs: Sequence[int], k: int) -> float:
    if not ns:
        return 0.0
    return sum(pass_at_k(n, c, k) for n, c in zip(ns, cs, strict=True)) / len(ns)


def pass_at_k_table(ns: Sequence[int], cs: Sequence[int], ks: Sequence[int] = (1, 10, 100)) -> dict:
    """``{"pass@1": percent, ...}`` for every requested k that every task has samples for.

    pass@1 is always reported; other ks need n >= k for all tasks. Values are percentages
    rounded to 0.1 as papers print them; the unrounded fraction is kept under ``raw``.
    """
    if not ns:
        return {"pass@1": 0.0, "raw": {"pass@1": 0.0}}
    n_min = min(ns)
    wanted = sorted({1, *[int(k) for k in ks]})
    out: dict = {}
    raw: dict = {}
    for k in wanted:
        if k <= n_min:
            v = mean_pass_at_k(ns, cs, k)
            raw[f"pass@{k}"] = v
            out[f"pass@{k}"] = round(100.0 * v, 1)
    out["raw"] = raw
    return out
