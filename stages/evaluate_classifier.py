"""Stage ``evaluate_classifier@<lab>``: labs 1 and 2 (the MLP and the CNN) on the test split.

One DVC ``foreach`` stage per image classifier, so a change to one (or its failure) leaves the
other's metrics alone. Load the saved model (``safe_mode=True``), predict the test images, and
write ``metrics/<lab>.json`` (test accuracy, loss, macro F1, per-class precision/recall/F1, each
headline with ``n`` and a 95% interval under ``ci95``; parameter count, epochs, seconds per epoch,
device and platform), a confusion matrix through DVCLive's sklearn plots, a PNG grid of
misclassified test images and an architecture table under ``reports/``.
"""

from __future__ import annotations

if __name__ == "__main__":  # run as a stage: Keras's backend and the cluster come before Keras
    from dllabs.training.startup import start_keras_stage

    start_keras_stage("evaluate_classifier")

from pathlib import Path

import numpy as np

from dllabs.data.datasets import ImageBatches, ImageSplits
from dllabs.errors import stage_errors
from dllabs.evaluation.reports import classification_metrics, misclassified_grid
from dllabs.labs.registry import classifier_labs
from dllabs.models.builders import architecture_markdown
from dllabs.models.inputs import ModelFolder
from dllabs.models.loading import load_model
from dllabs.outputs import save_json, staged_outputs
from dllabs.params import load_params
from dllabs.prediction.batches import predict
from dllabs.stage_args import parse_paths
from dllabs.training.callbacks import open_live
from dllabs.training.devices import setup_run

LABS = classifier_labs()  # the labs this stage scores


def evaluate_classifier(
    lab: str,
    model_folder: Path,
    data: ImageSplits,
    plots: Path,
    report: Path,
    batch_size: int,
) -> dict:
    """Test metrics, confusion matrix, misclassified grid and architecture table of one model."""
    folder = ModelFolder(model_folder)
    model = load_model(folder.model_file)
    training = folder.summary()
    x_test, y_test = data["test"]  # on disk when large: predicted a batch at a time
    loss, _ = model.evaluate(ImageBatches(x_test, y_test, batch_size), verbose=0)
    y_pred = np.argmax(predict(model, x_test, batch_size), axis=1)

    live = open_live(plots)
    labels = [data.class_names[i] for i in y_test]
    predicted = [data.class_names[i] for i in y_pred]
    live.log_sklearn_plot("confusion_matrix", labels, predicted, name="confusion_matrix.json")
    live.end()
    misclassified_grid(
        x_test, y_test, y_pred, data.class_names, plots / "misclassified.png", title=lab.upper()
    )
    report.write_text(architecture_markdown(model), encoding="utf-8")

    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return {
        "test": {
            "loss": round(float(loss), 6),
            **classification_metrics(y_test, y_pred, data.class_names),
        },
        "model": {
            "parameters": int(model.count_params()),
            "trainable_parameters": trainable,
            "epochs_trained": training["epochs_trained"],
            "best_epoch": training["best_epoch"],
        },
        "run": {
            "seconds_per_epoch": round(training["seconds_per_epoch"], 4),
            "train_seconds": round(training["train_seconds"], 2),
            "device": training["device"],
            "mixed_precision": training["mixed_precision"],
            "platform": training.get("platform"),
        },
    }


def main(argv: list[str] | None = None) -> None:
    with stage_errors("evaluate_classifier"):
        params = load_params()
        args = parse_paths(
            argv,
            "evaluate_classifier",
            __doc__,
            choices={"lab": LABS},
            images="processed images (folder of .npy arrays), test split",
            model="the lab's model folder (model.keras, summary.json)",
            metrics="output metrics (.json)",
            report="output architecture table (.md)",
            plots="output plots folder",
        )
        setup_run(params.base, parallel=False)
        data = ImageSplits.load(args.images, ("test",))
        batch_size = getattr(params, args.lab).batch_size
        with staged_outputs() as out:
            metrics = evaluate_classifier(
                args.lab,
                args.model,
                data,
                out.dir(args.plots),
                out.file(args.report),
                batch_size,
            )
            save_json(out.file(args.metrics), metrics)
        test = metrics["test"]
        print(
            f"evaluate_classifier: {args.lab}: test accuracy {test['accuracy']:.4f} "
            f"(n {test['n']}), macro F1 {test['macro_f1']:.4f}"
        )


if __name__ == "__main__":
    main()
