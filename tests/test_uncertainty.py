"""Intervals and paired tests (evolcoder.uncertainty) against hand-computed values and reference libraries."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from evolcoder import uncertainty
from evolcoder.table import write_table

Z2 = uncertainty.Z95**2


@pytest.mark.parametrize(
    "successes, n, expected",
    [
        # by hand: at the edges the Wilson bounds are 0/1 and n / (n + z^2) or z^2 / (n + z^2)
        (0, 10, (0.0, Z2 / (10 + Z2))),
        (10, 10, (10 / (10 + Z2), 1.0)),
        (0, 1, (0.0, Z2 / (1 + Z2))),
        (1, 1, (1 / (1 + Z2), 1.0)),
        # 82/164 = 0.5: centre 0.5, half-width z*sqrt(0.25/164 + z^2/(4*164^2)) / (1 + z^2/164)
        (82, 164, (0.5 - 0.07566, 0.5 + 0.07566)),
    ],
)
def test_wilson_by_hand(successes, n, expected):
    lo, hi = uncertainty.wilson(successes, n)
    assert lo == pytest.approx(expected[0], abs=1e-4) and hi == pytest.approx(expected[1], abs=1e-4)


@pytest.mark.parametrize("successes, n", [(0, 1), (1, 1), (0, 164), (164, 164), (1, 164), (98, 164), (7, 12), (3, 3)])
def test_wilson_matches_statsmodels(successes, n):
    proportion_confint = pytest.importorskip("statsmodels.stats.proportion").proportion_confint
    lo, hi = proportion_confint(successes, n, alpha=0.05, method="wilson")
    ours = uncertainty.wilson(successes, n)
    assert ours == pytest.approx((lo, hi), abs=1e-9)


def test_wilson_rejects_bad_counts_and_empty_is_uninformative():
    with pytest.raises(ValueError):
        uncertainty.wilson(3, 2)
    assert uncertainty.wilson(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize(
    "only_a, only_b, expected",
    [
        (0, 0, 1.0),  # no discordant pairs (all ties): no evidence either way
        (1, 0, 1.0),  # 2 * 1/2
        (5, 0, 2 / 32),
        (0, 5, 2 / 32),
        (3, 3, 1.0),
        (10, 2, 2 * (1 + 12 + 66) / 4096),
    ],
)
def test_mcnemar_exact_by_hand(only_a, only_b, expected):
    assert uncertainty.mcnemar_exact(only_a, only_b) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("k, n", [(0, 1), (1, 1), (2, 9), (4, 9), (7, 30), (15, 30), (0, 40), (12, 25)])
def test_binomial_matches_scipy(k, n):
    binomtest = pytest.importorskip("scipy.stats").binomtest
    assert uncertainty.binom_two_sided(k, n) == pytest.approx(binomtest(k, n, 0.5).pvalue, rel=1e-9)


def test_compare_greedy_is_mcnemar_on_discordant_tasks():
    # A passes tasks 0-5, B passes 0-1 and 6: A alone 4 (2..5), B alone 1 (6), ties elsewhere
    a = [1] * 6 + [0] * 4
    b = [1, 1, 0, 0, 0, 0, 1, 0, 0, 0]
    res = uncertainty.compare([1] * 10, a, [1] * 10, b)
    assert res["test"] == "mcnemar-exact" and (res["only_a"], res["only_b"]) == (4, 1)
    assert res["p_value"] == pytest.approx(2 * (1 + 5) / 32)
    assert res["difference"] == pytest.approx(0.3)
    same = uncertainty.compare([1] * 10, a, [1] * 10, a)
    assert same["p_value"] == 1.0 and same["difference"] == 0.0


def test_bootstrap_edges_and_determinism():
    ns = [5] * 20
    assert uncertainty.bootstrap_pass_at_k(ns, [0] * 20, 1) == (0.0, 0.0)
    assert uncertainty.bootstrap_pass_at_k(ns, [5] * 20, 1) == (1.0, 1.0)
    assert uncertainty.bootstrap_pass_at_k([1], [1], 1) == (1.0, 1.0)  # one task, one sample
    cs = [random.Random(i).randrange(6) for i in range(20)]
    first = uncertainty.bootstrap_pass_at_k(ns, cs, 1)
    assert first == uncertainty.bootstrap_pass_at_k(ns, cs, 1)  # seeded
    mean = sum(c / 5 for c in cs) / 20
    assert first[0] < mean < first[1]
    lo2, hi2 = uncertainty.bootstrap_pass_at_k(ns, cs, 2)
    assert lo2 >= first[0] and hi2 >= first[1]  # pass@2 >= pass@1 task by task


def test_bootstrap_matches_scipy_percentile_bootstrap():
    sp = pytest.importorskip("scipy.stats")
    rng = random.Random(3)
    ns = [10] * 80
    cs = [rng.randrange(11) for _ in ns]
    per_task = uncertainty.per_task_pass_at_k(ns, cs, 1)
    ref = sp.bootstrap((per_task,), lambda x: sum(x) / len(x), vectorized=False, n_resamples=4000, method="percentile",
                       random_state=0)  # fmt: skip
    lo, hi = uncertainty.bootstrap_pass_at_k(ns, cs, 1, reps=4000)
    ci = ref.confidence_interval
    assert lo == pytest.approx(ci.low, abs=0.01) and hi == pytest.approx(ci.high, abs=0.01)


def test_greedy_bootstrap_agrees_with_wilson_on_many_tasks():
    cs = [1] * 60 + [0] * 104
    lo_w, hi_w = uncertainty.wilson(60, 164)
    lo_b, hi_b = uncertainty.bootstrap_pass_at_k([1] * 164, cs, 1)
    assert math.isclose(lo_w, lo_b, abs_tol=0.015) and math.isclose(hi_w, hi_b, abs_tol=0.015)
    assert uncertainty.pass_at_k_interval([1] * 164, cs, 1)[2] == "wilson"
    assert uncertainty.pass_at_k_interval([2] * 164, [c * 2 for c in cs], 1)[2] == "bootstrap"


def test_paired_bootstrap_ties_and_a_clear_difference():
    a = [0.5] * 30
    assert uncertainty.paired_bootstrap(a, a) == (0.0, (0.0, 0.0), 1.0)
    better = [1.0] * 25 + [0.0] * 5
    worse = [0.0] * 25 + [0.0] * 5
    diff, (lo, hi), p = uncertainty.paired_bootstrap(better, worse)
    assert diff == pytest.approx(25 / 30) and 0 < lo <= hi and p == 0.0
    mixed_a = [1.0, 0.0] * 15
    mixed_b = [0.0, 1.0] * 15
    _diff, _ci, p_mixed = uncertainty.paired_bootstrap(mixed_a, mixed_b)
    assert p_mixed > 0.5
    assert uncertainty.paired_bootstrap(mixed_a, mixed_b) == uncertainty.paired_bootstrap(mixed_a, mixed_b)
    with pytest.raises(ValueError):
        uncertainty.paired_bootstrap([1.0], [1.0, 0.0])


def _score_file(path, model, verdicts, n=1):
    """A minimal score file with per-task verdicts: verdicts[t] = number of passing samples of n."""
    per_task = {
        f"HumanEval/{t}": {"n": n, "base": ["pass"] * c + ["fail"] * (n - c), "base_correct": c}
        for t, c in enumerate(verdicts)
    }
    p1 = round(100 * sum(c / n for c in verdicts) / len(verdicts), 1)
    res = {
        "model": model,
        "benchmark": "humaneval",
        "labels": {"base": "HumanEval", "plus": "HumanEval+"},
        "n_samples_per_task": n,
        "n_tasks": len(verdicts),
        "dataset": {"name": "humaneval", "version": "v0.1.10", "sha256": "ab" * 32},
        "evaluator": {"name": "evolcoder", "version": "0.1.0", "semantics": "evalplus-0.3.1"},
        "base": {"pass@1": p1},
        "per_task": per_task,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res))
    return str(path)


def test_table_rows_carry_intervals_and_chained_rows_a_paired_test(tmp_path):
    base = _score_file(tmp_path / "base/humaneval/greedy.json", "base", [0] * 20)
    seed = _score_file(tmp_path / "seed/humaneval/greedy.json", "seed", [1] * 5 + [0] * 15)
    evolved = _score_file(tmp_path / "evolved/humaneval/greedy.json", "evolved", [1] * 6 + [0] * 14)
    chain = [("base", "base (untuned)"), ("seed", "seed only"), ("evolved", "evolved")]
    rows = write_table([evolved, base, seed], str(tmp_path / "out"), chain=chain)
    assert [r["model"] for r in rows] == ["base", "seed", "evolved"]
    lo, hi = uncertainty.wilson(5, 20)
    assert (rows[1]["pass@1_lo"], rows[1]["pass@1_hi"]) == (round(100 * lo, 1), round(100 * hi, 1))
    assert rows[0]["pass@1_lo"] == 0.0 and "p_value" not in rows[0]
    assert rows[1]["vs"] == "base" and rows[1]["p_value"] == round(2 / 32, 4) and rows[1]["test"] == "mcnemar-exact"
    assert rows[2]["vs"] == "seed" and rows[2]["p_value"] == 1.0 and rows[2]["vs_delta"] == 5.0
    md = (tmp_path / "out/scores.md").read_text()
    assert "25.0 [11.2, 46.9]" in md and "+25.0 vs base (p = 0.062, McNemar, 20 tasks)" in md
    assert "seed — seed only" in md
    out = json.loads((tmp_path / "out/scores.json").read_text())["rows"]
    assert out[2]["pass@1_hi"] == rows[2]["pass@1_hi"]
    assert "pass@1_lo" in (tmp_path / "out/scores.csv").read_text().splitlines()[0]


def test_sampled_rows_get_bootstrap_intervals_for_every_k(tmp_path):
    a = _score_file(tmp_path / "a/humaneval/sampled.json", "a", [0, 1, 2, 3, 4, 5] * 3, n=5)
    res = json.loads(Path(a).read_text())
    res["base"]["pass@2"] = 50.0
    Path(a).write_text(json.dumps(res))
    b = _score_file(tmp_path / "b/humaneval/sampled.json", "b", [0] * 18, n=5)
    rows = write_table([a, b], str(tmp_path / "out"), chain=[("b", "base"), ("a", "tuned")])
    ra = next(r for r in rows if r["model"] == "a")
    assert ra["ci_method"] == "pass@1: bootstrap, pass@2: bootstrap"
    assert ra["pass@1_lo"] < ra["pass@1"] < ra["pass@1_hi"] and ra["pass@2_hi"] >= ra["pass@1_hi"]
    assert ra["test"] == "paired-bootstrap" and ra["p_value"] < 0.01
