"""``base.devices``: data-parallel training on simulated CPU devices (two logical TensorFlow CPUs;
JAX told the host has two), matching one device within a stated tolerance."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from dllabs.params import Base
from tests.helpers.repo import REPO

# Two devices average the two halves' gradients where one device averages the whole batch's: the
# same sum in another order, whose last bits depend on the CPU's kernels (AVX2 or AVX-512). Measured
# after three epochs (72 rows, batches of 16 and a last of 8): weights within 6e-8 (TensorFlow) and
# 8e-9 (JAX) of one device's; the initial loss (a float32 mean over 74 rows, summed per replica)
# one float32 step apart on an AVX-512 CPU (1.2e-7 of 1.39). A sum of n float32 terms in another
# order moves by at most about n * 6e-8 of its size: 74 * 6e-8 = 4.4e-6, within 1e-5.
TOLERANCE = 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_two_devices_train_the_model_as_one_does(backend: str, default_params: dict) -> None:
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"the {backend} package is not installed")
    mlp = {
        **default_params["mlp"],
        "hidden_units": [8],
        "epochs": 3,
        "batch_size": 16,
        "patience": 10,
        "reduce_lr_patience": 0,
        "dropout": 0.0,
    }
    done = subprocess.run(
        [sys.executable, str(REPO / "tests" / "devices_smoke.py"), backend, json.dumps(mlp)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "0"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    one, two = report["1"], report["2"]
    assert (one["replicas"], one["device"]) == (1, "CPU")
    assert (two["replicas"], two["device"]) == (2, "CPU x2")
    # The same initial weights give the same initial loss, up to the order of the sum.
    assert abs(one["initial_loss"] - two["initial_loss"]) <= TOLERANCE * one["initial_loss"]
    assert two["loss"] < two["initial_loss"] and one["loss"] < one["initial_loss"]
    assert abs(one["loss"] - two["loss"]) < TOLERANCE
    assert report["max_weight_difference"] < TOLERANCE
    assert report["odd_batches_epochs"] == 3  # odd batches train too
    assert report["error"] == f"base.devices is 3 but {backend} sees 2 CPU device(s) here"


def test_devices_is_one_by_default_and_all_or_a_positive_count() -> None:
    base = {"seed": 0, "backend": "tensorflow", "device": "cpu", "mixed_precision": "off"}
    assert Base(**base).devices == 1
    assert Base(**base, devices="all").devices == "all"
    for bad in (0, -1, "two"):
        with pytest.raises(ValueError, match="devices"):
            Base(**base, devices=bad)
