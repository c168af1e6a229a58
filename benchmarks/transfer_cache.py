"""Fast feature extraction: lab 5's phases with what does not train computed once, against the
same phases running the whole model every step, in one run.

The photos preset's model (EfficientNet-Lite0 with its installed ImageNet weights at 224x224, a
softmax head) on synthetic photos (timing does not depend on what the pixels show). Each phase
trains a fixed number of epochs (no early stopping) both ways:

- feature extraction: the frozen base and the pooling once per image, then the head on the pooled
  features; against the whole model, frozen base included, every step;
- fine-tuning the top block: the base up to block 14 once per image, then block 15, the head
  convolution and the head; against the whole model every step.

Writes the seconds of each (caching included), images per second, the ratio, and the largest
difference between the two ways' trained weights to ``benchmarks/results/transfer_cache.json``.
That difference is not zero and is not meant to be: the base runs on other batches in the two
ways, so its features differ in the last bits, and several epochs of Adam on random labels carry
that into the weights (0.03 at most after 5 epochs). That they train the same model is checked,
on real shapes with a tolerance, by ``tests/test_transfer.py``; this script measures time.

    python benchmarks/transfer_cache.py [--images 256] [--epochs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

from dllabs.labs.transfer import build_transfer_model, cached_training, load_base, set_trainable_top
from dllabs.params import Training, Transfer
from dllabs.prediction.batches import predict
from dllabs.provenance import platform_record
from dllabs.tooling.presets import compose_yaml
from dllabs.training.devices import choose_device
from dllabs.training.fit import fit

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "transfer_cache.json"


def preset() -> tuple[Transfer, object]:
    import yaml

    from dllabs.params import validate_params

    raw = yaml.safe_load(compose_yaml(("dataset=photos", "data.images_dir=unused"), ROOT / "conf"))
    params = validate_params(raw)
    return params.transfer, params.cnn


def build(transfer: Transfer, cnn: object, unfreeze: int) -> tuple[keras.Model, keras.Model]:
    keras.utils.set_random_seed(0)
    base = load_base(transfer, "unused", cnn, (224, 224, 3))
    model = build_transfer_model(base, (224, 224, 3), 2, transfer)
    set_trainable_top(base, unfreeze, "transfer.fine_tune.unfreeze")
    return model, base


def phase(
    transfer: Transfer, cnn: object, training: Training, unfreeze: int, data: tuple, cached: bool
) -> tuple[float, list[np.ndarray]]:
    device = choose_device("cpu", [], "off")
    model, base = build(transfer, cnn, unfreeze)
    (train, val), start = data, time.perf_counter()
    if cached:
        split = cached_training(model, base, transfer)
        train = (predict(split.prefix, train[0], replicas=device.predict_replicas), train[1])
        val = (predict(split.prefix, val[0], replicas=device.predict_replicas), val[1])
        fit(split.rest, train, val, training, device, None, verbose=0)
    else:
        fit(model, train, val, training, device, None, verbose=0)
    return time.perf_counter() - start, model.get_weights()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256, help="training images (and 1/4 val)")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    transfer, cnn = preset()
    rng = np.random.default_rng(0)
    n, n_val = args.images, args.images // 4
    x = rng.integers(0, 256, (n + n_val, 224, 224, 3), dtype=np.uint8)
    y = np.arange(n + n_val) % 2
    data = ((x[:n], y[:n]), (x[n:], y[n:]))
    fixed = {"epochs": args.epochs, "patience": args.epochs, "reduce_lr_patience": 0}
    results: dict = {
        "images": n,
        "val_images": n_val,
        "epochs": args.epochs,
        "image_size": [224, 224],
        "platform": platform_record(),
    }
    phases = (
        ("feature_extraction", transfer.feature_extraction, 0),
        ("fine_tune", transfer.fine_tune, transfer.fine_tune.unfreeze),
    )
    for name, training, unfreeze in phases:
        training = training.model_copy(update=fixed)
        whole, whole_weights = phase(transfer, cnn, training, unfreeze, data, cached=False)
        once, once_weights = phase(transfer, cnn, training, unfreeze, data, cached=True)
        difference = max(
            float(np.max(np.abs(a - b))) for a, b in zip(whole_weights, once_weights, strict=True)
        )
        trained = n * args.epochs
        results[name] = {
            "whole_model_s": round(whole, 2),
            "computed_once_s": round(once, 2),
            "whole_model_images_per_s": round(trained / whole, 1),
            "computed_once_images_per_s": round(trained / once, 1),
            "speed_up": round(whole / once, 2),
            "max_weight_difference": difference,
        }
        print(f"{name}: {json.dumps(results[name])}", flush=True)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
