"""``base.backend``: Keras 3 on TensorFlow, JAX or PyTorch, chosen from params.yaml before Keras
is imported; every model type trains and round-trips a ``.keras`` file on each backend."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dllabs.errors import ParamsError
from dllabs.training import backend
from tests.helpers.repo import REPO
from tests.helpers.stages import run_stage, set_key

BACKENDS = ("tensorflow", "jax", "torch")


def installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def write_params(folder: Path, default_params: dict, **overrides) -> Path:
    params = json.loads(json.dumps(default_params))
    for key, value in overrides.items():
        set_key(params, key, value)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params), encoding="utf-8")
    return path


def test_the_committed_default_is_tensorflow(default_params: dict) -> None:
    assert default_params["base"]["backend"] == "tensorflow"
    assert backend.configured(REPO / "params.yaml") == ("tensorflow", "auto")


def test_missing_or_unreadable_params_fall_back_to_the_default(tmp_path: Path) -> None:
    """The stage's own params check reports the file; choosing a backend must not fail first."""
    assert backend.configured(tmp_path / "absent.yaml") == ("tensorflow", "auto")
    (tmp_path / "bad.yaml").write_text("base: [1, 2\n")
    assert backend.configured(tmp_path / "bad.yaml") == ("tensorflow", "auto")


def test_an_unknown_backend_is_refused_naming_the_key(tmp_path, default_params) -> None:
    path = write_params(tmp_path, default_params, **{"base.backend": "theano"})
    expected = "base.backend is 'theano'; expected one of tensorflow, jax, torch"
    with pytest.raises(ParamsError, match=re.escape(expected)):
        backend.select_backend(path)


def test_a_backend_whose_package_is_missing_says_how_to_install_it(
    tmp_path, default_params, monkeypatch
) -> None:
    path = write_params(tmp_path, default_params, **{"base.backend": "torch"})
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    expected = (
        f"the torch package is not installed for {sys.executable} (make install "
        f'EXTRAS="dev torch", or put the project\'s .venv/bin first on PATH'
    )
    with pytest.raises(ParamsError, match=re.escape(expected)):
        backend.select_backend(path)


def test_keras_already_running_on_another_backend_is_refused(tmp_path, default_params) -> None:
    import keras

    other = "jax" if keras.backend.backend() != "jax" else "tensorflow"
    if not installed(other):
        pytest.skip(f"{other} is not installed")
    path = write_params(tmp_path, default_params, **{"base.backend": other})
    with pytest.raises(ParamsError, match="Keras is already running on"):
        backend.select_backend(path)


def mlp_paths(images: str) -> list[str]:
    """train_mlp's command line with scratch output paths, reading images from ``images``."""
    return ["--images", images, "--model", "m", "--plots", "p", "--validation", "v.json"]


def test_a_stage_with_an_unknown_backend_exits_with_one_line(workdir) -> None:
    root = workdir(**{"base.backend": "theano"})
    done = run_stage("train_mlp", *mlp_paths("x"), cwd=root)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "train_mlp: error: base.backend is 'theano'; expected one of tensorflow, jax, torch"
    ]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("", "--xla_gpu_deterministic_ops=true --xla_cpu_max_isa=AVX2"),
        (
            "--xla_force_host_platform_device_count=2 --xla_cpu_max_isa=AVX",
            "--xla_force_host_platform_device_count=2 --xla_cpu_max_isa=AVX "
            "--xla_gpu_deterministic_ops=true",
        ),
    ],
)
def test_jax_starts_with_deterministic_gpu_kernels_and_its_cpu_code_capped_at_avx2(
    given: str, expected: str, tmp_path: Path, default_params: dict
) -> None:
    """The AVX2 cap mirrors the stages' ONEDNN_MAX_CPU_ISA; flags the user set are kept and win."""
    if not installed("jax"):
        pytest.skip("the jax package is not installed")
    path = write_params(tmp_path, default_params, **{"base.backend": "jax", "base.device": "cpu"})
    code = (
        "import os, sys; from dllabs.training.backend import select_backend; "
        "select_backend(sys.argv[1]); print(os.environ['XLA_FLAGS']); "
        "print(os.environ['JAX_PLATFORMS'], 'keras' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "XLA_FLAGS": given}
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], env=env, capture_output=True, text=True, check=True
    )
    flags, platforms = done.stdout.splitlines()
    if os.uname().machine == "x86_64":
        assert flags == expected
    assert platforms == "cpu False"  # base.device cpu hides GPUs; Keras is not imported yet


# The default backend in make test. On JAX this compiles every model twice over (73 s on 2 cores)
# and PyTorch is an optional extra: both run with the long scenarios (make test-long). JAX still
# trains in make test (test_a_stage_records_the_backend_it_trained_on, tests/test_devices.py and
# tests/test_cluster.py).
@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.long if name != "tensorflow" else ())
        for name in BACKENDS
    ],
)
def test_every_model_type_trains_round_trips_and_repeats_exactly_in_float32_and_mixed_precision(
    name: str, tmp_path: Path, default_params: dict
) -> None:
    """Two runs in new processes train bit-identical float32 weights: seeding and the backend's
    determinism switches (``setup_run``) hold on this machine's CPU. The first run then trains
    every model type again under the policy ``setup_run`` sets on a capable GPU, exercised on the
    CPU: float16 compute (loss scaling included), outputs kept in float32."""
    path = smoke_params(name, tmp_path, default_params)
    first = smoke_report(path, tmp_path, "float32", "mixed_float16")
    again = smoke_report(path, tmp_path, "float32")
    assert first["backend"] == name and first["device"] == "CPU"
    plain, mixed = first["float32"], first["mixed_float16"]
    assert (plain["policy"], mixed["policy"]) == ("float32", "mixed_float16")
    for model in ("mlp", "cnn", "autoencoder", "transfer"):
        for report in (plain, mixed):
            assert report[model]["loss_after"] < report[model]["loss_before"], model
            assert report[model]["max_difference"] == 0.0, model  # the loaded model is the same
        assert plain[model]["weights"] == again["float32"][model]["weights"], model
        assert mixed[model]["output_dtype"] == "float32", model


def smoke_params(name: str, folder: Path, default_params: dict) -> Path:
    """Small models on the CPU with backend ``name``; skips where its package is missing."""
    if not installed(name):
        pytest.skip(f'the {name} package is not installed (make install EXTRAS="dev {name}")')
    small = {
        "cnn.filters": [4, 8],
        "cnn.kernel_sizes": [3],
        "cnn.dense_units": [8],
        "mlp.hidden_units": [8],
        "transfer.head.dense_units": [4],
    }
    return write_params(
        folder, default_params, **{"base.backend": name, "base.device": "cpu", **small}
    )


def smoke_report(params: Path, cwd: Path, *policies: str) -> dict:
    done = run_smoke(params, cwd, *policies)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_smoke(params: Path, cwd: Path, *policies: str) -> subprocess.CompletedProcess:
    """tests/backend_smoke.py in a new process: Keras's backend is fixed once imported."""
    return subprocess.run(
        [sys.executable, str(REPO / "tests" / "backend_smoke.py"), str(params), *policies],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "0"},
    )


@pytest.mark.slow
@pytest.mark.skipif(not installed("jax"), reason="the jax package is not installed")
def test_a_stage_records_the_backend_it_trained_on(workdir) -> None:
    """train_mlp with base.backend jax: its run summary and platform record say jax."""
    import numpy as np

    from tests.helpers.data import save_arrays

    root = workdir(
        **{"base.backend": "jax", "base.device": "cpu", "mlp.epochs": 2, "mlp.hidden_units": [8]}
    )
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    x = (rng.integers(0, 60, (60, 4, 4, 1)) + y[:, None, None, None] * 90).astype(np.uint8)
    arrays = {"x_train": x[:45], "y_train": y[:45], "x_val": x[45:], "y_val": y[45:]}
    save_arrays(root / "images", {**arrays, "class_names": np.array(["a", "b", "c"])})
    done = run_stage("train_mlp", *mlp_paths("images"), cwd=root)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((root / "m" / "summary.json").read_text())
    assert summary["backend"] == "jax" and summary["platform"]["backend"] == "jax"
    assert (root / "p" / "plots" / "metrics" / "eval" / "loss.tsv").read_text().count("\n") == 3
