"""Benchmark: images/s of ``dl-labs predict`` on 1,000 image files versus a bare ``model.predict``.

The model is lab 2's CNN as ``params.yaml`` defines it, built for 28x28 greyscale images (MNIST's
shape) with 10 classes and saved as a model folder with its inputs record; its weights do not
matter for speed. The inputs are 1,000 PNG files of 28x28 digit-like images (scikit-learn's 8x8
digits scaled up, with noise), and the same images as one uint8 array.

In one process, alternating rounds (median reported, after one warm-up call each):

- ``bare``: ``model.predict(array)``, Keras's own batched prediction of the decoded array;
- ``predict (files)``: what ``dl-labs predict cnn <folder>`` does after start-up: list the
  folder, decode and convert each PNG as ``preprocess`` would, predict in batches, rank the top 3;
- ``predict (.npy)``: the same on the array saved as ``.npy`` (no decoding).

Start-up, apart: the wall time of ``dl-labs predict cnn <one file>`` in a new process (Python,
TensorFlow and Keras imports, loading the model, one prediction), median of 3, beside that of
``python -c "import keras"``. And whole commands in new processes, median of 3: ``dl-labs
predict`` on the 1,000 files against a bare script that loads the model and calls
``model.predict`` on the array (both pay imports, loading and graph tracing once).

    python benchmarks/predict.py            # writes benchmarks/results/predict.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "predict.json"


def digit_like_images(n: int, seed: int = 0) -> np.ndarray:
    """``n`` 28x28 uint8 images: bundled 8x8 digits scaled up bilinearly, with pixel noise."""
    from PIL import Image
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(seed)
    digits = load_digits().images
    out = np.empty((n, 28, 28, 1), np.uint8)
    for i in range(n):
        small = Image.fromarray((digits[i % len(digits)] * 255 / 16).astype(np.uint8), "L")
        big = np.asarray(small.resize((28, 28), Image.Resampling.BILINEAR), dtype=np.float64)
        out[i, ..., 0] = np.clip(big + rng.normal(0, 8, big.shape), 0, 255).astype(np.uint8)
    return out


def timed(call, rounds: int) -> list[float]:
    call()  # warm-up: graph tracing, file cache
    seconds = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return seconds


def wall(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    import keras
    from PIL import Image

    from dllabs.models.builders import build_cnn
    from dllabs.models.inputs import image_record
    from dllabs.outputs import save_json
    from dllabs.params import load_params
    from dllabs.prediction import command as predict_command

    params = load_params()
    x = digit_like_images(args.n)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder, images = root / "model", root / "images"
        folder.mkdir()
        images.mkdir()
        keras.utils.set_random_seed(0)
        model = build_cnn((28, 28, 1), 10, params.cnn)
        model.save(folder / "model.keras")
        record = image_record((28, 28, 1), [str(k) for k in range(10)])
        save_json(folder / "summary.json", {"inputs": record})
        for i, image in enumerate(x):
            Image.fromarray(image[..., 0], "L").save(images / f"{i:04d}.png")
        np.save(root / "x.npy", x)
        model = keras.saving.load_model(folder / "model.keras")

        runs = {"bare": [], "files": [], "npy": []}

        def predicted(spec: str) -> list:
            # predict_images returns its records lazily (write consumes them): consume them here
            return list(predict_command.predict_images(model, record, [spec], 3).records)

        calls = {
            "bare": lambda: model.predict(x, verbose=0),
            "files": lambda: predicted(str(images)),
            "npy": lambda: predicted(str(root / "x.npy")),
        }
        for _ in range(args.rounds):  # alternated, so machine noise spreads over all three
            for name, call in calls.items():
                runs[name] += timed(call, 1)

        one = [str(images / "0000.png")]
        cli = [sys.executable, "-m", "dllabs", "predict", "cnn", *one, "--model", str(folder)]
        startup = [wall(cli, root) for _ in range(3)]
        keras_import = [wall([sys.executable, "-c", "import keras"], root) for _ in range(3)]
        whole = [
            wall([*cli[:-3], str(images), "--model", str(folder), "--csv"], root) for _ in range(3)
        ]
        bare_script = (
            "import keras, numpy; m = keras.saving.load_model('model/model.keras'); "
            "m.predict(numpy.load('x.npy'), verbose=0)"
        )
        bare_whole = [wall([sys.executable, "-c", bare_script], root) for _ in range(3)]

    median = {name: statistics.median(s) for name, s in runs.items()}
    result = {
        "images": args.n,
        "image_shape": [28, 28, 1],
        "model": f"lab 2 CNN from params.yaml ({model.count_params():,} parameters)",
        "rounds": args.rounds,
        "images_per_second": {name: round(args.n / s, 1) for name, s in median.items()},
        "seconds_median": {name: round(s, 4) for name, s in median.items()},
        "slower_than_bare": {
            name: f"{100 * (median[name] / median['bare'] - 1):+.1f}%" for name in ("files", "npy")
        },
        "startup_seconds_median": round(statistics.median(startup), 2),
        "import_keras_seconds_median": round(statistics.median(keras_import), 2),
        "new_process_seconds_median": {
            "dl-labs predict on the 1,000 files": round(statistics.median(whole), 2),
            "bare script: load the model, model.predict(array)": round(
                statistics.median(bare_whole), 2
            ),
        },
        "machine": predict_machine(),
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


def predict_machine() -> str:
    from dllabs.provenance import platform_record

    record = platform_record()
    cpu = record["cpu"]
    return f"{cpu['model']}, {cpu['logical_cpus']} logical CPUs, {cpu['isa']}"


if __name__ == "__main__":
    main()
