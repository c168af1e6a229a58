"""train_mlp -> train_cnn -> evaluate on tiny images; metric arithmetic on a crafted case."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dllabs.data.sources import write_text_eval
from dllabs.evaluation.reports import classification_metrics
from dllabs.outputs import save_json, save_npz
from stages import (
    evaluate,
    evaluate_anomaly,
    evaluate_cbow,
    evaluate_classifier,
    evaluate_transfer,
    pretrain_base,
    threshold_anomaly,
    train_autoencoder,
    train_cbow,
    train_cnn,
    train_mlp,
    train_transfer,
)
from tests.helpers.data import save_arrays
from tests.helpers.repo import REPO

TRAIN = ["--images", "data/processed/images"]
CLASSIFIER = {  # evaluate_classifier@mlp and @cnn
    lab: [
        "--lab",
        lab,
        "--images",
        "data/processed/images",
        "--model",
        f"models/{lab}",
        "--metrics",
        f"metrics/{lab}.json",
        "--report",
        f"reports/{lab}_architecture.md",
        "--plots",
        f"plots/evaluate/{lab}",
    ]
    for lab in ("mlp", "cnn")
}
EVALUATE_ANOMALY = [
    "--series",
    "data/processed/series.npz",
    "--model",
    "models/autoencoder",
    "--threshold",
    "models/anomaly_threshold.json",
    "--metrics",
    "metrics/anomaly.json",
    "--plots",
    "plots/evaluate/anomaly",
]
EVALUATE_CBOW = [
    "--model",
    "models/cbow",
    "--text-eval",
    "data/raw/text_eval",
    "--metrics",
    "metrics/cbow.json",
    "--report",
    "reports/cbow_probes.md",
    "--plots",
    "plots/evaluate/cbow",
]
EVALUATE_TRANSFER = [
    "--images",
    "data/processed/images",
    "--model",
    "models/transfer",
    "--metrics",
    "metrics/transfer.json",
]
EVALUATE = [
    "--mlp-metrics",
    "metrics/mlp.json",
    "--cnn-metrics",
    "metrics/cnn.json",
    "--anomaly-metrics",
    "metrics/anomaly.json",
    "--cbow-metrics",
    "metrics/cbow.json",
    "--transfer-metrics",
    "metrics/transfer.json",
    "--mlp-report",
    "reports/mlp_architecture.md",
    "--cnn-report",
    "reports/cnn_architecture.md",
    "--summary",
    "reports/summary.md",
]
PRETRAIN = [
    "--images",
    "data/processed/images",
    "--model",
    "models/pretrain",
    "--plots",
    "plots/pretrain",
]
TRANSFER = [
    "--images",
    "data/processed/images",
    "--pretrained",
    "models/pretrain",
    "--model",
    "models/transfer",
    "--plots",
    "plots/transfer",
    "--validation",
    "metrics/validation/transfer.json",
]
CBOW = ["--corpus", "data/processed/corpus.txt", "--model", "models/cbow", "--plots", "plots/cbow"]
AUTOENCODER = [
    "--series",
    "data/processed/series.npz",
    "--series-summary",
    "data/processed/series.json",
    "--model",
    "models/autoencoder",
    "--plots",
    "plots/autoencoder",
    "--errors",
    "models/autoencoder_errors.npz",
]
THRESHOLD = [
    "--errors",
    "models/autoencoder_errors.npz",
    "--threshold",
    "models/anomaly_threshold.json",
    "--validation",
    "metrics/validation/anomaly.json",
]


def tiny_images(path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 60), ("val", 15), ("test", 15)):
        y = np.arange(n) % 4
        x = rng.integers(0, 60, (n, 8, 8, 1)) + (y * 60)[:, None, None, None]
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x.astype(np.uint8), y.astype(np.int64)
    arrays["class_names"] = np.array(["circle", "square", "star", "moon"])
    save_arrays(path, arrays)


def tiny_series(path: Path, features: int = 16) -> None:
    """Normal rows near one pattern, anomalies near another; values in [0, 1] like minmax output."""
    rng = np.random.default_rng(1)
    pattern = np.linspace(0.2, 0.8, features)
    arrays = {"row_shape": np.array([4, 4])}
    for split, normal, anomalous in (("train", 40, 0), ("val", 8, 8), ("test", 8, 8)):
        rows = np.concatenate(
            [
                pattern + rng.normal(0, 0.03, (normal, features)),
                1 - pattern + rng.normal(0, 0.03, (anomalous, features)),
            ]
        ).clip(0, 1)
        arrays[f"x_{split}"] = rows.astype(np.float32)
        arrays[f"y_{split}"] = np.array([0] * normal + [1] * anomalous, dtype=np.int8)
        arrays[f"label_{split}"] = np.array(["n"] * normal + ["a"] * anomalous)
    save_npz(path, arrays)
    save_json(
        path.with_suffix(".json"),
        {  # what preprocess records beside the rows
            "features": features,
            "row_shape": [4, 4],
            "normal_labels": ["n"],
            "scaling": {"method": "none", "shift": 0.0, "scale": 1.0},
        },
    )


@pytest.mark.slow
def test_labs_end_to_end_on_tiny_data(workdir) -> None:
    workdir(
        **{
            "mlp.epochs": 2,
            "cnn.epochs": 2,
            "cnn.filters": [4, 8],
            "cnn.kernel_sizes": [3],
            "cnn.dense_units": [8],
            "mlp.hidden_units": [8],
            "autoencoder.epochs": 3,
            "autoencoder.hidden_units": [8],
            "autoencoder.code_size": 2,
            "cbow.epochs": 2,
            "cbow.probe_words": ["king", "zebra"],
            "cbow.pca_words": 5,
            "transfer.source_classes": ["circle", "square"],
            "transfer.target_classes": ["star", "moon"],
            "transfer.target_train_size": 3,
            "transfer.pretrain.epochs": 2,
            "transfer.feature_extraction.epochs": 2,
            "transfer.fine_tune.epochs": 2,
            "transfer.trainable_base_layers": 0,
            "transfer.fine_tune.unfreeze": 4,
            "transfer.head.dense_units": [4],
            "transfer.repeats": 2,
        }
    )
    tiny_images(Path("data/processed/images"))
    tiny_series(Path("data/processed/series.npz"))
    Path("data/processed/corpus.txt").write_text("king queen man woman\nman woman king\n" * 20)
    Path("data/raw/text_eval").mkdir(parents=True)
    write_text_eval(Path("data/raw/text_eval"))
    train_cbow.main(CBOW)
    for stage, name in ((train_mlp, "mlp"), (train_cnn, "cnn")):
        stage.main(
            [
                *TRAIN,
                "--model",
                f"models/{name}",
                "--plots",
                f"plots/{name}",
                "--validation",
                f"metrics/validation/{name}.json",
            ]
        )
    train_autoencoder.main(AUTOENCODER)
    threshold_anomaly.main(THRESHOLD)
    pretrain_base.main(PRETRAIN)
    train_transfer.main(TRANSFER)
    for lab in ("mlp", "cnn"):
        evaluate_classifier.main(CLASSIFIER[lab])
    evaluate_anomaly.main(EVALUATE_ANOMALY)
    evaluate_cbow.main(EVALUATE_CBOW)
    evaluate_transfer.main(EVALUATE_TRANSFER)
    evaluate.main(EVALUATE)

    anomaly = json.loads(Path("metrics/anomaly.json").read_text())
    assert anomaly["method"] == "mean_std" and anomaly["threshold"] > 0
    assert sum(anomaly["test"]["confusion"].values()) == 16
    assert set(anomaly["test"]) >= {
        "precision",
        "recall",
        "f1",
        "accuracy",
        "roc_auc",
        "pr_auc",
        "normal_precision",
        "normal_recall",
    }
    roc = json.loads(Path("plots/evaluate/anomaly/plots/sklearn/roc.json").read_text())
    assert {"fpr", "tpr"} <= set(roc["roc"][0])
    for png in ("error_histogram.png", "reconstructions.png"):
        assert Path("plots/evaluate/anomaly", png).read_bytes()[:4] == b"\x89PNG"
    cbow = json.loads(Path("metrics/cbow.json").read_text())
    assert cbow["vocab_size"] == 4 and cbow["corpus_tokens"] == 140
    assert cbow["wordsim353"]["oov"] > 0.9 and "spearman" in cbow["baseline"]["simlex999"]
    probes = Path("reports/cbow_probes.md").read_text()
    assert "**zebra**: not in the vocabulary" in probes and "**king**: " in probes
    assert Path("plots/evaluate/cbow/pca.png").read_bytes()[:4] == b"\x89PNG"
    transfer = json.loads(Path("metrics/transfer.json").read_text())
    assert transfer["test_images"] == 7 and transfer["target_train_size"] == 3  # 4 star, 3 moon
    assert transfer["repeats"] == 2 and transfer["target_classes"] == "star, moon"
    budget = {"scratch": 4, "feature_extraction": 2, "fine_tune": 2}  # scratch: both phases' epochs
    for phase, epochs in budget.items():
        entry = transfer[phase]
        draws = [entry["per_repeat"][r]["accuracy"] for r in ("0", "1")]
        assert entry["accuracy"] == pytest.approx(np.mean(draws), abs=1e-6)
        assert entry["accuracy_std"] == pytest.approx(np.std(draws, ddof=1), abs=1e-6)
        assert entry["n"] == 7 and entry["ci95"]["accuracy"]["method"] == "t over 2 repeats"
        assert all(entry["per_repeat"][r]["epochs"] == epochs for r in ("0", "1"))
    fe, ft = transfer["feature_extraction"], transfer["fine_tune"]
    difference = transfer["paired_differences"]["fine_tune_minus_scratch"]
    for r in ("0", "1"):
        paired = ft["per_repeat"][r]["accuracy"] - transfer["scratch"]["per_repeat"][r]["accuracy"]
        assert difference["per_repeat"][r] == pytest.approx(paired, abs=1e-6)
    assert ft["trainable_parameters"] > fe["trainable_parameters"]  # conv_2 unfrozen
    assert ft["unfrozen_layers"] == 3  # conv_2, relu_2, pool_2; batch norm stays frozen
    assert Path("models/transfer/repeat_1/fine_tune.keras").is_file()
    steps = Path("plots/transfer/transfer/plots/metrics/fine_tune/eval/accuracy.tsv").read_text()
    assert [row.split("\t")[0] for row in steps.splitlines()[1:]] == ["2", "3"]
    summary = Path("reports/summary.md").read_text()
    for lab in ("1. Feedforward", "2. CNN", "3. Anomaly", "4. Word embeddings", "5. Transfer"):
        assert f"| {lab}" in summary
    assert f"| ROC AUC | {anomaly['test']['roc_auc']:.4f} | " in summary and "| CPU |" in summary
    assert "paired accuracy difference" in summary
    ci = anomaly["test"]["ci95"]
    assert ci["recall"]["method"] == "wilson" and ci["roc_auc"]["method"].startswith("bootstrap")
    assert anomaly["run"]["platform"]["cpu"]["isa"] and cbow["run"]["platform"]["versions"]
    assert anomaly["run"]["device"] == "CPU" and cbow["run"]["device"] == "CPU (gensim)"
    errors = np.load("models/autoencoder_errors.npz", allow_pickle=False)
    assert errors["error_train"].shape == (40,) and errors["error_val"].shape == (16,)

    # The validation metrics files (what dl-labs tune maximises) describe the saved models.
    validation = json.loads(Path("metrics/validation/anomaly.json").read_text())
    assert validation["threshold"] == anomaly["threshold"] and validation["n"] == 16
    assert validation["f1"] == anomaly["validation"]["f1"]
    validation = json.loads(Path("metrics/validation/transfer.json").read_text())
    assert validation["repeats"] == 2 and validation["n"] > 0
    for phase in ("scratch", "feature_extraction", "fine_tune"):
        assert validation[phase]["accuracy"] == transfer[phase]["validation_accuracy"]
    import keras

    x_val, y_val = (np.load(f"data/processed/images/{k}_val.npy") for k in ("x", "y"))
    for name in ("mlp", "cnn"):
        validation = json.loads(Path(f"metrics/validation/{name}.json").read_text())
        model = keras.models.load_model(f"models/{name}/model.keras")
        accuracy = float(np.mean(np.argmax(model.predict(x_val, verbose=0), axis=1) == y_val))
        # The same weights on the same rows: Keras's running accuracy and this one count the
        # same correct rows (a tie between two classes' probabilities could split them: none here).
        assert validation["accuracy"] == pytest.approx(accuracy, abs=1e-6)
        assert validation["n"] == len(y_val) and validation["best_epoch"] >= 1
        assert validation["loss"] > 0 and validation["epochs_trained"] == 2

    for name in ("mlp", "cnn"):
        metrics = json.loads(Path(f"metrics/{name}.json").read_text())
        test = metrics["test"]
        assert 0.0 <= test["accuracy"] <= 1.0 and test["loss"] > 0 and test["n"] == 15
        assert (
            test["ci95"]["accuracy"]["low"] <= test["accuracy"] <= test["ci95"]["accuracy"]["high"]
        )
        assert set(test["per_class"]) == {"circle", "square", "star", "moon"}
        assert sum(c["support"] for c in test["per_class"].values()) == 15
        assert metrics["model"]["epochs_trained"] == 2 and metrics["model"]["parameters"] > 0
        assert metrics["run"]["device"] == "CPU" and metrics["run"]["seconds_per_epoch"] > 0
        confusion = json.loads(
            Path(f"plots/evaluate/{name}/plots/sklearn/confusion_matrix.json").read_text()
        )
        assert len(confusion) == 15 and {"actual", "predicted"} <= set(confusion[0])
        assert Path(f"plots/evaluate/{name}/misclassified.png").read_bytes()[:4] == b"\x89PNG"
        table = Path(f"reports/{name}_architecture.md").read_text()
        assert "| rescale | Rescaling |" in table and "Total parameters:" in table
        # inlined for pull-request comments, where links to other files do not resolve
        assert f"<summary>{name.upper()} architecture</summary>" in summary
        assert table.splitlines()[2] in summary and f"# {name}\n" not in summary


def test_command_lines_match_dvc_yaml() -> None:
    import yaml

    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for lab in ("mlp", "cnn"):
        args = [
            *TRAIN,
            "--model",
            f"models/{lab}",
            "--plots",
            f"plots/{lab}",
            "--validation",
            f"metrics/validation/{lab}.json",
        ]
        assert stages[f"train_{lab}"]["cmd"].split()[-len(args) :] == args
    for name, args in (
        ("evaluate", EVALUATE),
        ("evaluate_anomaly", EVALUATE_ANOMALY),
        ("evaluate_cbow", EVALUATE_CBOW),
        ("evaluate_transfer", EVALUATE_TRANSFER),
        ("train_autoencoder", AUTOENCODER),
        ("threshold_anomaly", THRESHOLD),
        ("train_cbow", CBOW),
        ("pretrain_base", PRETRAIN),
        ("train_transfer", TRANSFER),
    ):
        assert stages[name]["cmd"].split()[-len(args) :] == args
    classifier = stages["evaluate_classifier"]
    assert classifier["foreach"] == list(CLASSIFIER)
    for lab, args in CLASSIFIER.items():
        cmd = classifier["do"]["cmd"].replace("${item}", lab).split()
        assert cmd[-len(args) :] == args


def test_evaluating_a_lab_without_its_model_names_the_missing_file(workdir, capsys) -> None:
    workdir()
    tiny_images(Path("data/processed/images"))
    with pytest.raises(SystemExit):
        evaluate_classifier.main(CLASSIFIER["mlp"])
    assert "models/mlp/model.keras: not found" in capsys.readouterr().err
    assert not Path("metrics").exists() and not Path("plots").exists()


def test_summary_without_a_labs_metrics_names_the_missing_file(workdir, capsys) -> None:
    """The summary runs last; a lab whose evaluation did not run is named, nothing is written."""
    workdir()
    with pytest.raises(SystemExit):
        evaluate.main(EVALUATE)
    assert "metrics/mlp.json: not found" in capsys.readouterr().err
    assert not Path("reports").exists()


def test_training_stage_refuses_bad_params_before_loading_data(workdir, capsys) -> None:
    workdir(**{"mlp.learning_rate": -1})
    with pytest.raises(SystemExit):
        train_mlp.main([*TRAIN, "--model", "m", "--plots", "p", "--validation", "v.json"])
    err = capsys.readouterr().err
    assert "mlp.learning_rate = -1: input should be greater than 0" in err
    assert not Path("m").exists()


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
