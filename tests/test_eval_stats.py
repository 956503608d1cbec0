"""eval.stats against scipy/statsmodels and hand computations."""
import numpy as np
import pytest
from scipy.stats import binomtest, chi2
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from eval.stats import binomial_vs_reference, discordant, holm, mcnemar_test, paired_bootstrap_ci


def pairs(both: int, b01: int, b10: int, neither: int, seed: int = 0):
    """Paired correctness vectors with exactly these cell counts, shuffled."""
    a = [True] * both + [True] * b01 + [False] * b10 + [False] * neither
    b = [True] * both + [False] * b01 + [True] * b10 + [False] * neither
    order = np.random.default_rng(seed).permutation(len(a))
    return np.array(a)[order], np.array(b)[order]


def test_discordant_counts():
    a, b = pairs(7, 3, 5, 2)
    assert discordant(a, b) == (7, 3, 5, 2)


@pytest.mark.parametrize("b01,b10", [(3, 12), (0, 6), (11, 13), (9, 9)])
def test_exact_mcnemar_matches_binomtest(b01, b10):
    a, b = pairs(40, b01, b10, 20)
    r = mcnemar_test(a, b)
    assert r["method"] == "exact"
    assert (r["b01"], r["b10"]) == (b01, b10)
    assert r["pvalue"] == pytest.approx(binomtest(min(b01, b10), b01 + b10, 0.5).pvalue, rel=1e-12)


@pytest.mark.parametrize("b01,b10", [(10, 30), (12, 13), (420, 580)])
def test_chi2_mcnemar_matches_statsmodels_and_formula(b01, b10):
    a, b = pairs(500, b01, b10, 100)
    r = mcnemar_test(a, b)
    assert r["method"] == "chi2"
    expected = mcnemar([[500, b01], [b10, 100]], exact=False, correction=True).pvalue
    assert r["pvalue"] == pytest.approx(expected, rel=1e-12)
    stat = (abs(b01 - b10) - 1) ** 2 / (b01 + b10)  # continuity-corrected statistic by hand
    assert r["statistic"] == pytest.approx(stat)
    assert r["pvalue"] == pytest.approx(chi2.sf(stat, 1), rel=1e-9)


def test_switch_from_exact_to_chi2_at_25_discordant_pairs():
    assert mcnemar_test(*pairs(10, 4, 20, 10))["method"] == "exact"   # 24
    assert mcnemar_test(*pairs(10, 5, 20, 10))["method"] == "chi2"    # 25


def test_no_discordant_pairs_gives_p_one_and_not_significant():
    r = mcnemar_test(*pairs(30, 0, 0, 5))
    assert r["pvalue"] == 1.0 and r["significant"] is False


def test_significance_flag_follows_alpha():
    assert mcnemar_test(*pairs(50, 2, 15, 10))["significant"] is True   # p ~ 0.002
    assert mcnemar_test(*pairs(50, 6, 9, 10))["significant"] is False


def test_holm_by_hand_and_against_statsmodels():
    p = [0.01, 0.04, 0.03]
    adj, rej = holm(p)
    # sorted 0.01*3=0.03, 0.03*2=0.06, 0.04*1 -> raised to the running max 0.06
    assert adj == pytest.approx([0.03, 0.06, 0.06])
    assert rej == [True, False, False]
    p = [0.2, 0.001, 0.049, 0.012, 0.5, 0.0004]
    adj, rej = holm(p)
    ref_rej, ref_adj, _, _ = multipletests(p, alpha=0.05, method="holm")
    assert adj == pytest.approx(ref_adj.tolist())
    assert rej == ref_rej.tolist()
    assert holm([]) == ([], [])


def test_bootstrap_ci_equals_a_naive_resampling_with_the_same_seed():
    a, b = pairs(120, 30, 50, 0, seed=1)
    lo, hi = paired_bootstrap_ci(a, b, n_boot=2000, seed=7)
    rng = np.random.default_rng(7)
    idx = rng.integers(0, a.size, size=(2000, a.size))
    diffs = b[idx].mean(axis=1) - a[idx].mean(axis=1)
    assert (lo, hi) == pytest.approx(tuple(np.percentile(diffs, [2.5, 97.5])))


def test_bootstrap_ci_contains_point_diff_is_seeded_and_about_normal_width():
    a, b = pairs(600, 150, 250, 200, seed=2)
    diff = b.mean() - a.mean()
    lo, hi = paired_bootstrap_ci(a, b, seed=3)
    assert lo < diff < hi
    assert (lo, hi) == paired_bootstrap_ci(a, b, seed=3)
    assert (lo, hi) != paired_bootstrap_ci(a, b, seed=4)
    d = b.astype(float) - a.astype(float)
    se = d.std(ddof=1) / np.sqrt(d.size)
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.1)
    assert 0 < lo  # 100 more wins than losses on 1200 examples is a clear difference


def test_clustered_bootstrap_does_not_count_repeated_runs_as_new_data():
    a, b = pairs(200, 60, 80, 60, seed=5)
    ids = [f"ex{i}" for i in range(a.size)]
    lo1, hi1 = paired_bootstrap_ci(a, b, seed=0)
    a2, b2, ids2 = np.concatenate([a, a]), np.concatenate([b, b]), ids + ids  # the same run twice
    lo_naive, hi_naive = paired_bootstrap_ci(a2, b2, seed=0)
    lo_cl, hi_cl = paired_bootstrap_ci(a2, b2, seed=0, groups=ids2)
    assert (hi_naive - lo_naive) < 0.8 * (hi1 - lo1)        # naive pooling shrinks by ~1/sqrt(2)
    assert (hi_cl - lo_cl) == pytest.approx(hi1 - lo1, rel=0.1)


def test_binomial_vs_reference():
    assert binomial_vs_reference(58, 100, 0.497) == pytest.approx(binomtest(58, 100, 0.497).pvalue)
    assert np.isnan(binomial_vs_reference(0, 0, 0.5))
