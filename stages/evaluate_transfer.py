"""Stage ``evaluate_transfer``: lab 5 (transfer learning against training from scratch).

Test accuracy and macro F1 of the from-scratch baseline, the model after feature extraction and
after fine-tuning, on the target classes' whole test split, for every draw of labelled images:
the mean, standard deviation and each draw, with a t interval of the mean (Wilson and bootstrap
intervals when there is one draw), paired differences between the phases on the same images, and
the trainable and frozen parameter counts and epochs, into ``metrics/transfer.json``.
"""

from __future__ import annotations

if __name__ == "__main__":  # run as a stage: Keras's backend and the cluster come before Keras
    from dllabs.training.startup import start_keras_stage

    start_keras_stage("evaluate_transfer")

from pathlib import Path

import numpy as np

from dllabs.data.datasets import ImageSplits
from dllabs.errors import stage_errors
from dllabs.evaluation.reports import classification_metrics
from dllabs.evaluation.stats import bootstrap, over_repeats
from dllabs.labs.transfer import task
from dllabs.models.loading import load_model
from dllabs.outputs import load_json, save_json, staged_outputs
from dllabs.params import load_params
from dllabs.prediction.batches import predict
from dllabs.stage_args import parse_paths
from dllabs.training.devices import setup_run

TRANSFER_PHASES = ("scratch", "feature_extraction", "fine_tune")


def evaluate_transfer(model_dir: Path, data: ImageSplits) -> dict:
    """Test scores of the baseline and both transfer phases over every draw, side by side.

    Each phase gets the mean, standard deviation and every draw of its accuracy and macro F1, with
    a t interval of the mean (Wilson and bootstrap intervals when there is one draw). The
    comparisons are paired: on each draw, one model's accuracy minus another's on the same images.
    """
    training = load_json(model_dir / "summary.json")
    if "not_applicable" in training:
        return {"not_applicable": training["not_applicable"], "run": {"device": "none"}}
    draws = training["repeats"]
    scores: dict[str, list[dict]] = {phase: [] for phase in TRANSFER_PHASES}
    hits: dict[str, list[np.ndarray]] = {phase: [] for phase in TRANSFER_PHASES}
    x_test, y_test = task(data, training["classes"], "transfer.target_classes")["test"]
    for r in range(len(draws)):
        for phase in TRANSFER_PHASES:
            model = load_model(model_dir / f"repeat_{r}" / f"{phase}.keras")
            y_pred = np.argmax(predict(model, x_test), axis=1)
            scores[phase].append(classification_metrics(y_test, y_pred, training["classes"]))
            hits[phase].append(y_pred == y_test)
    n = len(y_test)
    metrics: dict = {
        "base": training["base"],
        "weights": training["weights"],
        "source_classes": ", ".join(training["source_classes"]) or "imagenet",
        "target_classes": ", ".join(training["classes"]),
        "target_train_size": training["target_train_size"],
        "repeats": len(draws),
        "test_images": n,
    }
    for phase in TRANSFER_PHASES:
        first = draws[0][phase]
        entry: dict = {"n": n, "ci95": {}}
        for name in ("accuracy", "macro_f1"):
            values = [s[name] for s in scores[phase]]
            entry[name], entry[f"{name}_std"], ci = over_repeats(values, bounds=(0.0, 1.0))
            entry["ci95"][name] = ci or scores[phase][0]["ci95"][name]
        entry["per_repeat"] = {
            str(r): {
                "accuracy": s["accuracy"],
                "macro_f1": s["macro_f1"],
                "epochs": d[phase]["epochs_trained"],
                "best_epoch": d[phase]["best_epoch"],
            }
            for r, (s, d) in enumerate(zip(scores[phase], draws, strict=True))
        }
        validation = [d[phase]["val_accuracy"] for d in draws]
        entry["validation_accuracy"] = round(float(np.mean(validation)), 6)
        entry["trainable_parameters"] = first["trainable_parameters"]
        entry["frozen_parameters"] = first["frozen_parameters"]
        metrics[phase] = entry
    metrics["fine_tune"]["unfrozen_layers"] = len(draws[0]["fine_tune"]["unfrozen_layers"])
    metrics["paired_differences"] = {
        f"{a}_minus_{b}": paired_difference(hits[a], hits[b])
        for a, b in (
            ("fine_tune", "scratch"),
            ("feature_extraction", "scratch"),
            ("fine_tune", "feature_extraction"),
        )
    }
    metrics["run"] = {
        "device": draws[0]["scratch"]["device"],
        "train_seconds": round(
            sum(d[p]["train_seconds"] for d in draws for p in TRANSFER_PHASES), 2
        ),
        "platform": training.get("platform"),
    }
    return metrics


def paired_difference(a: list[np.ndarray], b: list[np.ndarray]) -> dict:
    """Accuracy of ``a`` minus ``b`` on each draw (the same test images), with its interval:
    a t interval over draws, or with one draw a paired bootstrap over the test images.
    """
    per_draw = [float(np.mean(x) - np.mean(y)) for x, y in zip(a, b, strict=True)]
    mean, std, ci = over_repeats(per_draw, bounds=(-1.0, 1.0))
    if ci is None:
        ci = bootstrap(lambda x, y: np.mean(x) - np.mean(y), a[0], b[0])
    return {
        "n": len(a[0]),
        "accuracy": mean,
        "accuracy_std": std,
        "ci95": {"accuracy": ci},
        "per_repeat": {str(r): round(d, 6) for r, d in enumerate(per_draw)},
    }


def main(argv: list[str] | None = None) -> None:
    with stage_errors("evaluate_transfer"):
        params = load_params()
        args = parse_paths(
            argv,
            "evaluate_transfer",
            __doc__,
            images="processed images (folder of .npy arrays), test split",
            model="train_transfer's output folder",
            metrics="output metrics (.json)",
        )
        setup_run(params.base, parallel=False)
        data = ImageSplits.load(args.images, ("test",))
        metrics = evaluate_transfer(args.model, data)
        with staged_outputs() as out:
            save_json(out.file(args.metrics), metrics)
        if "not_applicable" in metrics:
            print(f"evaluate_transfer: not applicable: {metrics['not_applicable']}")
            return
        scores = ", ".join(f"{p} {metrics[p]['accuracy']:.4f}" for p in TRANSFER_PHASES)
        print(
            f"evaluate_transfer: mean test accuracy over {metrics['repeats']} draws "
            f"(n {metrics['test_images']}): {scores}"
        )


if __name__ == "__main__":
    main()
