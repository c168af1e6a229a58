"""The anomaly lab: thresholds on crafted errors, scores with known counts, model variants."""

from __future__ import annotations

import copy

import keras
import numpy as np
import pytest

from dllabs.errors import DataError, ParamsError
from dllabs.labs.anomaly import choose_threshold, detection_scores, reconstruction_errors
from dllabs.models.builders import build_autoencoder
from dllabs.params import Autoencoder
from stages.train_autoencoder import check_loss_fits_data

TRAIN_ERRORS = np.array([1.0, 2.0, 3.0, 4.0, 5.0])  # mean 3, population std sqrt(2)
VAL_ERRORS = np.array([1.0, 2.0, 3.0, 4.0, 10.0, 12.0, 2.5, 11.0])
VAL_IS_ANOMALY = np.array([0, 0, 0, 0, 1, 1, 0, 1])


def test_mean_std_threshold() -> None:
    threshold = choose_threshold("mean_std", TRAIN_ERRORS, VAL_ERRORS, VAL_IS_ANOMALY, 1.0, 95)
    assert threshold == pytest.approx(3.0 + np.sqrt(2.0))
    assert choose_threshold("mean_std", TRAIN_ERRORS, VAL_ERRORS, VAL_IS_ANOMALY, 2.0, 95) == (
        pytest.approx(3.0 + 2 * np.sqrt(2.0))
    )


def test_percentile_threshold_uses_normal_validation_rows_only() -> None:
    # normal validation errors: 1, 2, 2.5, 3, 4 -> median 2.5; the anomalies do not count
    assert choose_threshold("percentile", TRAIN_ERRORS, VAL_ERRORS, VAL_IS_ANOMALY, 1, 50) == 2.5
    assert choose_threshold(
        "percentile", TRAIN_ERRORS, VAL_ERRORS, VAL_IS_ANOMALY, 1, 100 - 1e-9
    ) == (pytest.approx(4.0))


def test_max_f1_threshold_separates_validation_classes() -> None:
    # errors >= 10 are exactly the anomalies: the lowest threshold reaching F1 = 1 is 10
    assert choose_threshold("max_f1", TRAIN_ERRORS, VAL_ERRORS, VAL_IS_ANOMALY, 1, 95) == 10.0
    overlap = np.array([1.0, 5.0, 4.0, 6.0])
    labels = np.array([0, 0, 1, 1])
    # threshold 4: tp 2, fp 1 -> F1 0.8; threshold 6: tp 1 -> F1 0.667; threshold 1: F1 0.667
    assert choose_threshold("max_f1", TRAIN_ERRORS, overlap, labels, 1, 95) == 4.0


def test_threshold_methods_need_their_rows() -> None:
    with pytest.raises(DataError, match="needs both classes"):
        choose_threshold("max_f1", TRAIN_ERRORS, VAL_ERRORS, np.zeros(8), 1, 95)
    with pytest.raises(DataError, match="needs normal validation rows"):
        choose_threshold("percentile", TRAIN_ERRORS, VAL_ERRORS, np.ones(8), 1, 95)


def test_detection_scores_on_known_counts() -> None:
    truth = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    errors = np.array([9.0, 8.0, 1.0, 2.0, 7.0, 1.0, 0.5, 6.0])
    scores = detection_scores(truth, errors, threshold=5.0)
    assert scores["confusion"] == {"tp": 3, "fp": 1, "tn": 3, "fn": 1}
    assert scores["precision"] == 0.75 and scores["recall"] == 0.75 and scores["f1"] == 0.75
    assert scores["accuracy"] == 0.75
    assert scores["normal_precision"] == 0.75 and scores["normal_recall"] == 0.75
    # ranks: anomalies 9, 8, 6, 1; normals 7, 2, 1, 0.5 -> 12.5 of 16 pairs ordered correctly
    assert scores["roc_auc"] == pytest.approx(12.5 / 16)
    assert 0 < scores["pr_auc"] <= 1


def test_reconstruction_errors_per_loss() -> None:
    x = np.array([[0.0, 1.0], [0.5, 0.5]])
    r = np.array([[0.5, 1.0], [0.5, 0.0]])
    assert reconstruction_errors(x, r, "mae").tolist() == [0.25, 0.25]
    assert reconstruction_errors(x, r, "mse").tolist() == [0.125, 0.125]
    bce = reconstruction_errors(x, r, "binary_crossentropy")
    assert bce[0] == pytest.approx(-np.log(0.5) / 2, rel=1e-4) and np.isfinite(bce).all()


@pytest.fixture
def ae(default_params: dict) -> dict:
    return copy.deepcopy(default_params["autoencoder"])


def test_binary_crossentropy_needs_inputs_in_unit_range(ae: dict) -> None:
    params = Autoencoder(**{**ae, "loss": "binary_crossentropy", "output_activation": "linear"})
    check_loss_fits_data(params, np.array([[0.0, 1.0]]), "rows.npz")  # fine in [0, 1]
    with pytest.raises(
        ParamsError, match=r"autoencoder\.loss is 'binary_crossentropy'.*\[-1.5, 2\]"
    ):
        check_loss_fits_data(params, np.array([[-1.5, 2.0]]), "rows.npz")
    sigmoid = Autoencoder(**{**ae, "loss": "mse", "output_activation": "sigmoid"})
    with pytest.raises(ParamsError, match=r"autoencoder\.output_activation is 'sigmoid'"):
        check_loss_fits_data(sigmoid, np.array([[3.0]]), "rows.npz")


def test_autoencoder_is_mirrored(ae: dict) -> None:
    model = build_autoencoder(64, Autoencoder(**{**ae, "hidden_units": [32, 16], "code_size": 4}))
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.units for layer in dense] == [32, 16, 4, 16, 32, 64]
    assert model.get_layer("code").units == 4


def test_denoising_noise_applies_only_in_training(ae: dict) -> None:
    model = build_autoencoder(8, Autoencoder(**{**ae, "noise_stddev": 0.5}))
    noise = model.get_layer("input_noise")
    x = np.full((4, 8), 0.5, dtype="float32")
    assert np.array_equal(keras.ops.convert_to_numpy(noise(x, training=False)), x)
    assert not np.allclose(keras.ops.convert_to_numpy(noise(x, training=True)), x)
    assert np.array_equal(model.predict(x, verbose=0), model.predict(x, verbose=0))


def test_sparse_code_penalty_is_in_the_losses(ae: dict) -> None:
    plain = build_autoencoder(8, Autoencoder(**ae))
    sparse = build_autoencoder(8, Autoencoder(**{**ae, "code_l1": 0.1}))
    x = np.random.default_rng(0).random((4, 8)).astype("float32")
    plain(x)
    sparse(x)
    assert plain.losses == []
    assert len(sparse.losses) == 1 and float(keras.ops.convert_to_numpy(sparse.losses[0])) > 0
