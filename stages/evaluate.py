"""Stage ``evaluate``: every test-set number and plot, in one place.

The only stage that reads the test split.

- Image classifiers (MLP, CNN): load the saved model (``safe_mode=True``), predict the test
  images, and write ``metrics/<model>.json`` (test accuracy, loss, macro F1, per-class
  precision/recall/F1, parameter count, epochs, seconds per epoch, device), a confusion matrix
  through DVCLive's sklearn plots, a PNG grid of misclassified test images, and an architecture
  table under ``reports/``.
- Anomaly detector: reconstruct the test rows, flag those at or above the threshold that
  ``threshold_anomaly`` chose, and write ``metrics/anomaly.json`` (anomaly = positive class, plus
  normal-class precision and recall), ROC and PR curves, an error histogram with the threshold,
  and inputs next to their reconstructions.
- Word embeddings (CBOW and gensim's default baseline): WordSim-353, SimLex-999 and analogy scores
  with their coverage into ``metrics/cbow.json``, a probe report (``most_similar``,
  ``predict_output_word``) and a PCA plot of the most frequent words.
- Transfer learning: test accuracy and macro F1 of the from-scratch baseline, the model after
  feature extraction and after fine-tuning, on the target classes' whole test split, for every
  draw of labelled images (mean, standard deviation, each draw, and paired differences), with
  their trainable and frozen parameter counts and epochs, into ``metrics/transfer.json``.

Every headline metric carries the number of test items it was computed on (``n``) and a 95%
interval under ``ci95`` (:mod:`dllabs.stats`); ``run.platform`` records where the model trained
(:mod:`dllabs.provenance`).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from dllabs.anomaly import detection_scores, reconstruction_errors
from dllabs.cli import parse_paths
from dllabs.datasets import ImageBatches, ImageSplits
from dllabs.embeddings import evaluate_vectors, pca_plot, probe_report
from dllabs.errors import DataError, stage_errors
from dllabs.models import architecture_markdown
from dllabs.outputs import load_json, load_npz, save_json, staged_outputs
from dllabs.params import CBOW, load_params
from dllabs.reports import (
    classification_metrics,
    error_histogram,
    misclassified_grid,
    reconstructions_figure,
    summary_markdown,
)
from dllabs.stats import bootstrap, over_repeats
from dllabs.training import setup_run
from dllabs.transfer import task

TRANSFER_PHASES = ("scratch", "feature_extraction", "fine_tune")


def load_model(path: Path) -> keras.Model:
    """A saved ``.keras`` model, loaded without running any serialized code."""
    if not path.is_file():
        raise DataError(f"{path}: not found; run the training stage that writes it (dvc repro)")
    try:
        return keras.models.load_model(path, safe_mode=True)
    except (OSError, ValueError) as exc:
        raise DataError(
            f"{path}: not a loadable Keras model ({' '.join(str(exc).split())[:200]})"
        ) from None


def evaluate_classifier(
    name: str,
    model_path: Path,
    summary_path: Path,
    data: ImageSplits,
    plots: Path,
    report: Path,
    batch_size: int,
) -> dict:
    """Test metrics, confusion matrix, misclassified grid and architecture table of one model."""
    from dvclive import Live

    model = load_model(model_path)
    training = load_json(summary_path)
    x_test, y_test = data["test"]  # on disk when large: predicted a batch at a time
    loss, _ = model.evaluate(ImageBatches(x_test, y_test, batch_size), verbose=0)
    y_pred = np.argmax(model.predict(ImageBatches(x_test, None, batch_size), verbose=0), axis=1)

    live = Live(dir=str(plots / name), dvcyaml=False, save_dvc_exp=False, report=None)
    labels = [data.class_names[i] for i in y_test]
    predicted = [data.class_names[i] for i in y_pred]
    live.log_sklearn_plot("confusion_matrix", labels, predicted, name="confusion_matrix.json")
    live.end()
    grid = plots / f"{name}_misclassified.png"
    misclassified_grid(x_test, y_test, y_pred, data.class_names, grid, title=name.upper())
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


def evaluate_anomaly(
    model_path: Path,
    summary_path: Path,
    series_path: Path,
    threshold_path: Path,
    loss: str,
    plots: Path,
) -> dict:
    """Test-split detection scores at the chosen threshold, with ROC/PR and error plots."""
    from dvclive import Live

    model = load_model(model_path)
    data = load_npz(series_path, required=("x_test", "y_test", "label_test", "row_shape"))
    chosen = load_json(threshold_path)
    x_test, y_test = data["x_test"], data["y_test"].astype(bool)
    reconstructed = model.predict(x_test, verbose=0)
    errors = reconstruction_errors(x_test, reconstructed, loss)
    threshold = float(chosen["threshold"])

    live = Live(dir=str(plots / "anomaly"), dvcyaml=False, save_dvc_exp=False, report=None)
    live.log_sklearn_plot("roc", y_test.astype(int), errors, name="roc.json")
    live.log_sklearn_plot(
        "precision_recall", y_test.astype(int), errors, name="precision_recall.json"
    )
    live.end()
    error_histogram(errors, y_test, threshold, plots / "anomaly_error_histogram.png")
    rng = np.random.default_rng(0)  # a fixed choice of examples: 4 normal, 4 anomalous
    picks = np.concatenate([
        rng.choice(np.flatnonzero(~y_test), min(4, int((~y_test).sum())), replace=False),
        rng.choice(np.flatnonzero(y_test), min(4, int(y_test.sum())), replace=False),
    ])  # fmt: skip
    labels = [f"{'anomaly' if y_test[i] else 'normal'} {data['label_test'][i]}" for i in picks]
    row_shape = tuple(int(d) for d in data["row_shape"])
    reconstructions_figure(x_test[picks], reconstructed[picks], row_shape, labels,
                           plots / "anomaly_reconstructions.png")  # fmt: skip
    return {
        "threshold": threshold,
        "method": chosen["method"],
        "test": detection_scores(y_test, errors, threshold),
        "validation": chosen["validation"],
        "run": run_info(load_json(summary_path)),
    }


def run_info(training: dict) -> dict:
    """Where and how long a model trained (timings differ between runs), and the platform."""
    return {
        "device": training["device"],
        "train_seconds": round(training["train_seconds"], 2),
        "platform": training.get("platform"),
    }


def evaluate_cbow(model_dir: Path, eval_dir: Path, params: CBOW, plots: Path, report: Path) -> dict:
    """Similarity and analogy scores of the CBOW vectors and the baseline, probes and PCA plot."""
    from gensim.models import KeyedVectors, Word2Vec

    if not (model_dir / "word2vec.model").is_file():
        raise DataError(f"{model_dir}: no word2vec.model; run train_cbow (dvc repro)")
    model = Word2Vec.load(str(model_dir / "word2vec.model"))
    baseline = KeyedVectors.load(str(model_dir / "baseline.kv"))
    training = load_json(model_dir / "training.json")
    report.write_text(probe_report(model, params.probe_words, params.probe_contexts), "utf-8")
    pca_plot(model.wv, params.pca_words, plots / "cbow_pca.png",
             f"CBOW vectors of the {params.pca_words} most frequent words (PCA)")  # fmt: skip
    return {
        "engine": training["engine"],
        "run": run_info(training),
        "vocab_size": training["vocab_size"],
        "corpus_tokens": training["corpus_tokens"],
        "final_loss": training["final_loss"],
        **evaluate_vectors(model.wv, eval_dir),
        "baseline": {"vocab_size": len(baseline), **evaluate_vectors(baseline, eval_dir)},
    }


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
            y_pred = np.argmax(model.predict(x_test, batch_size=256, verbose=0), axis=1)
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
            str(r): {"accuracy": s["accuracy"], "macro_f1": s["macro_f1"],
                     "epochs": d[phase]["epochs_trained"], "best_epoch": d[phase]["best_epoch"]}
            for r, (s, d) in enumerate(zip(scores[phase], draws, strict=True))
        }  # fmt: skip
        validation = [d[phase]["val_accuracy"] for d in draws]
        entry["validation_accuracy"] = round(float(np.mean(validation)), 6)
        entry["trainable_parameters"] = first["trainable_parameters"]
        entry["frozen_parameters"] = first["frozen_parameters"]
        metrics[phase] = entry
    metrics["fine_tune"]["unfrozen_layers"] = len(draws[0]["fine_tune"]["unfrozen_layers"])
    metrics["paired_differences"] = {
        f"{a}_minus_{b}": paired_difference(hits[a], hits[b])
        for a, b in (("fine_tune", "scratch"), ("feature_extraction", "scratch"),
                     ("fine_tune", "feature_extraction"))
    }  # fmt: skip
    metrics["run"] = {
        "device": draws[0]["scratch"]["device"],
        "train_seconds": round(sum(d[p]["train_seconds"] for d in draws for p in TRANSFER_PHASES),
                               2),
        "platform": training.get("platform"),
    }  # fmt: skip
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
    with stage_errors("evaluate"):
        params = load_params()
        args = parse_paths(
            argv, "evaluate", __doc__,
            images="processed images (folder of .npy arrays), test split",
            mlp_model="MLP model (.keras)", mlp_summary="MLP run summary (.json)",
            cnn_model="CNN model (.keras)", cnn_summary="CNN run summary (.json)",
            mlp_metrics="output metrics (.json)", cnn_metrics="output metrics (.json)",
            mlp_report="output architecture (.md)", cnn_report="output architecture (.md)",
            series="processed anomaly rows (.npz), test split",
            autoencoder_model="autoencoder (.keras)", autoencoder_summary="its run summary (.json)",
            threshold="chosen threshold (.json)",
            anomaly_metrics="output metrics (.json)",
            cbow_model="CBOW model folder", text_eval="word-similarity and analogy sets folder",
            cbow_metrics="output metrics (.json)", cbow_report="output probe report (.md)",
            transfer_model="train_transfer's output folder",
            transfer_metrics="output metrics (.json)", summary="output summary of every lab (.md)",
            plots="output plots folder",
        )  # fmt: skip
        setup_run(params.base)
        data = ImageSplits.load(args.images, ("test",))
        with staged_outputs() as out:
            plots = out.dir(args.plots)
            classifiers: dict[str, dict] = {}
            architectures: dict[str, str] = {}
            for name, section in (("mlp", params.mlp), ("cnn", params.cnn)):
                report = out.file(getattr(args, f"{name}_report"))
                metrics = evaluate_classifier(
                    name,
                    getattr(args, f"{name}_model"),
                    getattr(args, f"{name}_summary"),
                    data,
                    plots,
                    report,
                    section.batch_size,
                )
                architectures[f"{name.upper()} architecture"] = report.read_text(encoding="utf-8")
                save_json(out.file(getattr(args, f"{name}_metrics")), metrics)
                classifiers[name] = metrics
                test = metrics["test"]
                print(f"evaluate: {name}: test accuracy {test['accuracy']:.4f}", end=", ")
                print(f"macro F1 {test['macro_f1']:.4f}")
            anomaly = evaluate_anomaly(
                args.autoencoder_model, args.autoencoder_summary, args.series, args.threshold,
                params.autoencoder.loss, plots,
            )  # fmt: skip
            save_json(out.file(args.anomaly_metrics), anomaly)
            test = anomaly["test"]
            print(f"evaluate: anomaly: test ROC AUC {test['roc_auc']}, F1 {test['f1']:.4f}")
            cbow = evaluate_cbow(args.cbow_model, args.text_eval, params.cbow, plots,
                                 out.file(args.cbow_report))  # fmt: skip
            save_json(out.file(args.cbow_metrics), cbow)
            ws, base = cbow["wordsim353"], cbow["baseline"]["wordsim353"]
            print(f"evaluate: cbow: WordSim-353 Spearman {ws['spearman']} (OOV {ws['oov']:.0%}), "
                  f"baseline {base['spearman']}")  # fmt: skip
            transfer = evaluate_transfer(args.transfer_model, data)
            save_json(out.file(args.transfer_metrics), transfer)
            if "not_applicable" in transfer:
                print(f"evaluate: transfer: not applicable: {transfer['not_applicable']}")
            else:
                scores = ", ".join(f"{p} {transfer[p]['accuracy']:.4f}" for p in TRANSFER_PHASES)
                print(f"evaluate: transfer: mean test accuracy over {transfer['repeats']} draws: "
                      f"{scores}")  # fmt: skip
            labs = {"mlp": classifiers["mlp"], "cnn": classifiers["cnn"], "anomaly": anomaly,
                    "cbow": cbow, "transfer": transfer}  # fmt: skip
            summary = summary_markdown(labs, architectures)
            out.file(args.summary).write_text(summary, encoding="utf-8")


if __name__ == "__main__":
    main()
