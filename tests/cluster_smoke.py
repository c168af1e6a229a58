"""Run by ``tests/test_cluster.py``, once per process: the MLP and the CNN trained by ``fit`` on
JAX, either as one process of a cluster the environment describes (``cluster``) or alone on two
simulated CPU devices (``devices``), the run the cluster must match.

    python tests/cluster_smoke.py cluster|devices OUT [die-at-step]

Writes ``OUT/<mode>-<process>.npz`` (each model's weights) through ``staged_outputs``, as a
stage does, and prints one JSON line: the losses before and after training, per model. With
``die-at-step``, process 1 ends itself (exit 3) at that training step, as a killed node would.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

mode, out = sys.argv[1], Path(sys.argv[2])
die_at = int(sys.argv[3]) if len(sys.argv) > 3 else None
os.environ["KERAS_BACKEND"] = "jax"
os.environ["JAX_PLATFORMS"] = "cpu"
if mode == "devices":
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"

from dllabs.training import cluster  # noqa: E402

joined = cluster.join("jax") if mode == "cluster" else None

import keras  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402

from dllabs.models.builders import build_cnn, build_mlp  # noqa: E402
from dllabs.outputs import save_npz, staged_outputs  # noqa: E402
from dllabs.params import CNN, MLP, Base  # noqa: E402
from dllabs.training.devices import setup_run  # noqa: E402
from dllabs.training.fit import fit  # noqa: E402

DEFAULTS = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
SMALL = {
    "epochs": 3,
    "batch_size": 16,
    "patience": 10,
    "reduce_lr_patience": 0,
    "dropout": 0.0,
    "augment": {"flip": "none", "rotation": 0.0, "zoom": 0.0, "translation": 0.0},
}
SMALL_CNN = {"filters": [4, 8], "kernel_sizes": [3], "dense_units": [8]}


class Die(keras.callbacks.Callback):
    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if batch == die_at:
            os._exit(3)


def main() -> None:
    rng = np.random.default_rng(0)
    y = np.arange(96) % 3
    x = (rng.integers(0, 60, (96, 8, 8, 1)) + y[:, None, None, None] * 90).astype(np.uint8)
    devices = 2 if mode == "devices" else 1
    base = Base(seed=3, backend="jax", device="cpu", mixed_precision="off", devices=devices)
    device = setup_run(base, multi_process=True)
    models = {
        "mlp": (build_mlp, MLP(**{**DEFAULTS["mlp"], **SMALL, "hidden_units": [8]})),
        "cnn": (build_cnn, CNN(**{**DEFAULTS["cnn"], **SMALL, **SMALL_CNN})),
    }
    index = joined.index if joined else 0
    dying = die_at is not None and index == 1
    report, weights = {"device": device.description}, {}
    with staged_outputs() as staged:
        target = staged.file(out / f"{mode}-{index}.npz")
        for name, (build, params) in models.items():
            keras.utils.set_random_seed(3)
            model = build(x.shape[1:], 3, params, None)
            model.compile(loss="sparse_categorical_crossentropy")
            initial = float(model.evaluate(x[:64], y[:64], batch_size=16, verbose=0))
            fit(
                model,
                (x[:72], y[:72]),
                (x[72:], y[72:]),
                params,
                device,
                None,
                verbose=0,
                extra_callbacks=[Die()] if dying else (),
            )
            final = model.evaluate(x[:64], y[:64], batch_size=16, verbose=0, return_dict=True)
            report[name] = {"initial_loss": initial, "loss": final["loss"]}
            weights |= {f"{name}_{i}": np.asarray(w) for i, w in enumerate(model.get_weights())}
        save_npz(target, weights)
    report["weights_sha256"] = hashlib.sha256(b"".join(w.tobytes() for w in weights.values()))
    report["weights_sha256"] = report["weights_sha256"].hexdigest()
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
