"""Uncertainty of pass@k over tasks, and paired tests between two models on the same tasks.

- :func:`wilson`: Wilson score interval of a proportion (greedy pass@1: passed tasks / tasks);
- :func:`bootstrap_pass_at_k`: percentile bootstrap over tasks of the unbiased pass@k from n samples;
- :func:`mcnemar_exact`: exact McNemar test (two-sided binomial test on the discordant pairs) for two
  greedy runs on the same tasks;
- :func:`paired_bootstrap`: paired bootstrap over tasks of the difference of per-task pass@k (sampled).

Standard library only; every bootstrap is seeded, so the same inputs give the same numbers.
Intervals and differences are fractions in [0, 1] (the table prints percentages).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from evolcoder.passk import pass_at_k

Z95 = 1.959963984540054  # the 97.5% quantile of the standard normal distribution
BOOTSTRAP_REPS = 2000
BOOTSTRAP_SEED = 0


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of ``successes`` out of ``n`` (95% by default); ``(0, 1)`` when n = 0."""
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"wilson: need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    lo, hi = centre - half, centre + half
    # exact at the edges (the formula gives them up to rounding)
    return (0.0 if successes == 0 else max(0.0, lo)), (1.0 if successes == n else min(1.0, hi))


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default ``percentile``)."""
    if not sorted_values:
        raise ValueError("percentile of nothing")
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def bootstrap_mean_interval(
    values: Sequence[float], reps: int = BOOTSTRAP_REPS, seed: int = BOOTSTRAP_SEED, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-task ``values`` (tasks resampled with replacement)."""
    n = len(values)
    if n == 0:
        return 0.0, 1.0
    rng = random.Random(seed)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(reps))
    alpha = (1 - level) / 2
    return _percentile(means, alpha), _percentile(means, 1 - alpha)


def per_task_pass_at_k(ns: Sequence[int], cs: Sequence[int], k: int) -> list[float]:
    return [pass_at_k(n, c, k) for n, c in zip(ns, cs, strict=True)]


def bootstrap_pass_at_k(
    ns: Sequence[int], cs: Sequence[int], k: int, reps: int = BOOTSTRAP_REPS, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float]:
    """95% percentile-bootstrap interval over tasks of mean unbiased pass@k (n samples, c correct per task)."""
    return bootstrap_mean_interval(per_task_pass_at_k(ns, cs, k), reps, seed)


def pass_at_k_interval(ns: Sequence[int], cs: Sequence[int], k: int) -> tuple[float, float, str]:
    """The interval the table shows: Wilson for pass@1 with one sample per task, else the bootstrap."""
    if k == 1 and ns and all(n == 1 for n in ns):
        return (*wilson(sum(1 for c in cs if c), len(ns)), "wilson")
    return (*bootstrap_pass_at_k(ns, cs, k), "bootstrap")


def binom_two_sided(k: int, n: int, p: float = 0.5) -> float:
    """Exact two-sided binomial test p-value: the probability of outcomes no more likely than ``k``
    (scipy.stats.binomtest's definition, with its relative tolerance for ties of probability)."""
    if n == 0:
        return 1.0
    pmf = [math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(n + 1)]
    d = pmf[k] * (1 + 1e-7)
    return min(1.0, sum(q for q in pmf if q <= d))


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Exact McNemar p-value of two paired binary outcomes: ``only_a`` tasks passed by A alone,
    ``only_b`` by B alone (the discordant pairs); 1.0 when there are none."""
    if only_a < 0 or only_b < 0:
        raise ValueError("mcnemar_exact: counts must be >= 0")
    n = only_a + only_b
    return binom_two_sided(min(only_a, only_b), n) if n else 1.0


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], reps: int = BOOTSTRAP_REPS, seed: int = BOOTSTRAP_SEED
) -> tuple[float, tuple[float, float], float]:
    """Paired bootstrap over tasks of mean(a) - mean(b): ``(difference, 95% interval, two-sided p)``.

    p is twice the smaller share of resampled differences on either side of zero (counting zeros
    half to each side), at least ``1 / reps``-resolution and at most 1; identical per-task values give 1.
    """
    if len(a) != len(b):
        raise ValueError("paired_bootstrap: a and b must have the same tasks")
    n = len(a)
    if n == 0:
        return 0.0, (0.0, 0.0), 1.0
    d = [x - y for x, y in zip(a, b, strict=True)]
    diff = sum(d) / n
    if all(v == 0 for v in d):
        return 0.0, (0.0, 0.0), 1.0
    rng = random.Random(seed)
    boots = sorted(sum(d[rng.randrange(n)] for _ in range(n)) / n for _ in range(reps))
    below = sum(1 for v in boots if v < 0) + 0.5 * sum(1 for v in boots if v == 0)
    above = reps - below
    p = min(1.0, 2 * min(below, above) / reps)
    return diff, (_percentile(boots, 0.025), _percentile(boots, 0.975)), p


def compare(ns_a, cs_a, ns_b, cs_b, k: int = 1) -> dict:
    """Paired test of A against B on the same tasks (lists in the same task order).

    Greedy (one sample per task in both): exact McNemar on the tasks one passed and the other not.
    Sampled: paired bootstrap of per-task pass@k.
    """
    if len(ns_a) != len(ns_b):
        raise ValueError("compare: A and B must cover the same tasks")
    if k == 1 and all(n == 1 for n in [*ns_a, *ns_b]):
        only_a = sum(1 for ca, cb in zip(cs_a, cs_b, strict=True) if ca and not cb)
        only_b = sum(1 for ca, cb in zip(cs_a, cs_b, strict=True) if cb and not ca)
        diff = (only_a - only_b) / len(ns_a) if ns_a else 0.0
        return {
            "test": "mcnemar-exact",
            "difference": diff,
            "only_a": only_a,
            "only_b": only_b,
            "p_value": mcnemar_exact(only_a, only_b),
            "n_tasks": len(ns_a),
        }
    diff, ci, p = paired_bootstrap(per_task_pass_at_k(ns_a, cs_a, k), per_task_pass_at_k(ns_b, cs_b, k))
    return {"test": "paired-bootstrap", "difference": diff, "ci": list(ci), "p_value": p, "n_tasks": len(ns_a)}
