"""Significance of baseline-vs-reasoning differences: McNemar, Holm and a paired bootstrap.

The two models answer the same test examples, so the tests are paired: McNemar looks only at the
discordant examples (one model right, the other wrong), which is what the paper reports. The exact
binomial version is used when there are few discordant pairs (< 25), where the chi-square
approximation is poor; otherwise chi-square with continuity correction. Per-class tests are many
tests at once, so their p-values are Holm-adjusted. The bootstrap gives an interval for the accuracy
difference, which a p-value alone does not. The statistics come from statsmodels/scipy; this module
only decides which test applies and packages the result.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.stats import binomtest
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

EXACT_BELOW = 25  # discordant pairs below this: exact binomial test
ALPHA = 0.05


def discordant(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> tuple[int, int, int, int]:
    """(both right, b01 = a right & b wrong, b10 = a wrong & b right, both wrong)."""
    a = np.asarray(a_correct, dtype=bool)
    b = np.asarray(b_correct, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"paired vectors differ in length: {a.shape} vs {b.shape}")
    return (int(np.sum(a & b)), int(np.sum(a & ~b)), int(np.sum(~a & b)), int(np.sum(~a & ~b)))


def mcnemar_test(a_correct: Sequence[bool], b_correct: Sequence[bool], alpha: float = ALPHA) -> dict:
    """McNemar's test on paired correctness vectors.

    Returns {"b01", "b10", "n", "statistic", "pvalue", "method": "exact"|"chi2", "significant"}.
    With no discordant pair at all the models agree everywhere: p = 1.
    """
    both, b01, b10, neither = discordant(a_correct, b_correct)
    exact = (b01 + b10) < EXACT_BELOW
    if b01 + b10 == 0:
        statistic, pvalue = 0.0, 1.0
    else:
        res = mcnemar([[both, b01], [b10, neither]], exact=exact, correction=True)
        statistic, pvalue = float(res.statistic), float(min(1.0, res.pvalue))
    return {"b01": b01, "b10": b10, "n": both + b01 + b10 + neither, "statistic": statistic,
            "pvalue": pvalue, "method": "exact" if exact else "chi2", "significant": bool(pvalue < alpha)}


def holm(pvalues: Sequence[float], alpha: float = ALPHA) -> tuple[list[float], list[bool]]:
    """Holm-adjusted p-values and rejections (statsmodels multipletests), in input order."""
    if len(pvalues) == 0:
        return [], []
    reject, adjusted, _, _ = multipletests(np.asarray(pvalues, dtype=float), alpha=alpha, method="holm")
    return [float(p) for p in adjusted], [bool(r) for r in reject]


def paired_bootstrap_ci(a_correct: Sequence[bool], b_correct: Sequence[bool], n_boot: int = 10_000,
                        seed: int = 0, level: float = 0.95,
                        groups: Sequence | None = None) -> tuple[float, float]:
    """Percentile interval for accuracy(b) - accuracy(a), resampling test examples with replacement.

    Both models are scored on the same resample (paired), so the interval reflects the difference,
    not two independent noises. With `groups` (e.g. example ids when several seed runs are pooled)
    whole groups are resampled, so repeated runs on one example are not taken for independent data.
    Seeded: the same inputs and seed give the same interval.
    """
    a = np.asarray(a_correct, dtype=float)
    b = np.asarray(b_correct, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired vectors differ in length: {a.shape} vs {b.shape}")
    if a.size == 0:
        return float("nan"), float("nan")
    diff = b - a
    if groups is None:
        sums, counts = diff, np.ones_like(diff)
    else:
        _, inverse = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
        sums = np.bincount(inverse, weights=diff)
        counts = np.bincount(inverse).astype(float)
    m = sums.size
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot)
    chunk = max(1, 2_000_000 // m)  # bounds memory: chunk x m indices at a time
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, m, size=(stop - start, m))
        stats[start:stop] = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(stats, [tail, 100.0 - tail])
    return float(lo), float(hi)


def binomial_vs_reference(successes: int, trials: int, p0: float) -> float:
    """Two-sided exact binomial p-value of `successes`/`trials` against a reported rate p0.

    Used to say whether this run's accuracy or recall differs from the paper's number by more than
    test-set sampling noise. NaN when there is nothing to test.
    """
    if trials <= 0 or p0 is None or not (0.0 <= p0 <= 1.0):
        return float("nan")
    return float(binomtest(int(successes), int(trials), float(p0)).pvalue)
