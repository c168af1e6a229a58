"""Deterministic stratified splits; anomalies never reach training; train-only scaling."""

from __future__ import annotations

import numpy as np
import pytest

from dllabs.data.splits import anomaly_indices, fit_scaler, stratified_indices
from dllabs.errors import DataError

LABELS = np.repeat(np.arange(5), [40, 60, 80, 100, 120])


def test_split_is_a_partition() -> None:
    idx = stratified_indices(LABELS, 0.15, 0.15, seed=1)
    everything = np.concatenate([idx.train, idx.val, idx.test])
    assert sorted(everything.tolist()) == list(range(len(LABELS)))
    assert len(idx.test) == round(0.15 * len(LABELS))


def test_split_is_deterministic_and_seed_dependent() -> None:
    first = stratified_indices(LABELS, 0.15, 0.15, seed=7)
    again = stratified_indices(LABELS, 0.15, 0.15, seed=7)
    other = stratified_indices(LABELS, 0.15, 0.15, seed=8)
    for name in ("train", "val", "test"):
        assert np.array_equal(getattr(first, name), getattr(again, name))
    assert not np.array_equal(first.test, other.test)


def test_split_is_stratified() -> None:
    idx = stratified_indices(LABELS, 0.2, 0.2, seed=3)
    overall = np.bincount(LABELS) / len(LABELS)
    for rows in (idx.train, idx.val, idx.test):
        share = np.bincount(LABELS[rows], minlength=5) / len(rows)
        assert np.abs(share - overall).max() < 0.02


def test_val_only_split_for_sources_with_their_own_test_set() -> None:
    idx = stratified_indices(LABELS, 0.25, 0.0, seed=0)
    assert len(idx.test) == 0
    assert len(idx.val) == 100


def test_tiny_class_is_a_clear_error_naming_the_class() -> None:
    labels = np.array([0] * 20 + [1] * 2)
    with pytest.raises(DataError, match=r"mydata: too few rows in class\(es\) 1 \(2 rows\)"):
        stratified_indices(labels, 0.2, 0.2, seed=0, what="mydata")
    with pytest.raises(DataError, match=r"class\(es\) dogs \(2 rows\) for a stratified"):
        stratified_indices(labels, 0.2, 0.2, seed=0, class_names=["cats", "dogs"])


def test_no_anomalous_row_in_training() -> None:
    rng = np.random.default_rng(0)
    is_anomaly = rng.random(500) < 0.3
    idx = anomaly_indices(is_anomaly, 0.15, 0.15, seed=5)
    assert not is_anomaly[idx.train].any()
    assert is_anomaly[idx.val].any() and (~is_anomaly[idx.val]).any()
    assert is_anomaly[idx.test].any() and (~is_anomaly[idx.test]).any()
    everything = np.concatenate([idx.train, idx.val, idx.test])
    assert sorted(everything.tolist()) == list(range(500))
    n_anomalous = int(is_anomaly.sum())
    assert abs(int(is_anomaly[idx.val].sum()) - n_anomalous / 2) <= 1  # val : test = 0.15 : 0.15


def test_anomaly_split_is_deterministic() -> None:
    is_anomaly = np.arange(200) % 3 == 0
    a = anomaly_indices(is_anomaly, 0.2, 0.1, seed=1)
    b = anomaly_indices(is_anomaly, 0.2, 0.1, seed=1)
    assert all(np.array_equal(getattr(a, k), getattr(b, k)) for k in ("train", "val", "test"))


def test_anomaly_split_needs_both_classes() -> None:
    with pytest.raises(DataError, match="anomalous rows; need at least 2"):
        anomaly_indices(np.zeros(50, dtype=bool), 0.2, 0.2, seed=0)
    with pytest.raises(DataError, match="normal rows; need at least 10"):
        anomaly_indices(np.ones(50, dtype=bool), 0.2, 0.2, seed=0)


def test_scalers_are_fitted_on_training_rows_only() -> None:
    train = np.array([[0.0, 10.0], [4.0, 30.0]])
    other = np.array([[100.0, -50.0]])
    minmax = fit_scaler(train, "minmax")
    assert minmax.apply(train).min() == 0.0 and minmax.apply(train).max() == 1.0
    assert minmax.apply(other)[0, 0] == pytest.approx(100 / 30)  # not refitted on other rows
    standard = fit_scaler(train, "standard")
    scaled = standard.apply(train)
    assert np.allclose(scaled.mean(axis=0), 0) and np.allclose(scaled.std(axis=0), 1)
    constant = fit_scaler(np.ones((3, 2)), "standard")
    assert np.isfinite(constant.apply(np.ones((1, 2)))).all()
    assert np.array_equal(fit_scaler(train, "none").apply(other), other.astype(np.float32))
