"""95% intervals for the headline metrics, so a number on 134-900 test items says how sure it is.

- :func:`wilson` for proportions (accuracy, precision, recall): exact enough at small ``n`` and
  never outside [0, 1], unlike the normal approximation, and not degenerate at 0 or 1.
- :func:`bootstrap` for statistics without a closed form (F1, ROC/PR AUC, Spearman's rho): a
  percentile interval over rows drawn with replacement, from a fixed seed so the interval is as
  reproducible as the metric.
- :func:`over_repeats` for a lab run several times (label draws, seeds): mean, sample standard
  deviation and a t interval of the mean. Paired differences (fine-tune minus scratch on the same
  draw) go through it too: pairing removes the draw's own difficulty.

Every interval comes back as ``{"low", "high", "method"}`` and is stored beside the value it
belongs to under ``ci95``; :func:`tolerance` turns one into the drift check's allowed change.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

Z95 = 1.959963984540054  # the standard normal's 97.5th percentile
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


def interval(low: float, high: float, method: str) -> dict[str, Any]:
    """One interval as stored in the metrics JSON (rounded as the metrics are)."""
    return {"low": round(float(low), 6), "high": round(float(high), 6), "method": method}


def wilson(successes: int, n: int) -> dict[str, Any]:
    """Wilson score interval of a proportion ``successes / n``."""
    if n <= 0:
        raise ValueError("wilson: n must be positive")
    if not 0 <= successes <= n:
        raise ValueError(f"wilson: successes = {successes} is outside 0..{n}")
    p = successes / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
    return interval(max(0.0, centre - half), min(1.0, centre + half), "wilson")


def bootstrap(
    statistic: Callable[..., float],
    *columns: np.ndarray,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, Any]:
    """Percentile bootstrap interval of ``statistic(*columns)``, resampling rows together.

    Resamples on which the statistic is undefined (say, an AUC drawn with one class only) are
    skipped; the method string records how many resamples counted.
    """
    n = len(columns[0])
    if n == 0 or any(len(c) != n for c in columns):
        raise ValueError("bootstrap: the columns must be non-empty and of one length")
    rng = np.random.default_rng(seed)
    values = []
    with warnings.catch_warnings():  # scikit-learn warns on one-class resamples, then returns nan
        warnings.simplefilter("ignore")
        for _ in range(resamples):
            rows = rng.integers(0, n, size=n)
            try:
                value = float(statistic(*(c[rows] for c in columns)))
            except ValueError:
                continue
            if math.isfinite(value):
                values.append(value)
    if not values:
        raise ValueError("bootstrap: the statistic is undefined on every resample")
    low, high = np.percentile(values, [2.5, 97.5])
    return interval(low, high, f"bootstrap ({len(values)} resamples, seed {seed})")


def t_quantile(df: int) -> float:
    """Student's t 97.5th percentile with ``df`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.975, df))


def over_repeats(
    values: Sequence[float], bounds: tuple[float, float] = (-math.inf, math.inf)
) -> tuple[float, float, dict[str, Any] | None]:
    """Mean, sample standard deviation and the t interval of the mean (None for one value),
    the interval clipped to ``bounds`` (an accuracy's mean cannot pass 1).
    """
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        raise ValueError("over_repeats: no values")
    mean = float(data.mean())
    if data.size == 1:
        return round(mean, 6), 0.0, None
    std = float(data.std(ddof=1))
    half = t_quantile(data.size - 1) * std / math.sqrt(data.size)
    low, high = max(bounds[0], mean - half), min(bounds[1], mean + half)
    return round(mean, 6), round(std, 6), interval(low, high, f"t over {data.size} repeats")


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Macro-averaged F1 over ``n_classes`` (0 for a class never true nor predicted), as
    scikit-learn's ``f1_score(average="macro", zero_division=0)`` with every label, but fast
    enough to bootstrap.
    """
    cells = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    confusion = cells.reshape(n_classes, n_classes)
    tp = np.diag(confusion).astype(float)
    denominator = 2 * tp + (confusion.sum(axis=0) - tp) + (confusion.sum(axis=1) - tp)
    return float(
        np.mean(np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0))
    )


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank (scipy's ``rankdata``), without its
    per-call overhead: the bootstrap ranks thousands of resamples.
    """
    values = np.asarray(values)
    order = np.argsort(values, kind="mergesort")
    starts = np.flatnonzero(np.r_[True, values[order][1:] != values[order][:-1]])
    ends = np.r_[starts[1:], values.size]
    ranks = np.empty(values.size)
    ranks[order] = np.repeat((starts + ends + 1) / 2, ends - starts)
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho (Pearson's r of the average ranks), as ``scipy.stats.spearmanr``; nan
    when either side is constant.
    """
    ra, rb = average_ranks(a) - (len(a) + 1) / 2, average_ranks(b) - (len(b) + 1) / 2
    denominator = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return float(ra @ rb) / denominator if denominator else math.nan


def roc_auc(truth: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of ``scores`` for the positive class ``truth`` (ties count one half), as
    scikit-learn's ``roc_auc_score``, from the rank sum (Mann-Whitney U); nan with one class.
    """
    truth = np.asarray(truth, dtype=bool)
    positives = int(truth.sum())
    negatives = truth.size - positives
    if not positives or not negatives:
        return math.nan
    rank_sum = float(average_ranks(scores)[truth].sum())
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def average_precision(truth: np.ndarray, scores: np.ndarray) -> float:
    """Average precision (PR AUC as a step sum over distinct thresholds), as scikit-learn's
    ``average_precision_score``; nan without positives.
    """
    truth = np.asarray(truth, dtype=bool)
    order = np.argsort(-np.asarray(scores, dtype=float), kind="mergesort")
    ranked, hits = np.asarray(scores)[order], truth[order]
    last_of_threshold = np.r_[np.flatnonzero(ranked[1:] != ranked[:-1]), ranked.size - 1]
    true_positives = np.cumsum(hits)[last_of_threshold]
    if not true_positives.size or true_positives[-1] == 0:
        return math.nan
    precision = true_positives / (last_of_threshold + 1)
    recall_gain = np.diff(np.r_[0, true_positives]) / true_positives[-1]
    return float(np.sum(recall_gain * precision))


def tolerance(value: float, ci95: dict[str, Any], n: int) -> float:
    """The largest change of ``value`` that another platform's run may show: the interval's
    half-width, and never less than one test item's worth (``1 / n``), since a perfect score's
    bootstrap interval has no width at all.
    """
    half = max(ci95["high"] - value, value - ci95["low"], 0.0)
    return max(half, 1.0 / n)
