"""Run by ``tests/test_devices.py`` in a new process: data-parallel training on two simulated
CPU devices against one device, on the backend named by the first argument.

The devices are simulated as the backends allow before they start: TensorFlow splits the CPU into
two logical devices, JAX is told the host has two (``--xla_force_host_platform_device_count``).
The MLP trains for three epochs from the same seed on one device, then on two (a global batch of
16 split into 8 per device, gradients averaged), then on two with odd last batches (which JAX
cuts to an even size); then ``base.devices`` 3 is asked for. Prints one JSON line: each run's
losses and device, the largest weight difference, and the error.
"""

from __future__ import annotations

import json
import os
import sys

backend = sys.argv[1]
os.environ["KERAS_BACKEND"] = backend
if backend == "jax":
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    os.environ["JAX_PLATFORMS"] = "cpu"
else:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import numpy as np  # noqa: E402

from dllabs.errors import ParamsError  # noqa: E402
from dllabs.models.builders import build_mlp  # noqa: E402
from dllabs.params import MLP, Base  # noqa: E402
from dllabs.training.devices import setup_run  # noqa: E402
from dllabs.training.fit import fit  # noqa: E402


def main() -> None:
    mlp = MLP(**json.loads(sys.argv[2]))
    rng = np.random.default_rng(0)
    y = np.arange(96) % 3
    x = (rng.integers(0, 60, (96, 4, 4, 1)) + y[:, None, None, None] * 90).astype(np.uint8)
    report: dict = {}
    weights = {}
    for devices in (1, 2):
        base = Base(seed=3, backend=backend, device="cpu", mixed_precision="off", devices=devices)
        device = setup_run(base)
        model = build_mlp(x.shape[1:], 3, mlp)
        model.compile(loss="sparse_categorical_crossentropy")
        # The loss on 74 rows (batches of 32, 32, 10: even, as JAX's split needs)
        initial = float(model.evaluate(x[:74], y[:74], verbose=0))
        fit(model, (x[:72], y[:72]), (x[72:], y[72:]), mlp, device, None, verbose=0)
        history = model.evaluate(x[:74], y[:74], verbose=0, return_dict=True)
        weights[devices] = [np.asarray(w) for w in model.get_weights()]
        report[str(devices)] = {
            "device": device.description,
            "replicas": device.replicas,
            "initial_loss": initial,
            "loss": history["loss"],
        }
    # 75 training and 21 validation rows: each epoch's last batches are odd (11 and 5 rows)
    model = build_mlp(x.shape[1:], 3, mlp)
    odd = fit(model, (x[:75], y[:75]), (x[75:], y[75:]), mlp, device, None, verbose=0)
    report["odd_batches_epochs"] = odd.epochs_trained
    report["max_weight_difference"] = max(
        float(np.max(np.abs(a - b))) for a, b in zip(weights[1], weights[2], strict=True)
    )
    try:
        setup_run(Base(seed=3, backend=backend, device="cpu", mixed_precision="off", devices=3))
    except ParamsError as exc:
        report["error"] = str(exc)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
