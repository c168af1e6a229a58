"""The 95% intervals behind every headline metric: Wilson, the seeded bootstrap, repeats."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from dllabs.evaluation import stats
from dllabs.evaluation.stats import bootstrap, macro_f1, over_repeats, tolerance, wilson


def test_wilson_matches_the_textbook_values() -> None:
    # 8 of 10: the Wilson score interval is 0.4902 to 0.9433 (Newcombe 1998, method 3).
    ci = wilson(8, 10)
    assert (ci["low"], ci["high"]) == (
        pytest.approx(0.4902, abs=1e-4),
        pytest.approx(0.9433, abs=1e-4),
    )
    assert ci["method"] == "wilson"
    perfect = wilson(270, 270)  # not degenerate at 1, unlike the normal approximation
    assert perfect["high"] == 1.0 and 0.98 < perfect["low"] < 1.0
    assert wilson(0, 10)["low"] == 0.0 and wilson(0, 10)["high"] > 0.0
    with pytest.raises(ValueError, match=r"outside 0\.\.10"):
        wilson(11, 10)


def test_bootstrap_is_seeded_and_brackets_the_estimate() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 1.0, 400)
    first, again = bootstrap(np.mean, x), bootstrap(np.mean, x)
    assert first == again  # same seed, same interval
    assert first["low"] < np.mean(x) < first["high"]
    assert first["high"] - first["low"] == pytest.approx(2 * 1.96 / np.sqrt(400), rel=0.15)
    narrow = bootstrap(np.mean, rng.normal(1.0, 1.0, 4000))
    assert narrow["high"] - narrow["low"] < (first["high"] - first["low"]) / 2
    assert bootstrap(np.mean, x, seed=1) != first


def test_bootstrap_skips_resamples_where_the_statistic_is_undefined() -> None:
    from sklearn.metrics import roc_auc_score

    truth = np.array([True] + [False] * 9)  # many resamples miss the single positive
    scores = np.linspace(1, 0, 10)
    ci = bootstrap(roc_auc_score, truth, scores)
    assert ci["low"] == ci["high"] == 1.0
    used = int(ci["method"].split("(")[1].split()[0])
    assert 0 < used < 2000


def test_fast_macro_f1_equals_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    for n_classes in (2, 5, 10):
        y_true, y_pred = rng.integers(0, n_classes, 300), rng.integers(0, n_classes, 300)
        y_pred[:5] = 0  # and a class that is never predicted
        expected = f1_score(
            y_true, y_pred, labels=list(range(n_classes)), average="macro", zero_division=0
        )
        assert macro_f1(y_true, y_pred, n_classes) == pytest.approx(expected, abs=1e-12)


def test_repeats_give_mean_std_and_a_t_interval() -> None:
    mean, std, ci = over_repeats([0.90, 0.92, 0.94])
    assert mean == pytest.approx(0.92) and std == pytest.approx(0.02)
    half = 4.302652729911275 * 0.02 / np.sqrt(3)  # t(0.975, 2 degrees of freedom)
    assert ci["low"] == pytest.approx(0.92 - half, abs=1e-6)
    assert ci["high"] == pytest.approx(0.92 + half, abs=1e-6)
    assert ci["method"] == "t over 3 repeats"
    assert over_repeats([0.5]) == (0.5, 0.0, None)
    _, _, clipped = over_repeats([0.97, 1.0, 1.0], bounds=(0.0, 1.0))
    assert clipped["high"] == 1.0 and clipped["low"] < 0.97


def test_tolerance_is_the_half_width_and_at_least_one_item() -> None:
    assert tolerance(0.9, {"low": 0.85, "high": 0.93}, 270) == pytest.approx(0.05)
    assert tolerance(1.0, {"low": 1.0, "high": 1.0}, 500) == pytest.approx(1 / 500)


@pytest.mark.parametrize("seed", range(20))
def test_fast_rank_statistics_match_scipy_and_scikit_learn(seed: int) -> None:
    """The bootstrap's own AUC, average precision and Spearman agree with the libraries the
    headline figures come from, ties included (integer scores tie often)."""
    from scipy.stats import rankdata, spearmanr
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 200))
    scores = rng.integers(0, 6, n).astype(float) if seed % 2 else rng.normal(size=n)
    other = rng.integers(0, 4, n).astype(float)
    truth = rng.random(n) < 0.3
    truth[:2] = [True, False]  # both classes
    assert np.array_equal(stats.average_ranks(scores), rankdata(scores))
    assert stats.roc_auc(truth, scores) == pytest.approx(roc_auc_score(truth, scores), abs=1e-12)
    assert stats.average_precision(truth, scores) == pytest.approx(
        average_precision_score(truth, scores), abs=1e-12
    )
    assert stats.spearman(scores, other) == pytest.approx(spearmanr(scores, other)[0], abs=1e-12)


def test_fast_rank_statistics_are_undefined_where_the_libraries_are() -> None:
    assert np.isnan(stats.roc_auc(np.array([True, True]), np.array([0.1, 0.2])))
    assert np.isnan(stats.average_precision(np.array([False, False]), np.array([0.1, 0.2])))
    assert np.isnan(stats.spearman(np.array([1.0, 1.0, 1.0]), np.array([1.0, 2.0, 3.0])))
