"""Stage ``evaluate_anomaly``: lab 3 (the autoencoder anomaly detector) on the test split.

Reconstruct the test rows, flag those whose error is at or above the threshold that
``threshold_anomaly`` chose from training and validation errors, and write
``metrics/anomaly.json`` (anomaly = positive class: precision, recall, F1, ROC AUC and average
precision with ``n`` and 95% intervals, plus normal-class precision and recall), ROC and
precision-recall curves through DVCLive's sklearn plots, a histogram of the errors with the
threshold, and a few inputs drawn next to their reconstructions.
"""

from __future__ import annotations

if __name__ == "__main__":  # run as a stage: Keras's backend and the cluster come before Keras
    from dllabs.training.startup import start_keras_stage

    start_keras_stage("evaluate_anomaly")

from pathlib import Path

import numpy as np

from dllabs.errors import stage_errors
from dllabs.evaluation.reports import error_histogram, reconstructions_figure, run_info
from dllabs.labs.anomaly import (
    detection_scores,
    reconstruction_errors,
    require_finite,
    saved_threshold,
)
from dllabs.models.inputs import ModelFolder
from dllabs.models.loading import load_model
from dllabs.outputs import load_json, load_npz, save_json, staged_outputs
from dllabs.params import load_params
from dllabs.prediction.batches import predict
from dllabs.stage_args import parse_paths
from dllabs.training.callbacks import open_live
from dllabs.training.devices import setup_run


def evaluate_anomaly(
    model_folder: Path,
    series_path: Path,
    threshold_path: Path,
    loss: str,
    plots: Path,
) -> dict:
    """Test-split detection scores at the chosen threshold, with ROC/PR and error plots."""
    folder = ModelFolder(model_folder)
    model = load_model(folder.model_file)
    data = load_npz(series_path, required=("x_test", "y_test", "label_test", "row_shape"))
    chosen = load_json(threshold_path)
    x_test, y_test = data["x_test"], data["y_test"].astype(bool)
    reconstructed = predict(model, x_test)
    errors = require_finite(
        reconstruction_errors(x_test, reconstructed, loss),
        f"{model_folder} on the test rows of {series_path}",
    )
    threshold = saved_threshold(chosen, threshold_path)

    live = open_live(plots)
    live.log_sklearn_plot("roc", y_test.astype(int), errors, name="roc.json")
    live.log_sklearn_plot(
        "precision_recall", y_test.astype(int), errors, name="precision_recall.json"
    )
    live.end()
    error_histogram(errors, y_test, threshold, plots / "error_histogram.png")
    rng = np.random.default_rng(0)  # a fixed choice of examples: 4 normal, 4 anomalous
    picks = np.concatenate(
        [
            rng.choice(np.flatnonzero(~y_test), min(4, int((~y_test).sum())), replace=False),
            rng.choice(np.flatnonzero(y_test), min(4, int(y_test.sum())), replace=False),
        ]
    )
    labels = [f"{'anomaly' if y_test[i] else 'normal'} {data['label_test'][i]}" for i in picks]
    row_shape = tuple(int(d) for d in data["row_shape"])
    reconstructions_figure(
        x_test[picks], reconstructed[picks], row_shape, labels, plots / "reconstructions.png"
    )
    return {
        "threshold": threshold,
        "method": chosen["method"],
        "test": detection_scores(y_test, errors, threshold),
        "validation": chosen["validation"],
        "run": run_info(folder.summary()),
    }


def main(argv: list[str] | None = None) -> None:
    with stage_errors("evaluate_anomaly"):
        params = load_params()
        args = parse_paths(
            argv,
            "evaluate_anomaly",
            __doc__,
            series="processed anomaly rows (.npz), test split",
            model="autoencoder folder (model.keras, summary.json)",
            threshold="chosen threshold (.json)",
            metrics="output metrics (.json)",
            plots="output plots folder",
        )
        setup_run(params.base, parallel=False)
        with staged_outputs() as out:
            metrics = evaluate_anomaly(
                args.model,
                args.series,
                args.threshold,
                params.autoencoder.loss,
                out.dir(args.plots),
            )
            save_json(out.file(args.metrics), metrics)
        test = metrics["test"]
        print(
            f"evaluate_anomaly: test ROC AUC {test['roc_auc']}, F1 {test['f1']:.4f} (n {test['n']})"
        )


if __name__ == "__main__":
    main()
