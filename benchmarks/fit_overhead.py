"""Benchmark: images/s of train_cnn's fit helper versus a bare ``model.fit``.

Both fits train the same CNN (built from ``params.yaml``'s ``cnn`` section) on the same uint8
arrays in the same process, with the same batch size and epochs. The helper adds early stopping,
ReduceLROnPlateau, an epoch timer and DVCLive logging; the bare fit adds only a timer. The first
epoch (graph tracing) is left out; the median and the fastest of the remaining epochs are
reported (the fastest is the least disturbed by other work on a shared machine).

    python benchmarks/fit_overhead.py                     # synthetic MNIST-sized data (28x28x1)
    python benchmarks/fit_overhead.py --images data/processed/images
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, help="processed images folder (default: synthetic)")
    parser.add_argument("--n", type=int, default=6000, help="synthetic training images")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2, help="alternating helper/bare rounds")
    args = parser.parse_args()

    import keras

    from dllabs.data.datasets import ImageSplits
    from dllabs.models.builders import build_cnn, make_optimizer
    from dllabs.params import load_params
    from dllabs.training.callbacks import EpochTimer
    from dllabs.training.devices import setup_run
    from dllabs.training.fit import Curves, fit

    params = load_params()
    cnn = params.cnn.model_copy(update={"epochs": args.epochs})
    if args.images:
        data = ImageSplits.load(args.images, ("train", "val"), in_memory=True)
        (x, y), val, n_classes = data["train"], data["val"], data.n_classes
    else:
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (args.n, 28, 28, 1), dtype=np.uint8)
        y = rng.integers(0, 10, args.n)
        val, n_classes = (x[: args.n // 10], y[: args.n // 10]), 10
    device = setup_run(params.base)

    def helper_run() -> list[float]:
        keras.utils.set_random_seed(params.base.seed)
        model = build_cnn(x.shape[1:], n_classes, cnn)
        with tempfile.TemporaryDirectory() as live:
            timer = EpochTimer()
            curves = Curves.to(live)
            fit(model, (x, y), val, cnn, device, curves, extra_callbacks=[timer], verbose=0)
        return timer.seconds

    def bare_run() -> list[float]:
        keras.utils.set_random_seed(params.base.seed)
        model = build_cnn(x.shape[1:], n_classes, cnn)
        model.compile(
            optimizer=make_optimizer(cnn),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        timer = EpochTimer()
        model.fit(
            x,
            y,
            validation_data=val,
            epochs=cnn.epochs,
            batch_size=cnn.batch_size,
            shuffle=True,
            callbacks=[timer],
            verbose=0,
        )
        return timer.seconds

    helper, bare = [], []
    for _ in range(args.rounds):
        helper += helper_run()[1:]
        bare += bare_run()[1:]
    print(f"data: {len(x)} images {x.shape[1:]}, batch {cnn.batch_size}, {device.description}")
    for label, pick in (("median", statistics.median), ("fastest", min)):
        rate_helper, rate_bare = len(x) / pick(helper), len(x) / pick(bare)
        overhead = (rate_bare - rate_helper) / rate_bare * 100
        print(
            f"{label:>7} epoch: bare model.fit {rate_bare:7.0f} images/s, fit helper "
            f"{rate_helper:7.0f} images/s, overhead {overhead:+.1f}% ({len(bare)} epochs each)"
        )


if __name__ == "__main__":
    main()
