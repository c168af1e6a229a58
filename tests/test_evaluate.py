"""train_mlp -> train_cnn -> evaluate on tiny images; metric arithmetic on a crafted case."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dllabs.outputs import save_npz
from dllabs.reports import classification_metrics
from stages import evaluate, train_cnn, train_mlp

TRAIN = ["--images", "data/processed/images.npz"]
EVALUATE = [
    "--images", "data/processed/images.npz",
    "--mlp-model", "models/mlp.keras", "--mlp-summary", "models/mlp.json",
    "--cnn-model", "models/cnn.keras", "--cnn-summary", "models/cnn.json",
    "--mlp-metrics", "metrics/mlp.json", "--cnn-metrics", "metrics/cnn.json",
    "--mlp-report", "reports/mlp_architecture.md", "--cnn-report", "reports/cnn_architecture.md",
    "--plots", "plots/evaluate",
]  # fmt: skip


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


def test_image_labs_end_to_end_on_tiny_data(workdir) -> None:
    workdir(**{"mlp.epochs": 2, "cnn.epochs": 2, "cnn.filters": [4, 8], "cnn.kernel_sizes": [3],
               "cnn.dense_units": [8], "mlp.hidden_units": [8]})  # fmt: skip
    tiny_images(Path("data/processed/images.npz"))
    for stage, name in ((train_mlp, "mlp"), (train_cnn, "cnn")):
        stage.main([*TRAIN, "--model", f"models/{name}.keras", "--plots", f"plots/{name}",
                    "--summary", f"models/{name}.json"])  # fmt: skip
    evaluate.main(EVALUATE)

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
