"""Reconstruction errors, thresholds and scores for the anomaly lab (NumPy and scikit-learn only).

A row is flagged anomalous when its reconstruction error is at or above the threshold, the rule
of TensorFlow's autoencoder tutorial (``loss < threshold`` is normal). Thresholds come from
training and validation errors only, never from test rows:

- ``mean_std``: mean + k * std of the training error (the tutorial's rule, k = 1 there);
- ``percentile``: a percentile of the *normal* validation rows' error;
- ``max_f1``: the threshold with the best F1 on the validation split, which holds both classes.
"""

from __future__ import annotations

import numpy as np

from dllabs.errors import DataError
from dllabs.evaluation.stats import average_precision, bootstrap, roc_auc, wilson


def reconstruction_errors(x: np.ndarray, reconstructed: np.ndarray, loss: str) -> np.ndarray:
    """Per-row error, measured with the loss the autoencoder was trained on."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    r = np.asarray(reconstructed, dtype=np.float64).reshape(len(x), -1)
    if loss == "mae":
        return np.abs(x - r).mean(axis=1)
    if loss == "mse":
        return ((x - r) ** 2).mean(axis=1)
    if loss == "binary_crossentropy":
        r = np.clip(r, 1e-7, 1 - 1e-7)
        return -(x * np.log(r) + (1 - x) * np.log(1 - r)).mean(axis=1)
    raise ValueError(f"unknown loss {loss!r}")


def require_finite(errors: np.ndarray, what: str) -> np.ndarray:
    """``errors`` as float64, or a one-line error when any is NaN or infinite.

    Such an error compares false with every threshold: a NaN threshold flags nothing (F1 0), and a
    NaN error is never flagged, so the scores would be silently wrong. They come from a model that
    diverged or from rows with extreme values.
    """
    errors = np.asarray(errors, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(errors))
    if len(bad):
        rows = ", ".join(str(int(i)) for i in bad[:5]) + (", ..." if len(bad) > 5 else "")
        raise DataError(
            f"{what}: {len(bad)} of {len(errors)} reconstruction errors are NaN or infinite "
            f"(rows {rows}): the autoencoder diverged or the rows hold extreme values; lower "
            "autoencoder.learning_rate or check data.anomaly_scaling"
        )
    return errors


def saved_threshold(chosen: object, where: object) -> float:
    """The threshold in what ``threshold_anomaly`` wrote (read from ``where``): a finite number."""
    value = chosen.get("threshold") if isinstance(chosen, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        raise DataError(f"{where}: threshold {value!r}, expected a finite number")
    return float(value)


def choose_threshold(
    method: str,
    train_errors: np.ndarray,
    val_errors: np.ndarray,
    val_is_anomaly: np.ndarray,
    k: float,
    percentile: float,
) -> float:
    """The anomaly threshold by ``method``, from training and validation errors only."""
    train_errors = require_finite(train_errors, "training rows")
    val_errors = require_finite(val_errors, "validation rows")
    val_is_anomaly = np.asarray(val_is_anomaly, dtype=bool)
    if method == "mean_std":
        return float(np.mean(train_errors) + k * np.std(train_errors))
    if method == "percentile":
        normal = np.asarray(val_errors)[~val_is_anomaly]
        if not len(normal):
            raise DataError("anomaly.threshold_method 'percentile' needs normal validation rows")
        return float(np.percentile(normal, percentile))
    if method == "max_f1":
        if val_is_anomaly.all() or not val_is_anomaly.any():
            raise DataError("anomaly.threshold_method 'max_f1' needs both classes in validation")
        from sklearn.metrics import precision_recall_curve

        precision, recall, thresholds = precision_recall_curve(val_is_anomaly, val_errors)
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        return float(thresholds[int(np.argmax(f1[:-1]))])
    raise ValueError(f"unknown threshold method {method!r}")


def detection_scores(is_anomaly: np.ndarray, errors: np.ndarray, threshold: float) -> dict:
    """Scores with anomaly as the positive class, plus normal-class precision and recall.

    The normal-class figures compare with TensorFlow's tutorial, which reports them that way.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    truth = np.asarray(is_anomaly, dtype=bool)
    flagged = np.asarray(errors) >= threshold
    tp = int((truth & flagged).sum())
    fp = int((~truth & flagged).sum())
    tn = int((~truth & ~flagged).sum())
    fn = int((truth & ~flagged).sum())

    def ratio(num: int, den: int) -> float:
        return round(num / den, 6) if den else 0.0

    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    both_classes = truth.any() and (~truth).any()
    return {
        "n": len(truth),
        "precision": precision,
        "recall": recall,
        "f1": round(2 * precision * recall / (precision + recall), 6)
        if precision + recall
        else 0.0,
        "accuracy": ratio(tp + tn, len(truth)),
        "roc_auc": round(float(roc_auc_score(truth, errors)), 6) if both_classes else None,
        "pr_auc": round(float(average_precision_score(truth, errors)), 6) if both_classes else None,
        "confusion": {"tp": tp, "fp": fp, "tn": tn, "fn": fn},
        "normal_precision": ratio(tn, tn + fn),
        "normal_recall": ratio(tn, tn + fp),
        "ci95": detection_intervals(truth, np.asarray(errors), threshold, both_classes),
    }


def detection_intervals(
    truth: np.ndarray, errors: np.ndarray, threshold: float, both_classes: bool
) -> dict[str, dict]:
    """95% intervals: Wilson for the proportions, a seeded bootstrap for F1 and the AUCs."""
    flagged = errors >= threshold
    tp, fp, fn = (
        int(np.sum(a & b)) for a, b in ((truth, flagged), (~truth, flagged), (truth, ~flagged))
    )
    intervals = {"accuracy": wilson(int(np.sum(truth == flagged)), len(truth))}
    if tp + fp:
        intervals["precision"] = wilson(tp, tp + fp)
    if tp + fn:
        intervals["recall"] = wilson(tp, tp + fn)

    def f1(t: np.ndarray, e: np.ndarray) -> float:
        hit = e >= threshold
        tp_ = np.sum(t & hit)
        return 2 * tp_ / max(1, 2 * tp_ + np.sum(~t & hit) + np.sum(t & ~hit))

    intervals["f1"] = bootstrap(f1, truth, errors)
    if both_classes:
        intervals["roc_auc"] = bootstrap(roc_auc, truth, errors)
        intervals["pr_auc"] = bootstrap(average_precision, truth, errors)
    return intervals
