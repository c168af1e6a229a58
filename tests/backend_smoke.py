"""Run by ``tests/test_backend.py`` in a new process, on the Keras backend ``KERAS_BACKEND`` names.

Trains each model type of the labs (the MLP, the CNN with its augmentation layers, the
autoencoder, and a transfer model on the pipeline base) for one epoch through the fit helper on
tiny data, then saves each as ``.keras``, loads it back and predicts again. Prints one JSON line:
per model, the loss before and after the epoch, the largest difference between the saved and
the loaded model's predictions, and a SHA-256 of the trained weights (two runs compare it to
measure determinism); and the backend and device ``setup_run`` chose. The arguments after the
params file are the dtype policies to run in turn (``float32``, and ``mixed_float16`` as
``setup_run`` sets it on a GPU that supports it): one report per policy, each with the dtype of
its predictions. One process runs both, so the backend starts once.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

from dllabs.training.backend import select_backend

select_backend(sys.argv[1])  # the params.yaml to read base.backend from; before Keras

import keras  # noqa: E402

from dllabs.labs.transfer import build_transfer_model, set_trainable_top  # noqa: E402
from dllabs.models.builders import (  # noqa: E402
    PixelStats,
    build_autoencoder,
    build_cnn,
    build_mlp,
    build_pipeline_base,
)
from dllabs.params import Params  # noqa: E402
from dllabs.training.devices import setup_run  # noqa: E402
from dllabs.training.fit import fit  # noqa: E402


def tiny_images(n: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = (rng.integers(0, 60, (n, 8, 8, 1)) + y[:, None, None, None] * 90).astype(np.uint8)
    return x, y


def weights_digest(model: keras.Model) -> str:
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()


def main() -> None:
    params = Params(**yaml.safe_load(Path(sys.argv[1]).read_text()))
    device = setup_run(params.base)
    report: dict = {"backend": keras.backend.backend(), "device": device.description}
    for policy in sys.argv[2:] or ["float32"]:
        keras.mixed_precision.set_global_policy(policy)
        report[policy] = train_every_model(params, device)
    print(json.dumps(report))


def train_every_model(params: Params, device: object) -> dict:
    """Each model type for one epoch under the global policy; its losses, round trip, weights."""
    x, y = tiny_images()
    rows = np.random.default_rng(1).random((48, 16)).astype(np.float32)
    one_epoch = {"epochs": 1, "batch_size": 16}
    models = {
        "mlp": (
            build_mlp(x.shape[1:], 3, params.mlp, PixelStats.of(x)),
            (x, y),
            params.mlp,
            "sparse_categorical_crossentropy",
        ),
        "cnn": (
            build_cnn(x.shape[1:], 3, params.cnn, PixelStats.of(x)),
            (x, y),
            params.cnn,
            "sparse_categorical_crossentropy",
        ),
        "autoencoder": (
            build_autoencoder(16, params.autoencoder),
            (rows, rows),
            params.autoencoder,
            params.autoencoder.loss,
        ),
    }
    base = build_pipeline_base(x.shape[1:], params.cnn)
    set_trainable_top(base, 0, "transfer.trainable_base_layers")  # feature extraction
    transfer = build_transfer_model(base, x.shape[1:], 3, params.transfer)
    models["transfer"] = (
        transfer,
        (x, y),
        params.transfer.feature_extraction,
        "sparse_categorical_crossentropy",
    )
    report: dict = {"policy": keras.mixed_precision.global_policy().name}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (model, (inputs, targets), training, loss) in models.items():
            training = training.model_copy(update=one_epoch)
            model.compile(loss=loss)
            before = float(model.evaluate(inputs, targets, verbose=0))
            fit(
                model,
                (inputs, targets),
                (inputs, targets),
                training,
                device,
                None,
                loss=loss,
                metrics=[],
                verbose=0,
            )
            after = float(model.evaluate(inputs, targets, verbose=0))
            path = Path(tmp) / f"{name}.keras"
            model.save(path)
            loaded = keras.saving.load_model(path, safe_mode=True)
            ours = keras.ops.convert_to_numpy(model.predict(inputs, verbose=0))
            theirs = keras.ops.convert_to_numpy(loaded.predict(inputs, verbose=0))
            report[name] = {
                "loss_before": before,
                "loss_after": after,
                "max_difference": float(np.max(np.abs(ours - theirs))),
                "weights": weights_digest(model),
                "output_dtype": str(ours.dtype),
            }
    return report


if __name__ == "__main__":
    main()
