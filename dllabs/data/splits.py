"""Deterministic, stratified splits, and scaling fitted on training rows only.

The same seed and data always give the same split (scikit-learn's ``train_test_split`` with a
fixed ``random_state``), and every class keeps its share in each split. For the anomaly lab,
anomalous rows never enter the training split: training holds normal rows only, validation and
test hold both, so thresholds are chosen on validation rows and judged on test rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dllabs.errors import DataError


@dataclass(frozen=True)
class SplitIndices:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def stratified_indices(
    labels: np.ndarray,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    what: str = "data",
    class_names: list[str] | None = None,
) -> SplitIndices:
    """Split row indices into train/val/test, stratified by ``labels``.

    ``test_fraction`` may be 0 (sources that bring their own test split). ``class_names`` (by
    label) name the classes in errors: a user knows their folders, not the label numbers.
    """
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    counts = dict(zip(*np.unique(labels, return_counts=True), strict=True))
    needed = 1 + (val_fraction > 0) + (test_fraction > 0)
    small = [(k, int(v)) for k, v in counts.items() if v < needed + 1]
    if small:
        named = ", ".join(
            f"{class_names[int(k)] if class_names else k} ({v} row{'s' * (v != 1)})"
            for k, v in small
        )
        raise DataError(
            f"{what}: too few rows in class(es) {named} for a stratified train/val/test split "
            f"(need at least {needed + 1} each)"
        )
    index = np.arange(len(labels))
    rest, test = index, np.array([], dtype=np.int64)
    train, val = rest, np.array([], dtype=np.int64)
    try:
        if test_fraction > 0:
            rest, test = train_test_split(
                index, test_size=test_fraction, stratify=labels, random_state=seed
            )
        train = rest
        if val_fraction > 0:
            share = val_fraction / (1.0 - test_fraction)
            train, val = train_test_split(
                rest, test_size=share, stratify=labels[rest], random_state=seed + 1
            )
    except ValueError as exc:  # e.g. fewer test rows than classes
        raise DataError(f"{what}: cannot split {len(labels)} rows stratified ({exc})") from None
    return SplitIndices(np.sort(train), np.sort(val), np.sort(test))


def anomaly_indices(
    is_anomaly: np.ndarray, val_fraction: float, test_fraction: float, seed: int, what: str = "data"
) -> SplitIndices:
    """Normal rows split three ways; anomalous rows go to validation and test only.

    Anomalies are divided between validation and test in the ratio ``val : test``.
    """
    is_anomaly = np.asarray(is_anomaly, dtype=bool)
    normal = np.flatnonzero(~is_anomaly)
    anomalous = np.flatnonzero(is_anomaly)
    if len(normal) < 10:
        raise DataError(f"{what}: only {len(normal)} normal rows; need at least 10 to train on")
    if len(anomalous) < 2:
        raise DataError(f"{what}: {len(anomalous)} anomalous rows; need at least 2 (val and test)")
    rng = np.random.default_rng(seed)
    normal = rng.permutation(normal)
    n_test = max(1, round(len(normal) * test_fraction))
    n_val = max(1, round(len(normal) * val_fraction))
    test_normal, val_normal = normal[:n_test], normal[n_test : n_test + n_val]
    train = normal[n_test + n_val :]
    anomalous = rng.permutation(anomalous)
    n_val_anomalous = min(
        len(anomalous) - 1,
        max(1, round(len(anomalous) * val_fraction / (val_fraction + test_fraction))),
    )
    val = np.concatenate([val_normal, anomalous[:n_val_anomalous]])
    test = np.concatenate([test_normal, anomalous[n_val_anomalous:]])
    return SplitIndices(np.sort(train), np.sort(val), np.sort(test))


@dataclass(frozen=True)
class Scaler:
    """An affine scaling ``(x - shift) / scale`` fitted on training rows."""

    method: str
    shift: np.ndarray
    scale: np.ndarray

    def apply(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.shift) / self.scale).astype(np.float32)

    @classmethod
    def from_json(cls, record: dict) -> Scaler:
        """The scaling :meth:`to_json` recorded, to apply to new rows."""
        shift, scale = (np.asarray(record[k], np.float64).reshape(-1) for k in ("shift", "scale"))
        return cls(record["method"], shift, scale)

    def to_json(self) -> dict:
        flat = self.shift.size == 1
        return {
            "method": self.method,
            "shift": float(self.shift.reshape(-1)[0]) if flat else self.shift.tolist(),
            "scale": float(self.scale.reshape(-1)[0]) if flat else self.scale.tolist(),
        }


def fit_scaler(x_train: np.ndarray, method: str) -> Scaler:
    """``minmax``: one global min and max (TensorFlow's tutorial); ``standard``: per feature."""
    x_train = np.asarray(x_train, dtype=np.float64)
    if method == "minmax":
        low, high = x_train.min(), x_train.max()
        shift, scale = np.array([low]), np.array([high - low if high > low else 1.0])
    elif method == "standard":
        shift = x_train.mean(axis=0)
        std = x_train.std(axis=0)
        scale = np.where(std > 0, std, 1.0)
    elif method == "none":
        shift, scale = np.array([0.0]), np.array([1.0])
    else:
        raise ValueError(f"unknown scaling {method!r}")
    return Scaler(method, shift, scale)
