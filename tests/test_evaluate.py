"""train_mlp -> train_cnn -> evaluate on tiny images; metric arithmetic on a crafted case."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dllabs.outputs import save_npz
from dllabs.reports import classification_metrics
from stages import evaluate, threshold_anomaly, train_autoencoder, train_cnn, train_mlp
from tests.conftest import REPO

TRAIN = ["--images", "data/processed/images.npz"]
EVALUATE = [
    "--images", "data/processed/images.npz",
    "--mlp-model", "models/mlp.keras", "--mlp-summary", "models/mlp.json",
    "--cnn-model", "models/cnn.keras", "--cnn-summary", "models/cnn.json",
    "--mlp-metrics", "metrics/mlp.json", "--cnn-metrics", "metrics/cnn.json",
    "--mlp-report", "reports/mlp_architecture.md", "--cnn-report", "reports/cnn_architecture.md",
    "--series", "data/processed/series.npz", "--autoencoder-model", "models/autoencoder.keras",
    "--threshold", "models/anomaly_threshold.json", "--anomaly-metrics", "metrics/anomaly.json",
    "--plots", "plots/evaluate",
]  # fmt: skip
AUTOENCODER = [
    "--series", "data/processed/series.npz", "--model", "models/autoencoder.keras",
    "--plots", "plots/autoencoder", "--summary", "models/autoencoder.json",
    "--errors", "models/autoencoder_errors.npz",
]  # fmt: skip
THRESHOLD = [
    "--errors",
    "models/autoencoder_errors.npz",
    "--threshold",
    "models/anomaly_threshold.json",
]


def tiny_images(path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 60), ("val", 15), ("test", 15)):
        y = np.arange(n) % 3
        x = rng.integers(0, 60, (n, 8, 8, 1)) + (y * 90)[:, None, None, None]
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x.astype(np.uint8), y.astype(np.int64)
    arrays["class_names"] = np.array(["circle", "square", "star"])
    path.parent.mkdir(parents=True, exist_ok=True)
    save_npz(path, arrays)


def tiny_series(path: Path, features: int = 16) -> None:
    """Normal rows near one pattern, anomalies near another; values in [0, 1] like minmax output."""
    rng = np.random.default_rng(1)
    pattern = np.linspace(0.2, 0.8, features)
    arrays = {"row_shape": np.array([4, 4])}
    for split, normal, anomalous in (("train", 40, 0), ("val", 8, 8), ("test", 8, 8)):
        rows = np.concatenate([
            pattern + rng.normal(0, 0.03, (normal, features)),
            1 - pattern + rng.normal(0, 0.03, (anomalous, features)),
        ]).clip(0, 1)  # fmt: skip
        arrays[f"x_{split}"] = rows.astype(np.float32)
        arrays[f"y_{split}"] = np.array([0] * normal + [1] * anomalous, dtype=np.int8)
        arrays[f"label_{split}"] = np.array(["n"] * normal + ["a"] * anomalous)
    save_npz(path, arrays)


def test_labs_end_to_end_on_tiny_data(workdir) -> None:
    workdir(**{"mlp.epochs": 2, "cnn.epochs": 2, "cnn.filters": [4, 8], "cnn.kernel_sizes": [3],
               "cnn.dense_units": [8], "mlp.hidden_units": [8], "autoencoder.epochs": 3,
               "autoencoder.hidden_units": [8], "autoencoder.code_size": 2})  # fmt: skip
    tiny_images(Path("data/processed/images.npz"))
    tiny_series(Path("data/processed/series.npz"))
    for stage, name in ((train_mlp, "mlp"), (train_cnn, "cnn")):
        stage.main([*TRAIN, "--model", f"models/{name}.keras", "--plots", f"plots/{name}",
                    "--summary", f"models/{name}.json"])  # fmt: skip
    train_autoencoder.main(AUTOENCODER)
    threshold_anomaly.main(THRESHOLD)
    evaluate.main(EVALUATE)

    anomaly = json.loads(Path("metrics/anomaly.json").read_text())
    assert anomaly["method"] == "mean_std" and anomaly["threshold"] > 0
    assert sum(anomaly["test"]["confusion"].values()) == 16
    assert set(anomaly["test"]) >= {"precision", "recall", "f1", "accuracy", "roc_auc", "pr_auc",
                                    "normal_precision", "normal_recall"}  # fmt: skip
    roc = json.loads(Path("plots/evaluate/anomaly/plots/sklearn/roc.json").read_text())
    assert {"fpr", "tpr"} <= set(roc["roc"][0])
    for png in ("anomaly_error_histogram.png", "anomaly_reconstructions.png"):
        assert Path("plots/evaluate", png).read_bytes()[:4] == b"\x89PNG"
    errors = np.load("models/autoencoder_errors.npz", allow_pickle=False)
    assert errors["error_train"].shape == (40,) and errors["error_val"].shape == (16,)

    for name in ("mlp", "cnn"):
        metrics = json.loads(Path(f"metrics/{name}.json").read_text())
        test = metrics["test"]
        assert 0.0 <= test["accuracy"] <= 1.0 and test["loss"] > 0
        assert set(test["per_class"]) == {"circle", "square", "star"}
        assert sum(c["support"] for c in test["per_class"].values()) == 15
        assert metrics["model"]["epochs_trained"] == 2 and metrics["model"]["parameters"] > 0
        assert metrics["run"]["device"] == "CPU" and metrics["run"]["seconds_per_epoch"] > 0
        confusion = json.loads(
            Path(f"plots/evaluate/{name}/plots/sklearn/confusion_matrix.json").read_text()
        )
        assert len(confusion) == 15 and {"actual", "predicted"} <= set(confusion[0])
        assert Path(f"plots/evaluate/{name}_misclassified.png").read_bytes()[:4] == b"\x89PNG"
        table = Path(f"reports/{name}_architecture.md").read_text()
        assert "| rescale | Rescaling |" in table and "Total parameters:" in table


def test_command_lines_match_dvc_yaml() -> None:
    import yaml

    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, args in (("evaluate", EVALUATE), ("train_autoencoder", AUTOENCODER),
                       ("threshold_anomaly", THRESHOLD)):  # fmt: skip
        assert stages[name]["cmd"].split()[-len(args) :] == args


def test_evaluate_without_models_names_the_missing_file(workdir, capsys) -> None:
    workdir()
    tiny_images(Path("data/processed/images.npz"))
    with pytest.raises(SystemExit):
        evaluate.main(EVALUATE)
    assert "models/mlp.keras: not found" in capsys.readouterr().err
    assert not Path("metrics").exists() or not any(Path("metrics").iterdir())


def test_training_stage_refuses_bad_params_before_loading_data(workdir, capsys) -> None:
    workdir(**{"mlp.learning_rate": -1})
    with pytest.raises(SystemExit):
        train_mlp.main([*TRAIN, "--model", "m.keras", "--plots", "p", "--summary", "s.json"])
    err = capsys.readouterr().err
    assert "mlp.learning_rate = -1: input should be greater than 0" in err
    assert not Path("m.keras").exists()


def test_classification_metrics_on_a_crafted_case() -> None:
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 1, 0])
    metrics = classification_metrics(y_true, y_pred, ["a", "b", "c"])
    assert metrics["accuracy"] == pytest.approx(4 / 6, abs=1e-6)
    third = pytest.approx(2 / 3, abs=1e-6)
    expected = {"precision": third, "recall": third, "f1": third, "support": 3}
    assert metrics["per_class"]["a"] == expected
    assert metrics["per_class"]["b"]["precision"] == pytest.approx(2 / 3, abs=1e-6)
    assert metrics["per_class"]["b"]["recall"] == 1.0
    assert metrics["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 0) / 3, abs=1e-6)
