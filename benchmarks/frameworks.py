"""Benchmark: the default pipeline's MLP, CNN and autoencoder on each Keras backend, in one run.

Lab 0 compares Keras, TensorFlow, PyTorch and Theano; Keras 3 runs one model on TensorFlow, JAX
and PyTorch. Each installed backend trains the three models as ``params.yaml`` defines them
(early stopping included) on the processed default data (``dvc repro`` first), through the
pipeline's own fit helper, in a new process per backend (Keras fixes its backend at import).
Reported per model and backend: the first epoch's seconds (graph tracing or XLA compilation
included), steady training images/s (median of the later epochs), epochs, and the test score:
accuracy for the classifiers (with its 95% Wilson interval), ROC AUC of the reconstruction error
for the autoencoder (anomaly = positive).

    python benchmarks/frameworks.py     # writes benchmarks/results/frameworks.{json,md}
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BACKENDS = ("tensorflow", "jax", "torch")


def worker(backend: str) -> dict:
    """Train and score the three models on ``backend`` (called in its own process)."""
    os.environ["KERAS_BACKEND"] = backend
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from dllabs.data.datasets import ImageBatches, ImageSplits
    from dllabs.evaluation.stats import wilson
    from dllabs.labs.anomaly import reconstruction_errors
    from dllabs.models.builders import PixelStats, build_autoencoder, build_cnn, build_mlp
    from dllabs.outputs import load_npz
    from dllabs.params import load_params
    from dllabs.training.callbacks import EpochTimer
    from dllabs.training.devices import setup_run
    from dllabs.training.fit import Curves, fit

    params = load_params(ROOT / "params.yaml")
    base = params.base.model_copy(update={"backend": backend, "device": "cpu"})
    device = setup_run(base)
    data = ImageSplits.load(ROOT / "data/processed/images", ("train", "val", "test"))
    series = load_npz(ROOT / "data/processed/series.npz")
    results = {}
    for name in ("mlp", "cnn", "autoencoder"):
        timer = EpochTimer()
        start = time.perf_counter()
        if name == "autoencoder":
            ae = params.autoencoder
            x, y_val = series["x_train"], series["y_val"]
            normal_val = series["x_val"][y_val == 0]
            model = build_autoencoder(x.shape[1], ae)
            with tempfile.TemporaryDirectory() as live:
                curves, options = Curves.to(live), {"loss": ae.loss, "metrics": []}
                fit(
                    model,
                    (x, x),
                    (normal_val, normal_val),
                    ae,
                    device,
                    curves,
                    extra_callbacks=[timer],
                    verbose=0,
                    **options,
                )
            x_test = series["x_test"]
            errors = reconstruction_errors(x_test, model.predict(x_test, verbose=0), ae.loss)
            score = {
                "roc_auc": round(float(roc_auc_score(series["y_test"], errors)), 4),
                "n": len(x_test),
            }
            rows = len(x)
        else:
            training = getattr(params, name)
            build = build_mlp if name == "mlp" else build_cnn
            x, y = data["train"]
            model = build(data.input_shape, data.n_classes, training, PixelStats.of(x))
            train = ImageBatches(x, y, training.batch_size, shuffle=True, seed=base.seed)
            val = ImageBatches(*data["val"], training.batch_size)
            with tempfile.TemporaryDirectory() as live:
                curves = Curves.to(live)
                fit(model, train, val, training, device, curves, extra_callbacks=[timer], verbose=0)
            x_test, y_test = data["test"]
            predicted = np.argmax(model.predict(x_test, verbose=0), axis=1)
            correct = int((predicted == y_test).sum())
            ci = wilson(correct, len(y_test))
            score = {
                "accuracy": round(correct / len(y_test), 4),
                "n": len(y_test),
                "ci95": [round(ci["low"], 4), round(ci["high"], 4)],
            }
            rows = len(x)
        later = timer.seconds[1:] or timer.seconds
        results[name] = {
            "epochs": len(timer.seconds),
            "first_epoch_seconds": round(timer.seconds[0], 3),
            "steady_images_per_second": round(rows / statistics.median(later), 1),
            "wall_seconds": round(time.perf_counter() - start, 1),
            **score,
        }
    import keras

    return {"backend": backend, "keras": keras.__version__, "results": results}


def table(runs: list[dict]) -> str:
    lines = [
        "| model | backend | first epoch (s, incl. compilation) | steady images/s | epochs | "
        "test score (n, 95% interval) |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("mlp", "cnn", "autoencoder"):
        for run in runs:
            if "results" not in run:
                lines.append(f"| {name} | {run['backend']} | {run['skipped']} | | | |")
                continue
            r = run["results"][name]
            if "accuracy" in r:
                low, high = r["ci95"]
                score = f"accuracy {r['accuracy']:.4f} (n {r['n']}, {low:.3f} to {high:.3f})"
            else:
                score = f"ROC AUC {r['roc_auc']:.4f} (n {r['n']})"
            lines.append(
                f"| {name} | {run['backend']} | {r['first_epoch_seconds']:.2f} | "
                f"{r['steady_images_per_second']:,.0f} | {r['epochs']} | {score} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker)))
        return
    runs = []
    for backend in BACKENDS:
        if importlib.util.find_spec(backend) is None:
            runs.append({"backend": backend, "skipped": "not installed"})
            continue
        done = subprocess.run(
            [sys.executable, __file__, "--worker", backend],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": "0", "TF_CPP_MIN_LOG_LEVEL": "3"},
            check=False,
        )
        if done.returncode:
            runs.append({"backend": backend, "skipped": f"failed: {done.stderr[-300:]}"})
            continue
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{backend}: {runs[-1]['results']}", flush=True)
    from dllabs.provenance import platform_record

    cpu = platform_record()["cpu"]
    machine = f"{cpu['model']}, {cpu['logical_cpus']} logical CPUs, {cpu['isa']}"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "frameworks.json").write_text(
        json.dumps({"machine": machine, "runs": runs}, indent=2) + "\n", encoding="utf-8"
    )
    (RESULTS / "frameworks.md").write_text(
        f"Measured on {machine} by `python benchmarks/frameworks.py`.\n\n{table(runs)}",
        encoding="utf-8",
    )
    print(table(runs))


if __name__ == "__main__":
    main()
